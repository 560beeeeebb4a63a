"""The study schema: what a study is, as typed dataclasses (``studies/*.yaml`` hold them).

A study names a data set, the variants to compare, a preset, fixed hyper-parameter
overrides, an optional Optuna search space with a per-variant trial budget, optional
one-at-a-time sweeps (for sensitivity studies), the seeds of the repeats and the epochs.
Reading and checking a file is ``harness.study_file`` (``load``, ``from_dict``, re-exported
here); the options a command adds are ``harness.options`` (``Study.with_options``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from models.presets import DEFAULT_PRESET

STUDIES_DIR = Path(__file__).resolve().parents[1] / "studies"
DEFAULT_SETTING = "default"
COMPUTED = {"file": None}  # field metadata: not a field of a study file


class StudyError(ValueError):
    """A study file or a command option is invalid; the message says where and what is valid."""


@dataclass(frozen=True)
class SearchParam:
    """One searched hyper-parameter: a float/int range (optionally log-scaled) or a list of choices."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple | None = None

    @property
    def kind(self) -> str:
        if self.choices is not None:
            return "categorical"
        return "int" if isinstance(self.low, int) and isinstance(self.high, int) and not self.log else "float"

    def suggest(self, trial):
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, self.low, self.high)
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log)


@dataclass(frozen=True)
class DataSource:
    """One data set of a study: a registered loader, where its files are, and its options.

    ``label`` names the data set in results (MLflow tag ``dataset``, report rows); it
    defaults to the loader's name and must be unique within a study, so one loader can
    appear twice with different options (say aligned and unaligned synthetic data)."""

    loader: str
    data_path: str | None = None
    options: dict = field(default_factory=dict)
    label: str = ""

    @property
    def name(self) -> str:
        return self.label or self.loader

    def identity(self) -> dict:
        """What of this entry changes results (its files' content is fingerprinted separately)."""
        return {"loader": self.loader, "options": self.options, "name": self.name}


