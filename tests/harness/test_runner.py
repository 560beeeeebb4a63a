"""The runner's work queue: stale trials of dead workers are failed (and their MLflow runs), a
unit queued twice runs once, the same seeds give the same runs, and a finished study is not redone."""
import subprocess
import time

import optuna
import pytest
from optuna.trial import TrialState

from harness import runner, studies, tracking
from harness.storage import open_optuna_storage, prepare_tracking

TINY = {"dataset": "synthetic", "dataset_options": {"size": "tiny", "seq_len": 8}}


@pytest.fixture
def stores(tmp_path):
    """(journal path, sqlite tracking URI) of a fresh pair of stores."""
    return str(tmp_path / "optuna.journal"), prepare_tracking(f"sqlite:///{tmp_path / 'mlflow.db'}")


def _plan(storage: str, tracking_uri: str, name="queue", variants=("carat",), seeds=(1,)):
    study = studies.from_dict({"name": name, "variants": list(variants), "seeds": list(seeds), "epochs": 1, **TINY})
    client = tracking.client_for(tracking_uri)
    experiment_id = tracking.ensure_experiment(client, tracking_uri, study.name)
    options = runner.RunOptions(storage=storage, tracking_uri=tracking_uri)
    plan = runner._Plan(study, options, tracking_uri, experiment_id)
    return plan, client


def _claimed_trial_with_run(plan, client, storage, record_id=True):
    """Queue the plan's units, claim the first as this process and give it an MLflow run tagged
    as the runner tags it, as a worker does just before training."""
    runner._enqueue_missing(storage, plan)
    repeat = optuna.load_study(study_name=plan.repeat_name, storage=storage)
    trial = runner._claim(repeat)
    tags = {"phase": "repeat", "optuna_study": plan.repeat_name, "optuna_trial": trial.number}
    run = tracking.TrackedRun(client, plan.experiment_id, "r", tags)
    if record_id:
        storage.set_trial_user_attr(trial._trial_id, "mlflow_run_id", run.run_id)
    return repeat, trial, run.run_id


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()  # reaped: the pid belongs to no process now
    return child.pid


def _state(study, trial):
    return study.get_trials(deepcopy=False)[trial.number]


@pytest.mark.parametrize(
    "died",
    [
        "training",
        "before_recording_the_run_id",  # right after creating the run
        "after_finishing_the_run",  # run ended FINISHED, killed before the trial's COMPLETE
    ],
)
def test_trial_of_a_dead_worker_on_this_host_is_failed_at_once_with_its_run(stores, died):
    storage_url, tracking_uri = stores
    plan, client = _plan(storage_url, tracking_uri)
    storage = open_optuna_storage(storage_url)
    recorded = died != "before_recording_the_run_id"
    repeat, trial, run_id = _claimed_trial_with_run(plan, client, storage, record_id=recorded)
    if died == "after_finishing_the_run":
        client.set_terminated(run_id, "FINISHED")

    runner._fail_stale(storage, plan, client)  # its worker (this process) is alive: left alone
    assert _state(repeat, trial).state == TrialState.RUNNING
    assert client.get_run(run_id).info.status == ("FINISHED" if died == "after_finishing_the_run" else "RUNNING")

    storage.set_trial_user_attr(trial._trial_id, "worker_pid", _dead_pid())
    runner._fail_stale(storage, plan, client)
    failed = _state(repeat, trial)
    assert failed.state == TrialState.FAIL
    assert "died while running this trial" in failed.user_attrs["fail_reason"]
    run = client.get_run(run_id)
    assert run.info.status == "FAILED" and "died" in run.data.tags["failure_reason"]


def test_trial_of_a_silent_worker_on_another_host_is_failed_only_after_the_timeout(stores):
    storage_url, tracking_uri = stores
    plan, client = _plan(storage_url, tracking_uri)
    storage = open_optuna_storage(storage_url)
    repeat, trial, run_id = _claimed_trial_with_run(plan, client, storage)
    storage.set_trial_user_attr(trial._trial_id, "worker_host", "elsewhere.invalid")

    storage.set_trial_user_attr(trial._trial_id, "heartbeat", time.time() - runner.STALE_AFTER_SECONDS + 60)
    runner._fail_stale(storage, plan, client)  # silent for less than the timeout: maybe just busy
    assert _state(repeat, trial).state == TrialState.RUNNING

    storage.set_trial_user_attr(trial._trial_id, "heartbeat", time.time() - runner.STALE_AFTER_SECONDS - 1)
    runner._fail_stale(storage, plan, client)
    failed = _state(repeat, trial)
    assert failed.state == TrialState.FAIL
    assert "no heartbeat from worker elsewhere.invalid" in failed.user_attrs["fail_reason"]
    assert client.get_run(run_id).info.status == "FAILED"


def test_failed_units_are_queued_again_but_finished_ones_are_not(stores):
    storage_url, tracking_uri = stores
    plan, client = _plan(storage_url, tracking_uri, seeds=(1, 2))
    storage = open_optuna_storage(storage_url)
    runner._enqueue_missing(storage, plan)
    runner._enqueue_missing(storage, plan)  # nothing new: both units are already waiting
    repeat = optuna.load_study(study_name=plan.repeat_name, storage=storage)
    assert [t.state for t in repeat.get_trials()] == [TrialState.WAITING] * 2

    first, second = runner._claim(repeat), runner._claim(repeat)
    repeat.tell(first, 0.5)
    repeat.tell(second, state=TrialState.FAIL)
    runner._enqueue_missing(storage, plan)
    trials = repeat.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.WAITING]
    assert trials[2].user_attrs["seed"] == trials[1].user_attrs["seed"]  # the failed unit, again


