"""Helpers the tests share (importable as tests.helpers.*): a throwaway PostgreSQL server, study runs in
subprocesses and what they leave in MLflow."""