@dataclass(frozen=True)
class Study:
    name: str
    variants: tuple[str, ...]
    datasets: tuple[DataSource, ...] = (DataSource("synthetic"),)
    description: str = ""
    preset: str = DEFAULT_PRESET
    epochs: int | None = None  # None: the preset's
    overrides: dict = field(default_factory=dict)  # model or training fields, for every variant
    variant_overrides: dict = field(default_factory=dict)  # {variant: {field: value}}
    search_space: tuple[SearchParam, ...] = field(default=(), metadata={"file": dict})  # {name: range}
    trials: int = 0  # tuning budget per variant (with a search space)
    sweep: dict = field(default_factory=dict)  # {field: [values]}: one-at-a-time sensitivity settings
    seeds: tuple[int, ...] = (1, 2, 3, 4, 5)
    tags: dict = field(default_factory=dict)  # free-form, copied onto the MLflow experiment
    plugins: tuple[str, ...] = ()  # model files (absolute paths) or dotted modules the variants come from
    # How the results are judged, not what they are (left out of the configuration: changing them
    # re-runs nothing). reference: the variant the others are compared with (None: ``carat`` when
    # the study has it, else the first variant); equivalence_margin: the ± band of "equivalent"
    # (None: harness.verdicts.DEFAULT_EQUIVALENCE_MARGIN, 0.01).
    reference: str | None = None
    equivalence_margin: float | None = field(default=None, metadata={"file": (int, float)})
    # Computed by the loader, never written in a study file (metadata file=None):
    plugin_digests: dict = field(default_factory=dict, metadata=COMPUTED)  # plugin -> hash of its source
    quick: bool = field(default=False, metadata=COMPUTED)  # a smoke test: results go to their own experiment
    source: str = field(default="<memory>", metadata=COMPUTED)  # the file it was read from
    # {variant: the study-wide overrides that are fields of it}, decided once per run by the plan
    # (``harness.run.overrides``); a variant not in it takes every study-wide override.
    override_targets: dict = field(default_factory=dict, metadata=COMPUTED)

    # -- what a run of this study consists of ------------------------------------------------
    @property
    def compared_with(self) -> str:
        """The variant the others are compared with: ``reference``, else harness.verdicts.default_reference."""
        from harness.verdicts import default_reference

        return self.reference or default_reference(self.variants)

    @property
    def margin(self) -> float:
        """The equivalence margin of the study's verdicts (its own, else the verdicts' default)."""
        from harness.verdicts import DEFAULT_EQUIVALENCE_MARGIN

        return DEFAULT_EQUIVALENCE_MARGIN if self.equivalence_margin is None else float(self.equivalence_margin)

    @property
    def experiment(self) -> str:
        """The MLflow experiment of this study's runs; smoke tests keep to their own."""
        return f"{self.name}{QUICK_SUFFIX}" if self.quick else self.name

    def dataset(self, name: str) -> DataSource:
        for source in self.datasets:
            if source.name == name:
                return source
        raise KeyError(f"study {self.name!r} has no data set {name!r}; it has {[d.name for d in self.datasets]}")

    def settings(self) -> dict[str, dict]:
        """Named hyper-parameter settings: the default plus one per swept value."""
        out = {DEFAULT_SETTING: {}}
        for name, values in self.sweep.items():
            for value in values:
                out[f"{name}={value}"] = {name: value}
        return out

    def overrides_for(self, variant: str) -> dict:
        """The overrides ``variant`` runs with: the study-wide ones that are fields of it, then its own."""
        targets = self.override_targets.get(variant)
        shared = {k: v for k, v in self.overrides.items() if targets is None or k in targets}
        return {**shared, **self.variant_overrides.get(variant, {})}

    def params_for(self, variant: str, setting: str) -> dict:
        """Fixed hyper-parameters of one (variant, setting): study, then variant, then sweep overrides."""
        params = {**self.overrides_for(variant), **self.settings()[setting]}
        if self.epochs is not None:
            params["epochs"] = self.epochs
        return params

    @property
    def tuned(self) -> bool:
        return bool(self.search_space) and self.trials > 0

    def fingerprint(self) -> str:
        """Hash of the study fields that change results, data sets aside (each data set's identity
        and content fingerprint join it per configuration, see ``config_hash``). Seeds, variants
        and the trial budget are left out: a re-run may extend them and reuse finished runs; so are
        ``reference`` and ``equivalence_margin``, which say how results are judged, not what they are."""
        keyed = {k: v for k, v in asdict(self).items() if k not in NOT_IN_CONFIGURATION}
        return _digest(keyed)

    def config_hash(self, dataset: str, data_fingerprint: str) -> str:
        """Identity of one configuration: this study's result-relevant fields, one data set's
        entry and the fingerprint of its loaded content. Finished runs count only under it."""
        return _digest([self.fingerprint(), self.dataset(dataset).identity(), data_fingerprint])

    def with_options(self, **values) -> Study:
        """This study with command-line options applied (see ``harness.options.RUN_OPTIONS``)."""
        from harness.options import apply_to_study

        return apply_to_study(self, **values)

    def as_quick(self) -> Study:
        """Smoke-test form: tiny data where the loader has sizes, 1 epoch, at most 2 seeds, 2 trials
        and 2 values per sweep, tracked in the experiment ``<name>.quick``."""
        from harness import data as datasets

        def tiny(source: DataSource) -> DataSource:
            if "size" in datasets.describe().get(source.loader, {}).get("options", ()):
                return replace(source, options={**source.options, "size": "tiny"})
            return source

        return replace(
            self,
            datasets=tuple(tiny(d) for d in self.datasets),
            epochs=1,
            seeds=self.seeds[:2],
            trials=min(self.trials, 2),
            sweep={k: list(v)[:2] for k, v in self.sweep.items()},
            quick=True,
        )

    def _narrowed_to(self, name: str) -> DataSource:
        """``--dataset NAME``: one of the study's data sets by name, or a registered loader instead."""
        from harness import data as datasets

        for source in self.datasets:
            if source.name == name:
                return source
        if name in datasets.names():
            return DataSource(name)
        raise StudyError(
            f"--dataset: {name!r} is neither a data set of study {self.name!r} "
            f"({', '.join(d.name for d in self.datasets)}) nor a loader ({', '.join(datasets.names())})"
        )


QUICK_SUFFIX = ".quick"
# Study fields that are no part of a configuration's identity (``Study.fingerprint``).
NOT_IN_CONFIGURATION = (
    *("name", "description", "variants", "seeds", "trials", "source", "datasets", "tags", "plugins"),
    *("reference", "equivalence_margin"),  # analysis: how results are judged
    "override_targets",  # derived from the overrides and the variants' fields
)


def _digest(value) -> str:
    return hashlib.sha1(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:8]


# -- loading and validation --------------------------------------------------------------------


def study_fields() -> list[str]:
    return [f.name for f in fields(Study)]


# Reading and checking study files (their own module; re-exported here, where callers look).
from harness.study_file import from_dict, load, names  # noqa: E402,F401
