"""Run a study: every training run (a tuning trial or a seeded repeat) is an Optuna trial.

Work is a queue kept in the Optuna storage itself, so one study can be worked by many
processes or machines at once:

1. the runner fails trials left RUNNING by dead workers, then enqueues (as WAITING
   trials carrying ``variant``/``setting``/``seed``/``phase`` user attributes) every unit
   that has no finished, waiting or running trial yet -- so a re-run resumes and never
   redoes a finished run;
2. each worker claims WAITING trials one at a time through the storage's atomic
   WAITING -> RUNNING transition, trains, logs to MLflow and tells Optuna the result;
3. tuning comes first (pruned on validation micro-F1); repeats start once every
   tuning trial is settled and use each variant's best tuned parameters.
"""
from __future__ import annotations

import os
import socket
import threading
import time
import traceback
from collections import Counter
from dataclasses import asdict, dataclass, field

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState
from tqdm.auto import tqdm

import models
from harness import data as datasets
from harness import trainer, tracking
from harness.config import TrainConfig
from harness.storage import open_optuna_storage, prepare_tracking, redact, redact_text
from harness.studies import DEFAULT_SETTING, Study, StudyError

HEARTBEAT_SECONDS = 20.0
STALE_AFTER_SECONDS = 300.0  # a RUNNING trial whose worker has been silent this long is dead
POLL_SECONDS = 2.0
HOST = socket.gethostname()
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass(frozen=True)
class RunOptions:
    device: str = "cpu"
    workers: int = 1
    storage: str | None = None  # Optuna storage URL or journal path; None: runs/optuna.journal
    tracking_uri: str | None = None  # MLflow; None: sqlite under runs/
    progress: bool = True
    tune_only: bool = False  # `invoke tune`: the search alone, no repeats


@dataclass
class Outcome:
    study: str
    experiment: str
    finished: list[dict] = field(default_factory=list)  # repeat units with test metrics
    failed: list[dict] = field(default_factory=list)  # units whose latest trial failed, with the reason
    missing: list[dict] = field(default_factory=list)  # units with no finished trial

    @property
    def ok(self) -> bool:
        return not self.failed and not self.missing


def run(study: Study, options: RunOptions) -> Outcome:
    """Run (or resume) ``study``; storage and tracking are checked before any training."""
    if options.workers < 1:
        raise StudyError(f"--workers must be >= 1, got {options.workers}")
    try:  # a device this machine lacks would otherwise fail every run, one by one
        trainer.resolve_device(options.device)
    except (ValueError, RuntimeError) as exc:
        raise StudyError(f"--device {options.device}: {exc}") from None
    storage = open_optuna_storage(options.storage)
    tracking_uri = prepare_tracking(options.tracking_uri)
    client = tracking.client_for(tracking_uri)
    experiment_id = tracking.ensure_experiment(client, tracking_uri, study.name)
    data = _load_data(study)
    _check_variants_build(study, data.spec)

    plan = _Plan(study, options, tracking_uri, experiment_id)
    for name in plan.study_names():
        _open_study(storage, name, plan, worker=0)
    _fail_stale(storage, plan, client)
    _enqueue_missing(storage, plan)

    if options.workers == 1:
        _work(plan, 0, data)
    else:
        from joblib import Parallel, delayed

        Parallel(n_jobs=options.workers, backend="loky")(delayed(_work)(plan, i) for i in range(options.workers))
    return _outcome(storage, plan)


# -- the plan: what units exist and where they are kept ------------------------------------


@dataclass(frozen=True)
class _Plan:
    study: Study
    options: RunOptions
    tracking_uri: str
    experiment_id: str

    @property
    def prefix(self) -> str:
        return f"{self.study.name}.{self.study.fingerprint()}"

    def tune_name(self, variant: str) -> str:
        return f"{self.prefix}.tune.{variant}"

    @property
    def repeat_name(self) -> str:
        return f"{self.prefix}.repeat"

    def study_names(self) -> list[str]:
        names = [self.tune_name(v) for v in self.study.variants] if self.study.tuned else []
        return names + ([] if self.options.tune_only else [self.repeat_name])

    def repeat_units(self) -> list[dict]:
        return [
            {"phase": "repeat", "variant": v, "setting": s, "seed": seed}
            for v in self.study.variants
            for s in self.study.settings()
            for seed in self.study.seeds
        ]


