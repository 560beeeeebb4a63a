"""A study's runs as the report sees them, read from MLflow through ``harness.results``.

Artifacts (per-epoch history, label order, latents) are fetched only where a plot needs them.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from mlflow.tracking import MlflowClient

from harness import keys, results
from harness.results import experiment_names  # noqa: F401  (re-exported for reports.generate)
from harness.studies import DEFAULT_SETTING, QUICK_SUFFIX

QUIET_DOWNLOADS = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


@dataclass
class StudyRuns:
    """Every run of one study's experiment, and which of them the report is about: per data set,
    the most recently started configuration (``config_hash``)."""

    name: str
    runs: pd.DataFrame  # every repeat and tuning run, all configurations (summary runs left out)
    config_hashes: dict = field(default_factory=dict)  # data set -> the configuration reported
    expected_variants: list[str] = field(default_factory=list)
    expected_settings: list[str] = field(default_factory=list)
    expected_seeds: list[int] = field(default_factory=list)
    seeds_source: str = ""  # where the expected seeds come from
    exists: bool = True  # False: no experiment of this name in the store
    quick: bool = False  # a smoke test's experiment
    tune_only: bool = False  # the last command on it was `invoke tune` (experiment tag planned_phases)
    description: str = ""
    experiment_id: str | None = None  # for links to the MLflow UI
    # How its verdicts are judged, from the experiment's tags (the last command's study fields):
    reference: str | None = None  # None: harness.verdicts.default_reference of the variants reported
    equivalence_margin: float | None = None  # None: harness.verdicts.DEFAULT_EQUIVALENCE_MARGIN
    sequential_looks: tuple[int, ...] = ()  # --until-settled: the seeds at each look
    sequential_max_seeds: int | None = None

    @property
    def current(self) -> pd.DataFrame:
        return self.runs[self.runs[keys.CONFIG_HASH].isin(list(self.config_hashes.values()))]

    @property
    def finished(self) -> pd.DataFrame:
        """FINISHED repeat runs of the reported configurations, one per unit, in study order."""
        done = results.finished(self.runs, self.config_hashes.values())
        order = {v: i for i, v in enumerate(self.expected_variants)}
        datasets = {d: i for i, d in enumerate(self.config_hashes)}
        return (
            done.assign(
                _d=done["dataset"].map(datasets),
                _v=done["variant"].map(order),
                _s=done["setting"].map(setting_sort_key),
            )
            .sort_values(["_d", "_v", "_s", "seed"])
            .drop(columns=["_d", "_v", "_s"])
        )

    @property
    def failed(self) -> pd.DataFrame:
        return self.runs[self.runs["status"] == "FAILED"].sort_values("start_time")

    @property
    def older_hashes(self) -> dict[str, int]:
        """Runs of other configurations of this study (not reported), by config hash."""
        other = self.runs[~self.runs[keys.CONFIG_HASH].isin(list(self.config_hashes.values()))]
        return other.groupby(keys.CONFIG_HASH, dropna=False).size().to_dict()

    @property
    def tuning(self) -> pd.DataFrame:
        return self.current[self.current[keys.PHASE] == keys.TUNE]

    def missing_seeds(self) -> dict[tuple[str, str, str], list[int]]:
        """Expected seeds with no finished run, per (data set, variant, setting) that lacks any."""
        done = self.finished.groupby(["dataset", "variant", "setting"])["seed"].apply(set).to_dict()
        missing = {}
        for dataset in self.config_hashes:
            for variant in self.expected_variants:
                for setting in self.expected_settings:
                    lacking = [s for s in self.expected_seeds if s not in done.get((dataset, variant, setting), set())]
                    if lacking:
                        missing[(dataset, variant, setting)] = lacking
        return missing


def load_study(client: MlflowClient, name: str) -> StudyRuns:
    """The runs of the experiment ``name`` (an empty table when there is no such experiment)."""
    experiment = client.get_experiment_by_name(name)
    table = results.runs(client, name)
    table = table[table[keys.PHASE] != keys.SUMMARY]
    latest = table.sort_values("start_time").drop_duplicates("dataset", keep="last")
    config_hashes = dict(zip(latest["dataset"], latest[keys.CONFIG_HASH])) if len(table) else {}
    tags = experiment.tags if experiment is not None else {}
    study = StudyRuns(
        name,
        table,
        config_hashes,
        exists=experiment is not None,
        quick=tags.get("quick") == "true" or name.endswith(QUICK_SUFFIX),
        tune_only=tags.get(keys.PLANNED_PHASES) == keys.TUNE,
        description=tags.get("mlflow.note.content", ""),
        experiment_id=experiment.experiment_id if experiment is not None else None,
        **_judged_by(tags),
    )
    _set_expectations(study, tags)
    return study


def _judged_by(tags: dict) -> dict:
    """The reference, margin and sequential looks recorded on the experiment (absent: the defaults)."""
    margin = tags.get(keys.EQUIVALENCE_MARGIN)
    try:
        margin = float(margin) if margin else None
    except ValueError:  # a hand-edited tag: the default, rather than no report
        margin = None
    looks = tuple(int(n) for n in tags.get(keys.SEQUENTIAL_LOOKS, "").split() if n.isdigit())
    most = tags.get(keys.SEQUENTIAL_MAX_SEEDS, "")
    return {
        "reference": tags.get(keys.REFERENCE) or None,
        "equivalence_margin": margin,
        "sequential_looks": looks,
        "sequential_max_seeds": int(most) if most.isdigit() else None,
    }


def _set_expectations(study: StudyRuns, tags: dict) -> None:
    """Expected variants, settings and seeds: those the last command on the experiment planned
    (experiment tags), else the study file's, together with whatever the runs show."""
    repeats = study.current[study.current[keys.PHASE] == keys.REPEAT].sort_values("start_time")
    seen_variants = list(dict.fromkeys(repeats["variant"].dropna()))
    seen_settings = set(repeats["setting"].dropna()) | {DEFAULT_SETTING}
    seen_seeds = sorted(int(s) for s in repeats["seed"].dropna().unique())
    spec = _study_file(tags.get("study") or study.name.removesuffix(QUICK_SUFFIX))
    planned_variants = [v for v in tags.get("planned_variants", "").split() if v]
    planned_seeds = [int(s) for s in tags.get("planned_seeds", "").split() if s.isdigit()]
    file_variants = list(spec.variants) if spec is not None else []
    study.expected_variants = list(dict.fromkeys([*(planned_variants or file_variants), *seen_variants]))
    settings = set(spec.settings()) if spec is not None else set()
    study.expected_settings = sorted(seen_settings | settings, key=setting_sort_key)
    if planned_seeds:
        study.expected_seeds, study.seeds_source = planned_seeds, "the seeds of the last command on this study"
    elif spec is not None:
        study.expected_seeds, study.seeds_source = list(spec.seeds), f"study file {Path(spec.source).name}"
    else:
        study.expected_seeds, study.seeds_source = seen_seeds, "the seeds seen in its runs (no study file)"


