"""The work queue's public surface: exclusive claims that never create trials, immediate failing
of a dead worker's unit on this host, and Optuna's heartbeats re-queueing a silent one."""

import subprocess
import time

import optuna
from optuna.trial import TrialState

from harness import workqueue
from harness.storage import open_optuna_storage
from harness.workqueue import WorkQueue


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()  # reaped: the pid belongs to no process now
    return child.pid


def _queue(tmp_path, name="q", on_stale=None, url=None):
    return WorkQueue(open_optuna_storage(url or str(tmp_path / "optuna.journal"), on_stale=on_stale), name)


def test_a_claim_is_exclusive_and_an_empty_queue_creates_nothing(tmp_path):
    queue = _queue(tmp_path)
    for seed in (1, 2):
        queue.enqueue({"seed": seed})
    other = _queue(tmp_path)  # another worker on the same storage
    first, second = queue.claim(), other.claim()
    assert {first.unit["seed"], second.unit["seed"]} == {1, 2}
    assert queue.claim() is None and other.claim() is None
    assert len(queue.trials()) == 2  # unlike Study.ask, no empty trial was created
    assert first.complete(0.5) and first.state() == TrialState.COMPLETE
    second.fail("broken")
    states = {t.user_attrs["seed"]: (t.state, t.user_attrs.get("fail_reason")) for t in queue.trials()}
    assert states == {first.unit["seed"]: (TrialState.COMPLETE, None), second.unit["seed"]: (TrialState.FAIL, "broken")}
    assert not queue.busy()


def test_claim_takes_only_the_units_asked_for(tmp_path):
    queue = _queue(tmp_path)
    for seed in (1, 2, 3):
        queue.enqueue({"seed": seed})
    claim = queue.claim(wanted=lambda unit: unit["seed"] == 3)
    assert claim.unit["seed"] == 3
    assert [t.state for t in queue.trials()] == [TrialState.WAITING, TrialState.WAITING, TrialState.RUNNING]


def test_the_unit_of_a_dead_worker_on_this_host_is_failed_at_once(tmp_path):
    told = []
    queue = _queue(tmp_path, on_stale=lambda *args: told.append(args))
    queue.enqueue({"seed": 1})
    claim = queue.claim()
    assert queue.fail_stale(lambda *args: told.append(args)) == []  # its worker (this process) is alive
    claim.set_attr("worker_pid", _dead_pid())
    failed = queue.fail_stale(lambda *args: told.append(args))
    assert [u["seed"] for u in failed] == [1]
    trial = queue.trials()[0]
    assert trial.state == TrialState.FAIL and "died while running this trial" in trial.user_attrs["fail_reason"]
    assert [(name, number) for name, number, _, _ in told] == [("q", 0)]


def test_a_silent_worker_on_an_rdb_storage_is_failed_and_its_unit_requeued_by_optuna(tmp_path, monkeypatch):
    monkeypatch.setattr(workqueue, "HEARTBEAT_SECONDS", 1)
    monkeypatch.setattr(workqueue, "STALE_AFTER_SECONDS", 2)
    told = []
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    queue = _queue(tmp_path, on_stale=lambda *args: told.append(args), url=url)
    queue.enqueue({"seed": 7})
    claim = queue.claim()
    claim.set_attr("worker_host", "elsewhere.invalid")  # another machine: only its heartbeat tells
    with claim.alive():
        time.sleep(1.5)  # it beats ...
        queue.fail_stale()
        assert queue.trials()[0].state == TrialState.RUNNING
    time.sleep(3)  # ... then goes silent for longer than the grace period
    queue.fail_stale()
    trials = queue.trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert trials[1].user_attrs["seed"] == 7  # Optuna's RetryHeartbeatStaleTrialCallback re-queued the unit
    assert len(told) == 1 and "no heartbeat from worker elsewhere.invalid" in told[0][3]


def test_pruning_goes_through_the_claimed_trial(tmp_path):
    queue = WorkQueue(
        open_optuna_storage(str(tmp_path / "optuna.journal")), "tune", pruner=optuna.pruners.ThresholdPruner(lower=0.5)
    )
    queue.enqueue({"variant": "carat"})
    claim = queue.claim()
    x = claim.trial.suggest_float("lr", 1e-4, 1e-2, log=True)
    claim.trial.report(0.1, 1)
    assert claim.trial.should_prune()
    claim.prune()
    trial = queue.trials()[0]
    assert trial.state == TrialState.PRUNED and trial.params == {"lr": x}


def _harness_sources(repo_root):
    return sorted(p for p in (repo_root / "harness").rglob("*.py") if p.name != "workqueue.py")


def test_only_the_work_queue_touches_optuna_internals(repo_root):
    import re

    sources = _harness_sources(repo_root)
    assert len(sources) > 10  # the scan reaches the package, not an empty folder
    for path in sources:
        private = re.findall(r"(?<!self)\._(?:trial_id|storage|study_id|cached_frozen_trial)\b", path.read_text())
        assert not private, f"{path.relative_to(repo_root)} uses Optuna private attributes {private}"
