"""Run a study: plan its units, run them from a shared queue, summarise what MLflow holds.

A *unit* is one (variant, data set, setting, seed) repeat of a study under one
configuration (``config_hash``: the study's result-relevant fields, the data set entry and a
fingerprint of the loaded data). Tuning trials are units too. Every unit is an Optuna trial
in a :class:`harness.workqueue.WorkQueue` and one MLflow run.

1. **Plan.** Load every data set (bad options stop here, before any store is touched),
   fingerprint it, build every variant once, then open the stores.
2. **Reconcile and enqueue.** MLflow is the one home of results: a repeat unit is done when
   its configuration has a FINISHED run in the tracking store. Every other unit without a
   waiting or running trial is queued, so a re-run resumes, a unit whose run is missing from
   the tracking store (a fresh store, a deleted run) runs again, and a changed data file is
   a new configuration that runs.
3. **Work.** Each worker claims units one at a time; tuning first (pruned on validation
   micro-F1), repeats once every tuning trial is settled, at each variant's best parameters.
   A repeat run keeps a checkpoint after each epoch and a re-run continues it.
4. **Summarise**, from MLflow through ``harness.results``: the summary runs, and the
   outcome the command prints.
"""

from __future__ import annotations

import functools
import logging
import os
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import optuna
from optuna.trial import TrialState
from tqdm.auto import tqdm

import models
from harness import data as datasets
from harness import results, tracking, trainer
from harness.config import TrainConfig
from harness.storage import RUNS_DIR, open_optuna_storage, prepare_tracking, redact, redact_text
from harness.studies import DEFAULT_SETTING, Study, StudyError
from harness.workqueue import SETTLED, Claim, WorkQueue
from models.base import NeuralModel

POLL_SECONDS = 2.0
LIVE = (TrialState.WAITING, TrialState.RUNNING)


@dataclass(frozen=True)
class RunOptions:
    device: str = "cpu"
    workers: int = 1
    storage: str | None = None  # Optuna storage URL or journal path; None: runs/optuna.journal
    tracking_uri: str | None = None  # MLflow; None: sqlite under runs/
    progress: bool = True
    tune_only: bool = False  # `invoke tune`: the search alone, no repeats
    checkpoint_dir: str | None = None  # None: runs/checkpoints
    keep_checkpoints: bool = False  # keep a finished run's last checkpoint
    verbose: bool = False  # library INFO logs (Optuna, MLflow, alembic)


@dataclass
class Outcome:
    study: str
    experiment: str
    tracking_uri: str
    finished: list[dict] = field(default_factory=list)  # one row per finished repeat unit, with test metrics
    failed: list[dict] = field(default_factory=list)  # units whose latest attempt failed, with the reason
    missing: list[dict] = field(default_factory=list)  # units with no finished run
    ran: int = 0  # units trained by this command

    @property
    def ok(self) -> bool:
        return not self.failed and not self.missing


@dataclass(frozen=True)
class Unit:
    """One training run of a study, as kept in a queue trial's user attributes."""

    phase: str  # "tune" or "repeat"
    variant: str
    dataset: str
    setting: str
    seed: int
    config_hash: str

    @classmethod
    def of(cls, attrs: dict) -> Unit:
        return cls(*(attrs[k] for k in ("phase", "variant", "dataset", "setting", "seed", "config_hash")))

    @property
    def key(self) -> tuple:
        return self.variant, self.dataset, self.setting, self.seed, self.config_hash