def _study_file(name: str):
    """The shipped study file's variants, seeds and sweeps, read as plain YAML: a report runs no
    plugin code (loading the study would import its plugins). A file whose variants are not all
    registered (renamed since, or plugin models) or that does not parse is not used: the runs are."""
    import models
    from harness import studies

    if name not in studies.names():
        return None
    path = studies.STUDIES_DIR / f"{name}.yaml"
    try:
        raw = yaml.safe_load(path.read_text())
        study = studies.Study(
            name=name,
            variants=tuple(raw["variants"]),
            seeds=tuple(int(s) for s in raw.get("seeds", studies.Study.seeds)),
            sweep={k: list(v) for k, v in (raw.get("sweep") or {}).items()},
            source=str(path),
        )
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError, AttributeError):
        return None
    return study if all(v in models.list() for v in study.variants) else None


def setting_sort_key(setting: str) -> tuple:
    """'default' first, then by swept parameter and numeric value."""
    if setting == DEFAULT_SETTING:
        return (0, "", 0.0)
    name, _, value = setting.partition("=")
    try:
        return (1, name, float(value))
    except ValueError:
        return (1, name, float("inf"))


# -- artifacts --------------------------------------------------------------------------------


def histories(client: MlflowClient, run_ids: list[str]) -> pd.DataFrame:
    """Per-epoch rows (run_id, epoch, train_loss, val_micro_f1) from each run's history.csv.

    The artifact rather than the metric history: the run's final ``val_micro_f1`` is logged again
    at the kept epoch's step, so the metric history holds two values for that epoch."""
    frames = []
    with tempfile.TemporaryDirectory() as tmp:
        for run_id in run_ids:
            path = _download(client, run_id, "history.csv", tmp)
            if path is not None:  # an older run without the artifact has no curve
                frames.append(pd.read_csv(path).assign(run_id=run_id))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["run_id", "epoch"])


def label_names(client: MlflowClient, run_id: str) -> list[str] | None:
    """The data set's label order, from a run's predictions.npz."""
    arrays = _npz(client, run_id, "predictions.npz")
    return None if arrays is None else [str(n) for n in arrays["label_names"]]


def latents(client: MlflowClient, run_id: str) -> dict | None:
    """A run's latents.npz as a dict of arrays (z (n, M, C, dz), labels (n, C), label_names)."""
    return _npz(client, run_id, "latents.npz")


def has_artifact(client: MlflowClient, run_id: str, name: str) -> bool:
    """Whether a run holds the top-level artifact ``name`` (a listing: nothing is downloaded)."""
    try:
        return any(item.path == name for item in client.list_artifacts(run_id))
    except Exception:  # MLflow raises store-specific errors for an unreadable artifact store
        return False


def _npz(client: MlflowClient, run_id: str, name: str) -> dict | None:
    with tempfile.TemporaryDirectory() as tmp:
        path = _download(client, run_id, name, tmp)
        if path is None:
            return None
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}


def _download(client: MlflowClient, run_id: str, name: str, folder: str) -> str | None:
    """Local path of one artifact, None if the run lacks it (without a progress bar per file)."""
    previous = os.environ.get(QUIET_DOWNLOADS)
    os.environ[QUIET_DOWNLOADS] = "false"
    try:
        return client.download_artifacts(run_id, name, folder)
    except Exception:  # MLflow raises store-specific errors for a missing artifact
        return None
    finally:
        if previous is None:
            os.environ.pop(QUIET_DOWNLOADS)
        else:
            os.environ[QUIET_DOWNLOADS] = previous