def test_a_unit_queued_twice_runs_once(stores):
    # Two machines enqueueing at the same moment both see the unit missing and both queue it.
    storage_url, tracking_uri = stores
    plan, _ = _plan(storage_url, tracking_uri)
    storage = open_optuna_storage(storage_url)
    runner._open_study(storage, plan.repeat_name, plan, worker=0)
    repeat = optuna.load_study(study_name=plan.repeat_name, storage=storage)
    for _ in range(2):
        repeat.enqueue_trial({}, user_attrs=plan.repeat_units()[0])

    later = repeat.get_trials(deepcopy=False)[1]
    assert storage.set_trial_state_values(later._trial_id, state=TrialState.RUNNING)  # claimed first, by chance
    assert runner._is_duplicate(repeat, optuna.Trial(repeat, later._trial_id))
    first = runner._claim(repeat)
    assert first.number == 0 and not runner._is_duplicate(repeat, first)
    states = [(t.state, t.user_attrs.get("fail_reason")) for t in repeat.get_trials()]
    assert states == [(TrialState.RUNNING, None), (TrialState.FAIL, "duplicate of trial 0")]
    assert runner._claim(repeat) is None  # the queue is empty: nothing new is created


def _history(client, run) -> list[float]:
    return [m.value for m in sorted(client.get_metric_history(run.info.run_id, "train_loss"), key=lambda m: m.step)]


def test_same_seeds_in_fresh_stores_give_identical_runs_and_a_rerun_trains_nothing(tmp_path):
    study = studies.from_dict({"name": "det", "variants": ["carat"], "seeds": [1, 2], "epochs": 2, **TINY})
    from study_runs import mlflow_runs

    results = []
    for attempt in ("a", "b"):
        options = runner.RunOptions(
            storage=str(tmp_path / attempt / "optuna.journal"),
            tracking_uri=f"sqlite:///{tmp_path / attempt / 'mlflow.db'}",
            progress=False,
        )
        assert runner.run(study, options).ok
        client = tracking.client_for(options.tracking_uri)
        runs = {int(r.data.tags["seed"]): r for r in mlflow_runs(options.tracking_uri, "det")}
        results.append(
            {
                seed: ({k: v for k, v in r.data.metrics.items() if k.startswith("test_")}, _history(client, r))
                for seed, r in runs.items()
            }
        )
    assert sorted(results[0]) == [1, 2]
    for seed in (1, 2):
        metrics, losses = results[0][seed]
        assert len(metrics) >= 10 and len(losses) == 2
        assert results[1][seed] == (metrics, losses)  # bit-identical, not approximately equal
    assert results[0][1][1] != results[0][2][1]  # the seed matters, so the comparison above could fail

    # Running the finished study again (store "b") trains and logs nothing new.
    before = {r.info.run_id for r in mlflow_runs(options.tracking_uri, "det")}
    outcome = runner.run(study, options)
    assert outcome.ok and len(outcome.finished) == 2
    assert {r.info.run_id for r in mlflow_runs(options.tracking_uri, "det")} == before
    assert runner.count_by_state(options.storage, runner._Plan(study, options, "", "").repeat_name) == {"COMPLETE": 2}


def test_a_worker_waits_for_units_running_elsewhere_and_takes_over_a_silent_one(stores):
    storage_url, tracking_uri = stores
    plan, client = _plan(storage_url, tracking_uri, name="takeover", seeds=(1, 2))
    storage = open_optuna_storage(storage_url)
    repeat, trial, run_id = _claimed_trial_with_run(plan, client, storage)  # seed 1, "on another machine"
    storage.set_trial_user_attr(trial._trial_id, "worker_host", "elsewhere.invalid")
    # Silent for a while already: stale a few seconds into the run below, not at its start.
    storage.set_trial_user_attr(trial._trial_id, "heartbeat", time.time() - runner.STALE_AFTER_SECONDS + 3)

    outcome = runner.run(plan.study, runner.RunOptions(storage=storage_url, tracking_uri=tracking_uri, progress=False))
    assert outcome.ok and sorted(u["seed"] for u in outcome.finished) == [1, 2]  # no re-run needed
    trials = repeat.get_trials()
    assert trials[trial.number].state == TrialState.FAIL
    assert "no heartbeat" in trials[trial.number].user_attrs["fail_reason"]
    assert client.get_run(run_id).info.status == "FAILED"
    assert sorted(t.user_attrs["seed"] for t in trials if t.state == TrialState.COMPLETE) == [1, 2]



def test_tuning_trials_queued_beyond_the_budget_by_machines_starting_together_are_not_run(stores):
    storage_url, tracking_uri = stores
    study = studies.from_dict({
        "name": "budget", "variants": ["carat"], "seeds": [1], "epochs": 1, "trials": 2,
        "search_space": {"lr": {"low": 1e-4, "high": 1e-2, "log": True}}, **TINY,
    })  # fmt: skip
    plan = runner._Plan(study, runner.RunOptions(storage=storage_url, tracking_uri=tracking_uri), tracking_uri, "0")
    storage = open_optuna_storage(storage_url)
    runner._enqueue_missing(storage, plan)
    tune = optuna.load_study(study_name=plan.tune_name("carat"), storage=storage)
    for _ in range(2):  # a second machine saw an empty queue at the same moment and queued its own
        tune.enqueue_trial({}, user_attrs=tune.get_trials()[0].user_attrs)

    verdicts = [runner._beyond_budget(runner._claim(tune), study.trials) for _ in range(4)]
    assert verdicts == [False, False, True, True]
    reasons = [t.user_attrs.get("fail_reason") for t in tune.get_trials()]
    assert reasons == [None, None, "beyond the tuning budget of 2", "beyond the tuning budget of 2"]
