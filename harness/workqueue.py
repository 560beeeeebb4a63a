"""A queue of training units kept in an Optuna study, worked by any number of processes.

Each unit of work is an Optuna trial: enqueued as WAITING with the unit in its user
attributes, claimed by one worker (WAITING -> RUNNING), and told COMPLETE, PRUNED or FAIL.
Optuna's public interface gives most of this: ``create_study(load_if_exists=True)``,
``Study.enqueue_trial``, ``Study.tell``, ``Trial.report``/``should_prune``, and on RDB
storages (PostgreSQL, several machines) heartbeats with ``fail_stale_trials`` and
``RetryHeartbeatStaleTrialCallback``, which re-queues the unit of a worker that went silent.

Two guarantees it does not give, added here. This module is the only code in the project
that calls an Optuna storage's methods directly:

* **Claim without creating.** ``Study.ask`` pops a WAITING trial, but when none is left it
  creates a new, empty one; a worker must instead stop. :meth:`WorkQueue.claim` does what
  ``ask`` does internally, the storage's atomic WAITING -> RUNNING transition, and nothing
  else: two workers can never claim the same trial.
* **A dead worker on this machine is found at once.** The journal file storage (one machine)
  has no heartbeat, and a heartbeat needs a grace period anyway. A claim records the worker's
  host, pid and process start time; a RUNNING trial whose worker on this host no longer
  exists is failed immediately (the start time tells a recycled pid from the worker).
"""

from __future__ import annotations

import os
import socket
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

HOST = socket.gethostname()
HEARTBEAT_SECONDS = 20  # RDB storages: how often a worker stamps its trial
STALE_AFTER_SECONDS = 300  # RDB storages: a trial silent this long is failed and re-queued
SETTLED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)

# Called with (queue name, trial number, unit attributes, reason) for every trial this module
# fails because its worker died, so the caller can fail what else belongs to it (its MLflow run).
StaleHandler = Callable[[str, int, dict, str], None]


class WorkQueue:
    """One Optuna study used as a queue of units (dicts of plain values)."""

    def __init__(self, storage: optuna.storages.BaseStorage, name: str, sampler=None, pruner=None):
        self.storage, self.name = storage, name
        self.study = _create_or_load(storage, name, sampler, pruner)
        self._study_id = storage.get_study_id_from_name(name)

    # -- what the queue holds ---------------------------------------------------------------
    def trials(self, states: tuple[TrialState, ...] | None = None) -> list[FrozenTrial]:
        return self.study.get_trials(deepcopy=False, states=states)

    def busy(self) -> bool:
        """Whether any unit waits or runs (here or on another worker)."""
        return bool(self.trials((TrialState.WAITING, TrialState.RUNNING)))

    def enqueue(self, unit: dict) -> None:
        self.study.enqueue_trial({}, user_attrs=unit)

    # -- working it -------------------------------------------------------------------------
    def claim(self, wanted: Callable[[dict], bool] | None = None) -> Claim | None:
        """Atomically take one WAITING unit (that ``wanted`` accepts) for this process, or None."""
        for frozen in self.trials((TrialState.WAITING,)):
            if wanted is not None and not wanted(frozen.user_attrs):
                continue
            trial_id = self.storage.get_trial_id_from_study_id_trial_number(self._study_id, frozen.number)
            try:
                if not self.storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                    continue  # another worker was faster
            except UpdateFinishedTrialError:
                continue
            claim = Claim(self, trial_id, frozen.number, dict(frozen.user_attrs))
            for key, value in {
                "worker_host": HOST,
                "worker_pid": os.getpid(),
                "worker_started": _process_started(os.getpid()),
            }.items():
                claim.set_attr(key, value)
            return claim
        return None

    def fail_stale(self, on_stale: StaleHandler | None = None) -> list[dict]:
        """Fail RUNNING units whose worker is gone; returns their unit attributes.

        Same host: the worker's process no longer exists. RDB storages: no heartbeat for
        ``STALE_AFTER_SECONDS`` (Optuna's ``fail_stale_trials``, whose callback also re-queues)."""
        failed = []
        for frozen in self.trials((TrialState.RUNNING,)):
            attrs = frozen.user_attrs
            if attrs.get("worker_host") != HOST or "worker_pid" not in attrs:
                continue
            if _process_alive(attrs["worker_pid"], attrs.get("worker_started")):
                continue
            reason = f"worker {HOST}:{attrs['worker_pid']} died while running this trial"
            trial_id = self.storage.get_trial_id_from_study_id_trial_number(self._study_id, frozen.number)
            try:
                self.storage.set_trial_user_attr(trial_id, "fail_reason", reason)
                if not self.storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                    continue
            except UpdateFinishedTrialError:
                continue  # it finished, or another process failed it, meanwhile
            failed.append(dict(attrs))
            if on_stale is not None:
                on_stale(self.name, frozen.number, dict(attrs), reason)
        if heartbeats_enabled(self.storage):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(self.study)  # its callback re-queues and reports
        return failed


