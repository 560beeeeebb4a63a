"""The plan of a study run: which units exist, under which configuration.

A *unit* is one (variant, data set, setting, seed) repeat of a study under one configuration
(``config_hash``: the study's result-relevant fields, the data set entry and a fingerprint of
the loaded data). Tuning trials are units too. Making the plan loads every data set,
fingerprints it and builds every variant once, so a bad option fails before any store is touched.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import optuna

import models
from harness import data as datasets
from harness import keys, trainer
from harness.config import TrainConfig
from harness.devices import placements_here
from harness.options import RunOptions
from harness.studies import Study, StudyError
from harness.tracking import view_tags
from harness.workqueue import WorkQueue
from models.base import NeuralModel


@dataclass(frozen=True)
class Unit:
    """One training run of a study, as kept in a queue trial's user attributes."""

    phase: str  # keys.TUNE or keys.REPEAT
    variant: str
    dataset: str
    setting: str
    seed: int
    config_hash: str

    @classmethod
    def of(cls, attrs: dict) -> Unit:
        return cls(*(attrs[k] for k in (keys.PHASE, *keys.UNIT, keys.CONFIG_HASH)))

    @property
    def key(self) -> tuple:
        return self.variant, self.dataset, self.setting, self.seed, self.config_hash


@dataclass(frozen=True)
class Plan:
    """Everything a worker needs, picklable (workers in other processes load data themselves)."""

    study: Study
    options: RunOptions
    config_hashes: dict  # data set name -> config_hash
    data_fingerprints: dict  # data set name -> content fingerprint of the loaded data
    carve_by_seed: dict  # data set name -> whether its validation split is carved per run seed
    placements: tuple = ()  # harness.devices.WorkerPlacement per worker: its device and CPU threads
    tracking_uri: str = ""
    experiment_id: str = ""

    def bound(self, tracking_uri: str, experiment_id: str) -> Plan:
        return replace(self, tracking_uri=tracking_uri, experiment_id=experiment_id)

    def repeat_units(self) -> list[Unit]:
        if self.options.tune_only:
            return []
        return [
            Unit(keys.REPEAT, v, d.name, s, seed, self.config_hashes[d.name])
            for d in self.study.datasets
            for v in self.study.variants
            for s in self.study.settings()
            for seed in self.study.seeds
        ]

    @property
    def repeat_queue_name(self) -> str:
        return f"{self.study.experiment}.{keys.REPEAT}"

    def tune_queue_names(self) -> dict[tuple[str, str], str]:
        """(variant, data set) -> the name of its tuning study (one search per configuration)."""
        if not self.study.tuned:
            return {}
        return {
            (v, d.name): f"{self.study.experiment}.{self.config_hashes[d.name]}.{keys.TUNE}.{v}"
            for d in self.study.datasets
            for v in self.study.variants
        }

    def queues(self, storage, worker: int = 0) -> dict:
        """Every queue of the plan, keyed by keys.REPEAT or (variant, data set) for tuning."""
        sampler = optuna.samplers.TPESampler(seed=self.study.seeds[0] * 1000 + worker, constant_liar=True)
        pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
        out = {key: WorkQueue(storage, name, sampler, pruner) for key, name in self.tune_queue_names().items()}
        if not self.options.tune_only:
            out[keys.REPEAT] = WorkQueue(storage, self.repeat_queue_name)
        return out

    @staticmethod
    def tune_queues(queues: dict) -> list[WorkQueue]:
        return [queue for key, queue in queues.items() if key != keys.REPEAT]

    def phase_tags(self) -> dict[str, str]:
        """The experiment tag naming the phases this command runs (``invoke tune``: the search alone)."""
        phases = ([keys.TUNE] if self.study.tuned else []) + ([] if self.options.tune_only else [keys.REPEAT])
        return {keys.PLANNED_PHASES: " ".join(phases) or "none"}


def make_plan(study: Study, options: RunOptions) -> Plan:
    """The units of ``study`` under its current configuration: loads and fingerprints every data
    set and builds every variant once, so a bad option fails here, before any store is touched."""
    if options.workers < 1:
        raise StudyError(f"--workers must be >= 1, got {options.workers}")
    try:  # a device this machine lacks would otherwise fail every run, one by one
        placements = tuple(placements_here(options.device, options.workers))
    except (ValueError, RuntimeError) as exc:
        raise StudyError(f"--device {options.device}: {exc}") from None
    from harness.run import overrides

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
        study = overrides.decide(study, data.spec)  # which variants each study-wide override reaches
        _check_variants_build(study, data)
    return Plan(study, options, config_hashes, fingerprints, carve, placements=placements)


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
            train_cfg, model = build_run(study, variant, data.spec, params, study.seeds[0], options)
            if isinstance(model, NeuralModel):
                try:
                    model.check_training(min(train_cfg.batch_size, n_train))
                except ValueError as exc:
                    raise StudyError(f"{study.source}: {variant!r} ({setting}): {exc}") from None


def build_run(study: Study, variant: str, spec, params: dict, seed: int, options: RunOptions, device: str = "cpu"):
    """(TrainConfig, model) for one run on ``device`` (a worker's placement); the model is built after
    seeding so weights follow the seed."""
    train_fields = set(TrainConfig.field_names())
    train_params = {k: v for k, v in params.items() if k in train_fields}
    model_params = {k: v for k, v in params.items() if k not in train_fields}
    try:
        train_cfg = TrainConfig.from_preset(
            study.preset, **{**train_params, "seed": seed, "device": device, "progress": options.progress}
        )
        trainer.seed_everything(seed, device=device)
        model = models.create(variant, spec, preset=study.preset, **model_params)
    except (ValueError, TypeError) as exc:
        raise StudyError(
            f"{study.source}: overrides for {variant!r}: {exc} (training fields: {', '.join(sorted(train_fields))})"
        ) from None
    return train_cfg, model


def experiment_tags(study: Study) -> dict:
    tags = {
        "study": study.name,
        "study_file": study.source,
        "quick": str(study.quick).lower(),
        "datasets": ", ".join(d.name for d in study.datasets),
        "planned_variants": " ".join(study.variants),
        "planned_seeds": " ".join(map(str, study.seeds)),
        keys.REFERENCE: study.compared_with,
        keys.EQUIVALENCE_MARGIN: f"{study.margin:g}",
        **view_tags(len(study.datasets) > 1),
        **study.tags,
    }
    return {k: v for k, v in tags.items() if v is not None}
