"""CARAT ablation and benchmark harness.

Data flows one way: ``harness.data`` -> ``models`` -> ``harness.trainer`` -> ``harness.run``
(the study runner, over ``harness.studies`` and ``harness.options``) -> ``harness.tracking`` ->
``harness.results`` -> ``reports``. ``harness.keys`` names what the tracking write and read sides share.
"""
