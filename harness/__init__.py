"""CARAT ablation and benchmark harness.

Data flows one way: ``harness.data`` -> ``models`` -> ``harness.trainer`` ->
``harness.studies`` -> ``harness.tracking`` -> ``reports``.
"""
