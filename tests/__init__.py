"""The test suite: test modules mirror the package layout; shared helpers live in tests.helpers."""