def run(study: Study, options: RunOptions) -> Outcome:
    """Run (or resume) ``study``. A bad study, option, device or store raises StudyError or
    StorageError before anything is created; a failing unit fails alone."""
    quiet_libraries(options.verbose)
    plan = make_plan(study, options)
    open_optuna_storage(options.storage)  # checked before MLflow is touched
    tracking_uri = prepare_tracking(options.tracking_uri)
    client = tracking.client_for(tracking_uri)
    experiment_id = tracking.ensure_experiment(
        client, tracking_uri, study.experiment, study.description, _experiment_tags(study)
    )
    plan = plan.bound(tracking_uri, experiment_id)
    on_stale = _stale_handler(client, experiment_id)
    storage = open_optuna_storage(options.storage, on_stale=on_stale)

    queues = plan.queues(storage)
    for queue in queues.values():
        queue.fail_stale(on_stale)
    done = _finished_keys(client, plan)
    _enqueue(plan, queues, done)
    todo = sum(1 for unit in plan.repeat_units() if unit.key not in done)
    todo += sum(
        max(0, plan.study.trials - len(q.trials((TrialState.COMPLETE, TrialState.PRUNED))))
        for key, q in queues.items()
        if key != "repeat"
    )

    bar = _overall_bar(plan, todo)
    if options.workers == 1:
        ran = _work(plan, 0, bar)
    else:
        from joblib import Parallel, delayed

        with _Poller(plan, bar):
            ran = sum(
                Parallel(n_jobs=options.workers, backend="loky")(
                    delayed(_work)(plan, i) for i in range(options.workers)
                )
            )
    bar.close()

    table = results.runs(client, study.experiment)
    finished = results.finished(table, plan.config_hashes.values())
    tracking.write_summaries(client, experiment_id, finished, _metric_columns(finished))
    outcome = _outcome(plan, table)
    outcome.ran = ran
    return outcome


# -- the plan: which units exist, under which configuration ---------------------------------


@dataclass(frozen=True)
class Plan:
    """Everything a worker needs, picklable (workers in other processes load data themselves)."""

    study: Study
    options: RunOptions
    config_hashes: dict  # data set name -> config_hash
    data_fingerprints: dict  # data set name -> content fingerprint of the loaded data
    carve_by_seed: dict  # data set name -> whether its validation split is carved per run seed
    tracking_uri: str = ""
    experiment_id: str = ""

    def bound(self, tracking_uri: str, experiment_id: str) -> Plan:
        return Plan(
            self.study,
            self.options,
            self.config_hashes,
            self.data_fingerprints,
            self.carve_by_seed,
            tracking_uri,
            experiment_id,
        )

    def repeat_units(self) -> list[Unit]:
        if self.options.tune_only:
            return []
        return [
            Unit("repeat", v, d.name, s, seed, self.config_hashes[d.name])
            for d in self.study.datasets
            for v in self.study.variants
            for s in self.study.settings()
            for seed in self.study.seeds
        ]

    @property
    def repeat_queue_name(self) -> str:
        return f"{self.study.experiment}.repeat"

    def tune_queue_names(self) -> dict[tuple[str, str], str]:
        """(variant, data set) -> the name of its tuning study (one search per configuration)."""
        if not self.study.tuned:
            return {}
        return {
            (v, d.name): f"{self.study.experiment}.{self.config_hashes[d.name]}.tune.{v}"
            for d in self.study.datasets
            for v in self.study.variants
        }

    def queues(self, storage, worker: int = 0) -> dict:
        """Every queue of the plan, keyed by "repeat" or (variant, data set) for tuning."""
        sampler = optuna.samplers.TPESampler(seed=self.study.seeds[0] * 1000 + worker, constant_liar=True)
        pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
        out = {key: WorkQueue(storage, name, sampler, pruner) for key, name in self.tune_queue_names().items()}
        if not self.options.tune_only:
            out["repeat"] = WorkQueue(storage, self.repeat_queue_name)
        return out


def make_plan(study: Study, options: RunOptions) -> Plan:
    """The units of ``study`` under its current configuration: loads and fingerprints every data
    set and builds every variant once, so a bad option fails here, before any store is touched."""
    if options.workers < 1:
        raise StudyError(f"--workers must be >= 1, got {options.workers}")
    try:  # a device this machine lacks would otherwise fail every run, one by one
        trainer.resolve_device(options.device)
    except (ValueError, RuntimeError) as exc:
        raise StudyError(f"--device {options.device}: {exc}") from None
    config_hashes, fingerprints, carve = {}, {}, {}
    for source in study.datasets:
        data = load_data(study, source.name)
        # Seeds also vary the validation split where the loader carves one (and the study does not
        # fix its seed): deterministic baselines then get a real spread over seeds.
        carve[source.name] = "split_seed" not in source.options and str(data.notes.get("valid_split", "")).startswith(
            "carved"
        )
        fingerprints[source.name] = data.digest
        config_hashes[source.name] = study.config_hash(source.name, fingerprints[source.name])
        _check_variants_build(study, data)
    return Plan(study, options, config_hashes, fingerprints, carve)


