"""Run a study: ``run(study, RunOptions(...)) -> Outcome``; ``orchestrate`` reads top to bottom.

plan (units and configurations) -> schedule (reconcile with MLflow, queue) -> worker (train one
unit, one MLflow run) -> summary (the outcome, from MLflow); ``record`` says what a run records,
``progress`` what a person sees.
"""

from harness.options import RunOptions
from harness.run.orchestrate import StudyStopped, run
from harness.run.plan import Plan, Unit, load_data, make_plan
from harness.run.progress import quiet_libraries
from harness.run.record import code_version, run_name
from harness.run.summary import Outcome

__all__ = [
    "Outcome",
    "Plan",
    "RunOptions",
    "StudyStopped",
    "Unit",
    "code_version",
    "load_data",
    "make_plan",
    "quiet_libraries",
    "run",
    "run_name",
]
