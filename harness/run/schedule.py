"""Reconcile the plan with the stores and queue the work.

MLflow is the one home of results: a repeat unit is done when its configuration has a FINISHED
run in the tracking store. Every other unit without a waiting or running trial is queued, so a
re-run resumes, a unit whose run is missing from the tracking store (a fresh store, a deleted
run) runs again, and a changed data file is a new configuration that runs. Machines enqueueing
at the same moment can queue a unit twice or tuning trials beyond the budget: the
lowest-numbered live trial runs and a later copy is failed before it trains.
"""

from __future__ import annotations

from dataclasses import asdict

from optuna.trial import TrialState

from harness import keys, results, tracking
from harness.run.plan import Plan, Unit
from harness.studies import DEFAULT_SETTING
from harness.workqueue import Claim, WorkQueue

LIVE = (TrialState.WAITING, TrialState.RUNNING)


def finished_keys(client, plan: Plan) -> set[tuple]:
    table = results.finished(results.runs(client, plan.study.experiment), plan.config_hashes.values())
    return {(r.variant, r.dataset, r.setting, int(r.seed), r.config_hash) for r in table.itertuples()}


def enqueue(plan: Plan, queues: dict, done: set) -> None:
    """Queue every repeat unit that is neither done nor waiting/running (so re-runs resume), and
    top each tuning study up to its budget."""
    top_up_tuning(plan, queues)
    if keys.REPEAT in queues:
        queued = {Unit.of(t.user_attrs).key for t in queues[keys.REPEAT].trials(LIVE)}
        for unit in plan.repeat_units():
            if unit.key not in done and unit.key not in queued:
                queues[keys.REPEAT].enqueue(asdict(unit))


def top_up_tuning(plan: Plan, queues: dict) -> None:
    """Each tuning study gets trials until its budget counts live and finished ones (a trial of a
    dead worker, failed, is replaced)."""
    for (variant, dataset), _name in plan.tune_queue_names().items():
        queue = queues[(variant, dataset)]
        have = len(queue.trials((*LIVE, TrialState.COMPLETE, TrialState.PRUNED)))
        unit = Unit(keys.TUNE, variant, dataset, DEFAULT_SETTING, plan.study.seeds[0], plan.config_hashes[dataset])
        for _ in range(plan.study.trials - have):
            queue.enqueue(asdict(unit))


def stale_handler(client, experiment_id: str):
    def on_stale(queue_name: str, number: int, unit: dict, reason: str) -> None:
        tracking.fail_runs_of_trial(client, experiment_id, queue_name, number, reason)

    return on_stale


def is_duplicate(claim: Claim, queue: WorkQueue, client, plan: Plan) -> bool:
    """Two machines enqueueing at the same moment can queue a unit twice, and a unit may have
    finished since it was queued: the lowest-numbered live trial of a unit runs, and only while
    the unit has no FINISHED run; another copy is failed as a duplicate before it trains."""
    unit = Unit.of(claim.unit)
    for other in queue.trials(LIVE):
        if other.number < claim.number and Unit.of(other.user_attrs).key == unit.key:
            claim.fail(f"duplicate of trial {other.number}")
            return True
    if results.has_finished_run(client, plan.study.experiment, asdict(unit)):
        claim.fail("duplicate: the unit already has a FINISHED run")
        return True
    return False


def beyond_budget(claim: Claim, budget: int) -> bool:
    """Machines enqueueing at the same moment can queue more tuning trials than the budget: as
    with duplicates, the lowest-numbered live trials run and a later one beyond it is failed."""
    alive = (*LIVE, TrialState.COMPLETE, TrialState.PRUNED)
    ahead = sum(1 for t in claim.queue.trials(alive) if t.number < claim.number)
    if ahead < budget:
        return False
    claim.fail(f"beyond the tuning budget of {budget}")
    return True


def best_params(queue: WorkQueue) -> dict:
    completed = queue.trials((TrialState.COMPLETE,))
    return dict(max(completed, key=lambda t: t.value).params) if completed else {}