def load_data(study: Study, dataset: str, split_seed: int | None = None):
    """One data set of the study; ``split_seed`` carves its validation split where the loader
    carves one (emotions, arff, npz without a valid split). Bad options name the study file."""
    source = study.dataset(dataset)
    options = dict(source.options)
    if split_seed is not None:
        options["split_seed"] = split_seed
    try:
        return datasets.load(source.loader, data_path=source.data_path, **options)
    except (ValueError, TypeError) as exc:
        if isinstance(exc, datasets.DataFormatError):
            raise
        raise StudyError(f"{study.source}: data set {dataset!r} ({source.loader}): {exc}") from None


def _check_variants_build(study: Study, data) -> None:
    """Build every (variant, setting) once up front, and ask each neural model whether it can train
    at the batch size, so that a bad field or configuration fails before any training."""
    options = RunOptions(progress=False)
    n_train = data.splits["train"].n
    for variant in study.variants:
        for setting in study.settings():
            params = study.params_for(variant, setting)
            train_cfg, model = _build(study, variant, data.spec, params, study.seeds[0], options)
            if isinstance(model, NeuralModel):
                try:
                    model.check_training(min(train_cfg.batch_size, n_train))
                except ValueError as exc:
                    raise StudyError(f"{study.source}: {variant!r} ({setting}): {exc}") from None


def _experiment_tags(study: Study) -> dict:
    tags = {
        "study": study.name,
        "study_file": study.source,
        "quick": str(study.quick).lower(),
        "datasets": ", ".join(d.name for d in study.datasets),
        "planned_variants": " ".join(study.variants),
        "planned_seeds": " ".join(map(str, study.seeds)),
        **tracking.view_tags(len(study.datasets) > 1),
        **study.tags,
    }
    return {k: v for k, v in tags.items() if v is not None}


def _finished_keys(client, plan: Plan) -> set[tuple]:
    table = results.finished(results.runs(client, plan.study.experiment), plan.config_hashes.values())
    return {(r.variant, r.dataset, r.setting, int(r.seed), r.config_hash) for r in table.itertuples()}


def _enqueue(plan: Plan, queues: dict, done: set) -> None:
    """Queue every repeat unit that is neither done nor waiting/running (so re-runs resume), and
    top each tuning study up to its budget."""
    _top_up_tuning(plan, queues)
    if "repeat" in queues:
        queued = {Unit.of(t.user_attrs).key for t in queues["repeat"].trials(LIVE)}
        for unit in plan.repeat_units():
            if unit.key not in done and unit.key not in queued:
                queues["repeat"].enqueue(asdict(unit))


def _top_up_tuning(plan: Plan, queues: dict) -> None:
    """Each tuning study gets trials until its budget counts live and finished ones (a trial of a
    dead worker, failed, is replaced)."""
    for (variant, dataset), _name in plan.tune_queue_names().items():
        queue = queues[(variant, dataset)]
        have = len(queue.trials((*LIVE, TrialState.COMPLETE, TrialState.PRUNED)))
        unit = Unit("tune", variant, dataset, DEFAULT_SETTING, plan.study.seeds[0], plan.config_hashes[dataset])
        for _ in range(plan.study.trials - have):
            queue.enqueue(asdict(unit))


def _stale_handler(client, experiment_id: str):
    def on_stale(queue_name: str, number: int, unit: dict, reason: str) -> None:
        tracking.fail_runs_of_trial(client, experiment_id, queue_name, number, reason)

    return on_stale


# -- workers ---------------------------------------------------------------------------------


