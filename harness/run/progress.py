"""What a person watching a run sees: the overall progress bar and the library log levels."""

from __future__ import annotations

import logging

import optuna
from tqdm.auto import tqdm

from harness.run.plan import Plan
from harness.storage import open_optuna_storage
from harness.workqueue import SETTLED

POLL_SECONDS = 2.0  # how often a waiting worker, and the overall bar, look at the queues again


def quiet_libraries(verbose: bool) -> None:
    """Optuna's "Using an existing study" and MLflow's "Creating initial MLflow database tables"
    INFO lines would land among the progress bars: off unless ``--verbose``."""
    level = logging.INFO if verbose else logging.WARNING
    optuna.logging.set_verbosity(level)
    for name in ("mlflow", "alembic", "alembic.runtime.migration"):
        logging.getLogger(name).setLevel(level)


def overall_bar(plan: Plan, todo: int):
    return tqdm(
        total=todo,
        desc=f"{plan.study.experiment}: runs",
        unit="run",
        position=0,
        disable=not plan.options.progress,
        dynamic_ncols=True,
    )


class Poller:
    """With several worker processes, the overall bar follows the queue: a background thread
    counts settled trials of the plan every POLL_SECONDS."""

    def __init__(self, plan: Plan, bar):
        import threading

        self.bar, self.stop = bar, threading.Event()
        self.queues = plan.queues(open_optuna_storage(plan.options.storage)).values()
        self.start = self._settled()
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def _settled(self) -> int:
        return sum(len(q.trials(SETTLED)) for q in self.queues)

    def _poll(self):
        while not self.stop.wait(POLL_SECONDS):
            try:
                self.bar.n = min(self.bar.total, self._settled() - self.start)
            except Exception:  # the storage blinked: next poll
                continue
            self.bar.refresh()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        return False