def _unit_key(attrs: dict) -> tuple:
    return attrs.get("variant"), attrs.get("setting"), attrs.get("seed")


def _open_study(storage, name: str, plan: _Plan, worker: int) -> optuna.Study:
    sampler = optuna.samplers.TPESampler(seed=plan.study.seeds[0] * 1000 + worker, constant_liar=True)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    for _ in range(3):  # another process may create it between our check and our create
        try:
            return optuna.create_study(
                study_name=name, storage=storage, direction="maximize",
                sampler=sampler, pruner=pruner, load_if_exists=True,
            )  # fmt: skip
        except optuna.exceptions.DuplicatedStudyError:
            time.sleep(0.2)
    return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)


def _enqueue_missing(storage, plan: _Plan, only: set | None = None) -> None:
    """Enqueue every unit that has no finished, waiting or running trial (so re-runs resume);
    with ``only``, just those repeat units (by key) -- not units that failed in training."""
    alive = (TrialState.WAITING, TrialState.RUNNING, *FINISHED)
    if plan.study.tuned and only is None:
        for variant in plan.study.variants:
            tune = _open_study(storage, plan.tune_name(variant), plan, 0)
            have = len(tune.get_trials(deepcopy=False, states=alive))
            attrs = {"phase": "tune", "variant": variant, "setting": DEFAULT_SETTING, "seed": plan.study.seeds[0]}
            for _ in range(plan.study.trials - have):
                tune.enqueue_trial({}, user_attrs=attrs)
    if not plan.options.tune_only:
        repeat = _open_study(storage, plan.repeat_name, plan, 0)
        present = {_unit_key(t.user_attrs) for t in repeat.get_trials(deepcopy=False, states=alive)}
        for unit in plan.repeat_units():
            if _unit_key(unit) not in present and (only is None or _unit_key(unit) in only):
                repeat.enqueue_trial({}, user_attrs=unit)


def _fail_stale(storage, plan: _Plan, client) -> set:
    """Mark trials left RUNNING by a dead worker FAIL (and their MLflow runs FAILED); returns
    the unit keys of the trials this call failed."""
    failed = set()
    for name in plan.study_names():
        study = optuna.load_study(study_name=name, storage=storage)
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            reason = _stale_reason(t)
            if reason is None:
                continue
            try:
                storage.set_trial_user_attr(t._trial_id, "fail_reason", reason)
                storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
            except UpdateFinishedTrialError:
                continue  # it finished (or another process failed it) meanwhile
            failed.add(_unit_key(t.user_attrs))
            tracking.fail_runs_of_trial(client, plan.experiment_id, name, t.number, reason)
    return failed


def _stale_reason(t) -> str | None:
    attrs = t.user_attrs
    if attrs.get("worker_host") == HOST and "worker_pid" in attrs:
        if not _process_alive(attrs["worker_pid"], attrs.get("worker_started")):
            return f"worker {HOST}:{attrs['worker_pid']} died while running this trial"
        return None
    last = attrs.get("heartbeat") or (t.datetime_start.timestamp() if t.datetime_start else None)
    if last is not None and time.time() - last > STALE_AFTER_SECONDS:
        return f"no heartbeat from worker {attrs.get('worker_host')}:{attrs.get('worker_pid')} for {STALE_AFTER_SECONDS:.0f} s"
    return None


