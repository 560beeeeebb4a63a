"""Run a study, top to bottom: plan, open the stores, queue, work, summarise.

1. **Plan** (``plan``): load and fingerprint every data set, build every variant once: a bad
   option fails here, before any store is touched.
2. **Reconcile and enqueue** (``schedule``): what MLflow holds FINISHED is done; every other
   unit is queued once.
3. **Work** (``worker``): one or several workers claim units until none is left. A stop signal
   (SIGTERM, SIGHUP, Ctrl-C) reaches every worker: each fails its unit's Optuna trial and MLflow
   run (a re-run redoes the unit, from its checkpoint) and the command raises ``StudyStopped``.
4. **Summarise** (``summary``): the summary runs and the outcome the command prints, from MLflow.
"""

from __future__ import annotations

import functools
import signal

from optuna.trial import TrialState

from harness import results, tracking
from harness.options import RunOptions
from harness.processes import exit_code, run_workers, stop_on_signals
from harness.run.plan import Plan, experiment_tags, make_plan
from harness.run.progress import Poller, overall_bar
from harness.run.schedule import enqueue, finished_keys, stale_handler
from harness.run.summary import Outcome, metric_columns, outcome_of
from harness.run.worker import work
from harness.storage import open_optuna_storage, prepare_tracking
from harness.studies import Study


class StudyStopped(Exception):
    """A stop signal (SIGTERM, SIGHUP, Ctrl-C) ended the command; every worker has stopped and
    failed its unit's trial and run, so the same command resumes. ``str`` is the line to print."""

    def __init__(self, signal_name: str, kept: int, code: int):
        super().__init__(f"stopped by {signal_name}: {kept} finished run(s) kept; run the same command again to resume")
        self.code = code


def run(study: Study, options: RunOptions) -> Outcome:
    """Run (or resume) ``study``. A bad study, option, device or store raises StudyError or
    StorageError before anything is created; a failing unit fails alone; a stop signal stops every
    worker and raises StudyStopped."""
    with stop_on_signals():
        try:
            plan = make_plan(study, options)
            open_optuna_storage(options.storage)  # checked before MLflow is touched
            tracking_uri = prepare_tracking(options.tracking_uri)
            client = tracking.client_for(tracking_uri)
        except KeyboardInterrupt as stopped:
            raise _stopped(stopped, 0) from None
        try:
            return _run(study, options, plan, tracking_uri, client)
        except KeyboardInterrupt as stopped:
            kept = len(results.finished(results.runs(client, study.experiment), plan.config_hashes.values()))
            raise _stopped(stopped, kept) from None


def _stopped(stopped: KeyboardInterrupt, kept: int) -> StudyStopped:
    signum = getattr(stopped, "signum", signal.SIGINT)
    return StudyStopped(signal.Signals(signum).name, kept, exit_code(stopped))


def _run(study: Study, options: RunOptions, plan: Plan, tracking_uri: str, client) -> Outcome:
    experiment_id = tracking.ensure_experiment(
        client, tracking_uri, study.experiment, study.description, {**experiment_tags(study), **plan.phase_tags()}
    )
    plan = plan.bound(tracking_uri, experiment_id)
    on_stale = stale_handler(client, experiment_id)
    queues = plan.queues(open_optuna_storage(options.storage, on_stale=on_stale))
    for queue in queues.values():
        queue.fail_stale(on_stale)
    done = finished_keys(client, plan)
    enqueue(plan, queues, done)

    bar = overall_bar(plan, _todo(plan, queues, done))
    try:
        if options.workers == 1:
            ran = work(plan, 0, bar)
        else:
            with Poller(plan, bar):
                # Fresh processes that a stop signal reaches: each fails its unit's records and exits.
                ran = sum(run_workers(functools.partial(work, plan), options.workers))
    finally:
        bar.close()

    table = results.runs(client, study.experiment)
    finished = results.finished(table, plan.config_hashes.values())
    tracking.write_summaries(client, experiment_id, finished, metric_columns(finished))
    outcome = outcome_of(plan, table)
    outcome.ran = ran
    return outcome


def _todo(plan: Plan, queues: dict, done: set) -> int:
    """Units this command has to train: repeats not done, tuning trials short of the budget."""
    todo = sum(1 for unit in plan.repeat_units() if unit.key not in done)
    settled = (TrialState.COMPLETE, TrialState.PRUNED)
    return todo + sum(max(0, plan.study.trials - len(q.trials(settled))) for q in plan.tune_queues(queues))