class Claim:
    """One unit this worker has claimed: its trial, and how to settle it."""

    def __init__(self, queue: WorkQueue, trial_id: int, number: int, unit: dict):
        self.queue, self.number, self.unit = queue, number, unit
        self._trial_id = trial_id
        self.trial = optuna.Trial(queue.study, trial_id)  # for suggest_*, report and should_prune

    def set_attr(self, key: str, value) -> None:
        self.queue.storage.set_trial_user_attr(self._trial_id, key, value)

    def state(self) -> TrialState:
        return self.queue.storage.get_trial(self._trial_id).state

    def complete(self, value: float) -> bool:
        """Tell COMPLETE; False when the trial was failed meanwhile (its worker taken for dead)."""
        self.queue.study.tell(self.number, value, skip_if_finished=True)
        return self.state() == TrialState.COMPLETE

    def fail(self, reason: str) -> None:
        try:
            self.set_attr("fail_reason", reason)
        except UpdateFinishedTrialError:
            return
        self.queue.study.tell(self.number, state=TrialState.FAIL, skip_if_finished=True)

    def prune(self) -> None:
        self.queue.study.tell(self.number, state=TrialState.PRUNED, skip_if_finished=True)

    def alive(self) -> _Heartbeat:
        """Context manager stamping the trial's heartbeat while the unit trains (RDB storages)."""
        return _Heartbeat(self.queue.storage, self._trial_id)


class StaleTrialCallback:
    """Heartbeat-stale trial callback of an RDB storage: re-queue the unit with Optuna's own
    ``RetryHeartbeatStaleTrialCallback``, then tell ``on_stale``."""

    def __init__(self, on_stale: StaleHandler | None = None):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self._retry = optuna.storages.RetryHeartbeatStaleTrialCallback()
        self.on_stale = on_stale

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self._retry(study, trial)
        if self.on_stale is not None:
            worker = f"{trial.user_attrs.get('worker_host')}:{trial.user_attrs.get('worker_pid')}"
            reason = f"no heartbeat from worker {worker} for {STALE_AFTER_SECONDS} s"
            self.on_stale(study.study_name, trial.number, dict(trial.user_attrs), reason)


def heartbeats_enabled(storage) -> bool:
    return isinstance(storage, optuna.storages.RDBStorage) and storage.get_heartbeat_interval() is not None


class _Heartbeat:
    def __init__(self, storage, trial_id: int):
        self.storage, self.trial_id = storage, trial_id
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        interval = self.storage.get_heartbeat_interval()
        while True:
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception:  # the storage blinked: the next beat will do
                pass
            if self.stop.wait(interval):
                return

    def __enter__(self):
        if heartbeats_enabled(self.storage):
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()
        return False


def _create_or_load(storage, name: str, sampler, pruner) -> optuna.Study:
    for _ in range(3):  # another process may create it between our check and our create
        try:
            return optuna.create_study(
                study_name=name,
                storage=storage,
                direction="maximize",
                sampler=sampler,
                pruner=pruner,
                load_if_exists=True,
            )
        except optuna.exceptions.DuplicatedStudyError:
            continue
    return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)


def _process_started(pid: int) -> str | None:
    """Start time of a process (from /proc), to tell a live worker from a recycled pid."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]  # field 22 of stat: start time in clock ticks
    except (OSError, IndexError):
        return None


def _process_alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":  # a zombie is dead
                return False
    except OSError:
        return True  # no /proc here: trust os.kill
    return started is None or _process_started(pid) == started


@dataclass(frozen=True)
class QueueState:
    """How many units of a queue are in each state (for summaries and tests)."""

    waiting: int
    running: int
    complete: int
    pruned: int
    failed: int

    @classmethod
    def of(cls, queue: WorkQueue) -> QueueState:
        counts = {state: 0 for state in TrialState}
        for t in queue.trials():
            counts[t.state] += 1
        return cls(
            counts[TrialState.WAITING],
            counts[TrialState.RUNNING],
            counts[TrialState.COMPLETE],
            counts[TrialState.PRUNED],
            counts[TrialState.FAIL],
        )