def _work(plan: Plan, worker: int, overall=None) -> int:
    """One worker: claim and run units until none is left; returns how many it trained."""
    import torch

    quiet_libraries(plan.options.verbose)
    models.load_plugins(plan.study.plugins, Path("/"))  # a worker process imports the study's own models too
    if plan.options.workers > 1:
        torch.set_num_threads(max(1, _available_cpus() // plan.options.workers))
    client = tracking.client_for(plan.tracking_uri)
    on_stale = _stale_handler(client, plan.experiment_id)
    storage = open_optuna_storage(plan.options.storage, on_stale=on_stale)
    queues = plan.queues(storage, worker)
    worker_ = _Worker(plan, worker, client, overall)

    tune = [q for key, q in queues.items() if key != "repeat"]
    while True:
        claim = next((c for c in (q.claim() for q in tune) if c is not None), None)
        if claim is not None:
            if not _beyond_budget(claim, plan.study.trials):
                worker_.train(claim)
            continue
        if any(q.busy() for q in tune):  # repeats need every tuning trial settled
            for q in tune:
                q.fail_stale(on_stale)
            _top_up_tuning(plan, queues)  # replaces tuning trials of dead workers
            time.sleep(POLL_SECONDS)
            continue
        break
    if "repeat" not in queues:
        return worker_.trained
    repeat = queues["repeat"]
    planned = {u.key for u in plan.repeat_units()}
    worker_.best = {key: _best_params(q) for key, q in queues.items() if key != "repeat"}
    while True:
        claim = repeat.claim(wanted=lambda attrs: Unit.of(attrs).key in planned)
        if claim is not None:
            if not _is_duplicate(claim, repeat, client, plan):
                worker_.train(claim)
            continue
        if not any(Unit.of(t.user_attrs).key in planned for t in repeat.trials(LIVE)):
            break
        # Units still run elsewhere: wait for them, so this worker's summary is the whole
        # study's, and a unit whose worker dies (found stale) is taken over, not left missing.
        if repeat.fail_stale(on_stale):
            _enqueue(plan, queues, _finished_keys(client, plan))
        time.sleep(POLL_SECONDS)
    return worker_.trained


def _available_cpus() -> int:
    """The CPUs this process may run on (a SLURM task's allocation, a container's cgroup), not the
    machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity on this platform
        return os.cpu_count() or 1


def _is_duplicate(claim: Claim, queue: WorkQueue, client, plan: Plan) -> bool:
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


def _beyond_budget(claim: Claim, budget: int) -> bool:
    """Machines enqueueing at the same moment can queue more tuning trials than the budget: as
    with duplicates, the lowest-numbered live trials run and a later one beyond it is failed."""
    alive = (*LIVE, TrialState.COMPLETE, TrialState.PRUNED)
    ahead = sum(1 for t in claim.queue.trials(alive) if t.number < claim.number)
    if ahead < budget:
        return False
    claim.fail(f"beyond the tuning budget of {budget}")
    return True


def _best_params(queue: WorkQueue) -> dict:
    completed = queue.trials((TrialState.COMPLETE,))
    return dict(max(completed, key=lambda t: t.value).params) if completed else {}


class _Worker:
    """Trains claimed units: one MLflow run each, the queue told the outcome."""

    def __init__(self, plan: Plan, index: int, client, overall):
        self.plan, self.index, self.client, self.overall = plan, index, client, overall
        self.best: dict = {}
        self.trained = 0
        self._data: dict = {}

    def data(self, unit: Unit):
        key = (unit.dataset, unit.seed if self.plan.carve_by_seed[unit.dataset] else None)
        if key not in self._data:
            self._data = {key: load_data(self.plan.study, unit.dataset, split_seed=key[1])}  # keep one in memory
        return self._data[key]

    def train(self, claim: Claim) -> None:
        plan, study = self.plan, self.plan.study
        unit = Unit.of(claim.unit)
        clock = [time.perf_counter()]  # where a unit's time goes, logged with it (see invoke bench)

        def lap() -> float:
            clock.append(time.perf_counter())
            return clock[-1] - clock[-2]

        data = self.data(unit)
        seconds = {"time_data_s": lap()}
        params = study.params_for(unit.variant, unit.setting)
        if unit.phase == "tune":
            params.update({p.name: p.suggest(claim.trial) for p in study.search_space})
        else:
            params = {**params, **self.best.get((unit.variant, unit.dataset), {}), **study.settings()[unit.setting]}
        train_cfg, model = _build(study, unit.variant, data.spec, params, unit.seed, plan.options)
        seconds["time_build_s"] = lap()
        name = run_name(unit, claim.number, several_datasets=len(study.datasets) > 1)
        checkpoint = self._checkpoint_path(unit) if unit.phase == "repeat" else None
        tags = {
            "study": study.name,
            "variant": unit.variant,
            "dataset": unit.dataset,
            "seed": unit.seed,
            "phase": unit.phase,
            "setting": unit.setting,
            "optuna_trial": claim.number,
            "optuna_study": claim.queue.name,
            "config_hash": unit.config_hash,
            "data_fingerprint": plan.data_fingerprints[unit.dataset],
            "code_version": code_version(),
            "storage": redact(plan.options.storage or "runs/optuna.journal"),
        }
        with tracking.TrackedRun(self.client, plan.experiment_id, name, tags) as run, claim.alive():
            claim.set_attr("mlflow_run_id", run.run_id)
            source = study.dataset(unit.dataset)
            run.log_params(
                {
                    "variant": unit.variant,
                    "dataset": unit.dataset,
                    "setting": unit.setting,
                    "seed": unit.seed,
                    "preset": study.preset,
                    "data": asdict(source),
                    **train_cfg.to_dict(),
                    **_model_params(model),
                }
            )
            run.log_dataset(unit.dataset, data.digest, data.source, _data_profile(data))

            def on_epoch(epoch: int, row: dict) -> None:
                run.log_epoch(epoch, row)
                if unit.phase == "tune":
                    claim.trial.report(row["val_micro_f1"], epoch)
                    if claim.trial.should_prune():
                        raise optuna.TrialPruned(f"pruned at epoch {epoch}")

            label = f"w{self.index} {name}" if plan.options.workers > 1 else name
            seconds["time_tracking_s"] = lap()
            try:
                result = trainer.fit(
                    model,
                    data,
                    train_cfg,
                    on_epoch=on_epoch,
                    checkpoint=checkpoint,
                    progress_label=label,
                    progress_position=self._bar_position(),
                )
                seconds["time_fit_s"] = lap()
            except optuna.TrialPruned as pruned:
                run.end("KILLED", str(pruned))
                claim.prune()
                self._settled()
                return
            except (trainer.NonFiniteLossError, ValueError, RuntimeError) as exc:
                reason = redact_text(f"{type(exc).__name__}: {exc}")
                run.end("FAILED", reason)
                claim.fail(reason)
                tqdm.write(f"FAILED {name}: {reason}\n{traceback.format_exc(limit=3)}")
                self._settled()
                return
            except BaseException as exc:  # interrupted: fail both records, then stop
                claim.fail(f"interrupted: {type(exc).__name__}")
                raise
            flags = {"resumed_from_epoch": result.resumed_from_epoch, "degenerate": result.degenerate}
            run.set_tags({k: v for k, v in flags.items() if v})
            config = _resolved_config(plan, unit, train_cfg, model, claim.number)
            run.log_result(result, data.label_names, data.modalities, config, keep_latents=unit.phase == "repeat")
            seconds["time_tracking_s"] += lap()
            run.log_metrics({**seconds, "time_eval_s": result.eval_seconds})
            # Optuna's COMPLETE is the commit point, so the run ends first: if this worker dies in
            # between, its trial stays RUNNING and the stale check fails both.
            run.end("FINISHED")
            if not claim.complete(result.val_metrics["micro_f1"]):
                # Silent too long, this worker was taken for dead and its unit handed to another.
                tracking.fail_runs_of_trial(
                    self.client,
                    plan.experiment_id,
                    claim.queue.name,
                    claim.number,
                    "its trial was failed as stale while it ran",
                )
                return
        if checkpoint is not None and not plan.options.keep_checkpoints:
            checkpoint.unlink(missing_ok=True)
        self.trained += 1
        self._settled()

    def _checkpoint_path(self, unit: Unit) -> Path:
        folder = (
            Path(self.plan.options.checkpoint_dir) if self.plan.options.checkpoint_dir else RUNS_DIR / "checkpoints"
        )
        safe = "".join(
            ch if ch.isalnum() or ch in "._-=" else "_"
            for ch in f"{unit.variant}-{unit.dataset}-{unit.setting}-s{unit.seed}"
        )
        return folder / self.plan.study.experiment / unit.config_hash / f"{safe}.pt"

    def _bar_position(self) -> int | None:
        return self.index + 1 if self.plan.options.workers > 1 else None

    def _settled(self) -> None:
        if self.overall is not None:
            self.overall.update(1)


def run_name(unit: Unit, trial_number: int, several_datasets: bool = False) -> str:
    """``carat / default / s3`` (``carat / emotions / default / s3`` with several data sets); a tuning
    trial is ``carat / tune 7``."""
    parts = [unit.variant, *([unit.dataset] if several_datasets else [])]
    if unit.phase == "tune":
        return " / ".join([*parts, f"tune {trial_number}"])
    return " / ".join([*parts, unit.setting, f"s{unit.seed}"])


# -- helpers ---------------------------------------------------------------------------------


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


def _model_params(model) -> dict:
    config = getattr(model, "config", None)
    return asdict(config) if config is not None else {}


def _data_profile(data) -> dict:
    return {
        "modalities": {m: list(td) for m, td in data.spec.modalities.items()},
        "labels": len(data.label_names),
        **{f"n_{split}": s.n for split, s in data.splits.items()},
    }


def _resolved_config(plan: Plan, unit: Unit, train_cfg: TrainConfig, model, trial_number: int) -> dict:
    study = plan.study
    return {
        "study": study.name,
        "study_file": study.source,
        "experiment": study.experiment,
        "config_hash": unit.config_hash,
        "unit": asdict(unit),
        "optuna_trial": trial_number,
        "dataset": {**asdict(study.dataset(unit.dataset)), "fingerprint": plan.data_fingerprints[unit.dataset]},
        "preset": study.preset,
        "train": train_cfg.to_dict(),
        "code_version": code_version(),
        "model": {"class": type(model).__name__, **_model_params(model)},
    }


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """The git commit of the harness (``-dirty`` with uncommitted changes), or ``unknown``."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def _metric_columns(table) -> list[str]:
    return [c for c in table.columns if c.startswith("test_")]


def _outcome(plan: Plan, table) -> Outcome:
    """What the tracking store holds for the plan's repeat units (the one source of results)."""
    study = plan.study
    outcome = Outcome(study=study.name, experiment=study.experiment, tracking_uri=plan.tracking_uri)
    if plan.options.tune_only:
        return outcome
    done = results.finished(table, plan.config_hashes.values()).set_index(
        ["variant", "dataset", "setting", "seed", "config_hash"]
    )
    failed_runs = table[(table["phase"] == "repeat") & (table["status"] == "FAILED")].sort_values("start_time")
    reasons = {}
    for r in failed_runs.itertuples():
        reasons[(r.variant, r.dataset, r.setting, int(r.seed), r.config_hash)] = r.failure_reason or "unknown"
    for unit in plan.repeat_units():
        row = {"variant": unit.variant, "dataset": unit.dataset, "setting": unit.setting, "seed": unit.seed}
        if unit.key in done.index:
            found = done.loc[unit.key]
            metrics = {k: found[k] for k in found.index if str(k).startswith("test_") or k == "degenerate"}
            outcome.finished.append({**row, "run_id": found["run_id"], **metrics})
        elif unit.key in reasons:
            outcome.failed.append({**row, "reason": reasons[unit.key]})
        else:
            outcome.missing.append(row)
    return outcome


def quiet_libraries(verbose: bool) -> None:
    """Optuna's "Using an existing study" and MLflow's "Creating initial MLflow database tables"
    INFO lines would land among the progress bars: off unless ``--verbose``."""
    level = logging.INFO if verbose else logging.WARNING
    optuna.logging.set_verbosity(level)
    for name in ("mlflow", "alembic", "alembic.runtime.migration"):
        logging.getLogger(name).setLevel(level)


def _overall_bar(plan: Plan, todo: int):
    return tqdm(
        total=todo,
        desc=f"{plan.study.experiment}: runs",
        unit="run",
        position=0,
        disable=not plan.options.progress,
        dynamic_ncols=True,
    )


class _Poller:
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