def _process_started(pid: int) -> str | None:
    """Start time of a process (from /proc), to tell a live worker from a recycled pid."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields_after_name = f.read().rsplit(")", 1)[1].split()
        return fields_after_name[19]  # field 22 of stat: start time in clock ticks
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


# -- workers ---------------------------------------------------------------------------------


def _work(plan: _Plan, worker: int, data=None) -> None:
    """One worker: claim and run units until none is left."""
    import torch

    if plan.options.workers > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // plan.options.workers))
    storage = open_optuna_storage(plan.options.storage)
    client = tracking.client_for(plan.tracking_uri)
    data = data if data is not None else _load_data(plan.study)
    tune_studies = [_open_study(storage, plan.tune_name(v), plan, worker) for v in plan.study.variants] if plan.study.tuned else []
    bar = tqdm(desc=f"{plan.study.name} worker {worker}", unit="run", position=worker, disable=not plan.options.progress)

    while True:
        trial = next((t for t in (_claim(s) for s in tune_studies) if t is not None), None)
        if trial is not None:
            if not _beyond_budget(trial, plan.study.trials):
                _run_trial(trial, plan, data, client, bar)
            continue
        if any(_has_running(s) for s in tune_studies):  # repeats need every tuning trial settled
            _fail_stale(storage, plan, client)
            _enqueue_missing(storage, plan)  # replaces tuning trials of dead workers
            time.sleep(POLL_SECONDS)
            continue
        break
    if not plan.options.tune_only:
        repeat = _open_study(storage, plan.repeat_name, plan, worker)
        best = {v: _best_params(s) for v, s in zip(plan.study.variants, tune_studies)}
        while True:
            trial = _claim(repeat)
            if trial is not None:
                if not _is_duplicate(repeat, trial):
                    _run_trial(trial, plan, data, client, bar, tuned=best.get(trial.user_attrs["variant"], {}))
                continue
            if not _has_running(repeat):
                break
            # Units still run elsewhere: wait for them, so this worker's summary is the whole
            # study's and a unit whose worker dies (found stale) is taken over, not left missing.
            stale = _fail_stale(storage, plan, client)
            if stale:
                _enqueue_missing(storage, plan, only=stale)
            time.sleep(POLL_SECONDS)
    bar.close()


def _claim(study: optuna.Study) -> optuna.Trial | None:
    """Atomically move one WAITING trial to RUNNING for this process (what ``Study.ask`` does
    internally), never creating a new trial when the queue is empty."""
    storage = study._storage
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        try:
            if not storage.set_trial_state_values(frozen._trial_id, state=TrialState.RUNNING):
                continue
        except UpdateFinishedTrialError:
            continue
        for key, value in {
            "worker_host": HOST,
            "worker_pid": os.getpid(),
            "worker_started": _process_started(os.getpid()),
            "heartbeat": time.time(),
        }.items():
            storage.set_trial_user_attr(frozen._trial_id, key, value)
        return optuna.Trial(study, frozen._trial_id)
    return None


def _has_running(study: optuna.Study) -> bool:
    return bool(study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING)))


def _is_duplicate(study: optuna.Study, trial: optuna.Trial) -> bool:
    """Two machines enqueueing at the same moment can queue a unit twice: the lowest-numbered
    live trial of a unit is the one that runs; a later copy is failed as a duplicate."""
    key = _unit_key(trial.user_attrs)
    live = (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE)
    for other in study.get_trials(deepcopy=False, states=live):
        if other.number < trial.number and _unit_key(other.user_attrs) == key:
            study._storage.set_trial_user_attr(trial._trial_id, "fail_reason", f"duplicate of trial {other.number}")
            study.tell(trial, state=TrialState.FAIL)
            return True
    return False


def _beyond_budget(trial: optuna.Trial, budget: int) -> bool:
    """Machines enqueueing at the same moment can queue more tuning trials than the budget: as
    with duplicates, the lowest-numbered live trials run and a later one beyond it is failed."""
    live = (TrialState.WAITING, TrialState.RUNNING, *FINISHED)
    ahead = sum(1 for t in trial.study.get_trials(deepcopy=False, states=live) if t.number < trial.number)
    if ahead < budget:
        return False
    trial.storage.set_trial_user_attr(trial._trial_id, "fail_reason", f"beyond the tuning budget of {budget}")
    trial.study.tell(trial, state=TrialState.FAIL)
    return True


def _best_params(tune: optuna.Study) -> dict:
    completed = tune.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return dict(max(completed, key=lambda t: t.value).params) if completed else {}


def _run_trial(trial: optuna.Trial, plan: _Plan, data, client, bar, tuned: dict | None = None) -> None:
    """Train one unit, track it in MLflow and tell Optuna; a failure fails this unit only."""
    unit = trial.user_attrs
    variant, setting, seed, phase = unit["variant"], unit["setting"], unit["seed"], unit["phase"]
    params = plan.study.params_for(variant, setting)
    if phase == "tune":
        params.update({p.name: p.suggest(trial) for p in plan.study.search_space})
    else:
        params = {**params, **(tuned or {}), **plan.study.settings()[setting]}
    train_cfg, model = _build(plan.study, variant, data.spec, params, seed, plan.options)
    config = _resolved_config(plan, unit, train_cfg, model, trial.number)
    tags = {
        "study": plan.study.name, "variant": variant, "dataset": plan.study.dataset, "seed": seed,
        "phase": phase, "setting": setting, "optuna_trial": trial.number,
        "optuna_study": trial.study.study_name, "config_hash": plan.study.fingerprint(),
        "storage": redact(plan.options.storage or "runs/optuna.journal"),
    }  # fmt: skip
    run_name = f"{variant}-seed{seed}" if phase == "repeat" else f"{variant}-tune{trial.number}"
    if setting != DEFAULT_SETTING:
        run_name += f"-{setting}"
    heartbeat = _Heartbeat(trial)
    with tracking.TrackedRun(client, plan.experiment_id, run_name, tags) as run, heartbeat:
        trial.storage.set_trial_user_attr(trial._trial_id, "mlflow_run_id", run.run_id)
        run.log_params({"preset": plan.study.preset, "dataset_options": plan.study.dataset_options,
                        "setting": setting, **train_cfg.to_dict(), **_model_params(model)})  # fmt: skip

        def on_epoch(epoch: int, row: dict) -> None:
            run.log_epoch(epoch, row)
            if phase == "tune":
                trial.report(row["val_micro_f1"], epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at epoch {epoch}")

        try:
            result = trainer.fit(model, data, train_cfg, on_epoch=on_epoch)
        except optuna.TrialPruned as pruned:
            run.end("KILLED", str(pruned))
            trial.study.tell(trial, state=TrialState.PRUNED)
            bar.update(1)
            return
        except (trainer.NonFiniteLossError, ValueError, RuntimeError) as exc:
            reason = redact_text(f"{type(exc).__name__}: {exc}")
            run.end("FAILED", reason)
            trial.storage.set_trial_user_attr(trial._trial_id, "fail_reason", reason)
            trial.study.tell(trial, state=TrialState.FAIL)
            tqdm.write(f"FAILED {run_name}: {reason}\n{traceback.format_exc(limit=3)}")
            bar.update(1)
            return
        except BaseException as exc:  # interrupted: fail both records, then stop
            trial.storage.set_trial_user_attr(trial._trial_id, "fail_reason", f"interrupted: {type(exc).__name__}")
            trial.study.tell(trial, state=TrialState.FAIL)
            raise
        run.log_result(result, data.label_names, data.modalities, config, keep_latents=phase == "repeat")
        for key, value in result.test_metrics.items():
            trial.storage.set_trial_user_attr(trial._trial_id, f"test_{key}", value)
        # Optuna's COMPLETE is the commit point, so the run ends first: if this worker dies in
        # between, its trial stays RUNNING and the stale check fails both (never a COMPLETE
        # trial whose run stays RUNNING, which no re-run would repair).
        run.end("FINISHED")
        trial.study.tell(trial, result.val_metrics["micro_f1"], skip_if_finished=True)
        if trial.storage.get_trial(trial._trial_id).state != TrialState.COMPLETE:
            # Silent too long, this worker was taken for dead and its unit handed to another.
            tracking.fail_runs_of_trial(client, plan.experiment_id, trial.study.study_name, trial.number,
                                        "its trial was failed as stale while it ran")  # fmt: skip
            return
    bar.update(1)
    bar.set_postfix_str(f"{run_name}: test micro-F1 {result.test_metrics['micro_f1']:.3f}")


class _Heartbeat:
    """Background thread that stamps the trial so other workers can tell it is alive."""

    def __init__(self, trial: optuna.Trial):
        self.trial, self.stop = trial, threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self):
        while not self.stop.wait(HEARTBEAT_SECONDS):
            try:
                self.trial.storage.set_trial_user_attr(self.trial._trial_id, "heartbeat", time.time())
            except Exception:  # the trial finished meanwhile, or the storage blinked: next beat
                pass

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        return False


# -- helpers ---------------------------------------------------------------------------------


def _load_data(study: Study):
    return datasets.load(study.dataset, data_path=study.data_path, **study.dataset_options)


def _build(study: Study, variant: str, spec, params: dict, seed: int, options: RunOptions):
    """(TrainConfig, model) for one run; the model is built after seeding so weights follow the seed."""
    train_fields = set(TrainConfig.field_names())
    train_params = {k: v for k, v in params.items() if k in train_fields}
    model_params = {k: v for k, v in params.items() if k not in train_fields}
    try:
        train_cfg = TrainConfig.from_preset(
            study.preset, **{**train_params, "seed": seed, "device": options.device, "progress": options.progress}
        )
        trainer.seed_everything(seed, device=options.device)
        model = models.create(variant, spec, preset=study.preset, **model_params)
    except (ValueError, TypeError) as exc:
        raise StudyError(
            f"{study.source}: overrides for {variant!r}: {exc} (training fields: {', '.join(sorted(train_fields))})"
        ) from None
    return train_cfg, model


def _check_variants_build(study: Study, spec) -> None:
    """Build every (variant, setting) once up front so a bad field fails before any training."""
    options = RunOptions(progress=False)
    for variant in study.variants:
        for setting in study.settings():
            _build(study, variant, spec, study.params_for(variant, setting), study.seeds[0], options)


def _model_params(model) -> dict:
    config = getattr(model, "config", None)
    return asdict(config) if config is not None else {}


def _resolved_config(plan: _Plan, unit: dict, train_cfg: TrainConfig, model, trial_number: int) -> dict:
    study = plan.study
    return {
        "study": study.name, "study_file": study.source, "config_hash": study.fingerprint(),
        "unit": dict(unit), "optuna_trial": trial_number,
        "dataset": {"name": study.dataset, "options": study.dataset_options, "path": study.data_path},
        "preset": study.preset, "train": train_cfg.to_dict(),
        "model": {"class": type(model).__name__, **_model_params(model)},
    }  # fmt: skip


def _outcome(storage, plan: _Plan) -> Outcome:
    outcome = Outcome(study=plan.study.name, experiment=plan.study.name)
    if plan.options.tune_only:
        return outcome
    trials = optuna.load_study(study_name=plan.repeat_name, storage=storage).get_trials(deepcopy=False)
    by_unit: dict[tuple, list] = {}
    for t in trials:
        by_unit.setdefault(_unit_key(t.user_attrs), []).append(t)
    for unit in plan.repeat_units():
        attempts = by_unit.get(_unit_key(unit), [])
        done = [t for t in attempts if t.state == TrialState.COMPLETE]
        if done:
            outcome.finished.append({**unit, **{k: v for k, v in done[0].user_attrs.items() if k.startswith("test_")}})
            continue
        failed = [t for t in attempts if t.state == TrialState.FAIL and "duplicate" not in t.user_attrs.get("fail_reason", "")]
        if failed:
            outcome.failed.append({**unit, "reason": failed[-1].user_attrs.get("fail_reason", "unknown")})
        else:
            outcome.missing.append(unit)
    return outcome


def count_by_state(storage_url: str | None, name: str) -> Counter:
    """How many trials of an Optuna study are in each state (for tests and summaries)."""
    study = optuna.load_study(study_name=name, storage=open_optuna_storage(storage_url))
    return Counter(t.state.name for t in study.get_trials(deepcopy=False))
