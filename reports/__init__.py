"""Reports of finished studies: ``reports.generate(...)`` writes tables, tests and figures to one index.html.

A report reads what MLflow recorded (``harness.results``) and runs no plugin code. One module per job:

- ``report``: ``generate``, one section per study, one part per data set (the orchestration)
- ``collect``: a study's runs as the report sees them; ``configuration``: the configuration table
- ``results_section``: results tables and significance against the reference; ``figures``: the figures
- ``cross``: the verdict across data sets; ``runs_section``: warnings, flagged, failed and reported runs
- ``links``: links to the MLflow UI; ``errors``: what a report refuses
- ``tables``, ``significance``, ``ranks``, ``plots``, ``html``, ``references``: the building blocks
"""

from reports import html, plots, ranks, references, significance, tables  # noqa: F401
from reports.errors import ReportError, UnknownStudyError
from reports.links import run_url, ui_base
from reports.report import DEFAULT_OUT, generate

__all__ = ["DEFAULT_OUT", "ReportError", "UnknownStudyError", "generate", "run_url", "ui_base"]
