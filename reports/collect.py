"""Read a study's runs back from MLflow into pandas (the only source of every reported number).

One row per MLflow run: its id, name, status and start time, the tags the runner sets,
every metric's latest value (``test_micro_f1`` ...) and every parameter as ``params.NAME``.
Artifacts (per-epoch history, label order, latents) are fetched only where a plot needs them.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from harness.studies import DEFAULT_SETTING

TAGS = ("study", "variant", "dataset", "seed", "phase", "setting", "optuna_trial", "optuna_study", "config_hash",
        "failure_reason")  # fmt: skip
PAGE = 1000
QUIET_DOWNLOADS = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


@dataclass
class StudyRuns:
    """Every run of one study's experiment, and which of them the report is about."""

    name: str
    runs: pd.DataFrame  # every run, all configurations and phases
    config_hash: str | None  # the most recently started configuration: the one reported
    expected_variants: list[str] = field(default_factory=list)
    expected_settings: list[str] = field(default_factory=list)
    expected_seeds: list[int] = field(default_factory=list)
    seeds_source: str = ""  # where the expected seeds come from (study file or runs seen)
    exists: bool = True  # False: no experiment of this name in the store

    @property
    def current(self) -> pd.DataFrame:
        return self.runs[self.runs["config_hash"] == self.config_hash]

    @property
    def finished(self) -> pd.DataFrame:
        """FINISHED repeat runs of the reported configuration, one per (variant, setting, seed):
        should a unit have been run twice, the later run counts."""
        done = self.current[(self.current["phase"] == "repeat") & (self.current["status"] == "FINISHED")]
        done = done.sort_values("start_time").drop_duplicates(["variant", "setting", "seed"], keep="last")
        order = {v: i for i, v in enumerate(self.expected_variants)}
        return done.assign(_v=done["variant"].map(order), _s=done["setting"].map(setting_sort_key)).sort_values(
            ["_v", "_s", "seed"]
        ).drop(columns=["_v", "_s"])

    @property
    def failed(self) -> pd.DataFrame:
        return self.runs[self.runs["status"] == "FAILED"].sort_values("start_time")

    @property
    def older_hashes(self) -> dict[str, int]:
        """Runs of earlier configurations of this study (not reported), by config hash."""
        other = self.runs[self.runs["config_hash"] != self.config_hash]
        return other.groupby("config_hash", dropna=False).size().to_dict()

    @property
    def tuning(self) -> pd.DataFrame:
        return self.current[self.current["phase"] == "tune"]

    def missing_seeds(self) -> dict[tuple[str, str], list[int]]:
        """Expected seeds with no finished run, per (variant, setting) that lacks any."""
        done = self.finished.groupby(["variant", "setting"])["seed"].apply(set).to_dict()
        missing = {}
        for variant in self.expected_variants:
            for setting in self.expected_settings:
                lacking = [s for s in self.expected_seeds if s not in done.get((variant, setting), set())]
                if lacking:
                    missing[(variant, setting)] = lacking
        return missing


def experiment_names(client: MlflowClient) -> list[str]:
    """Every live experiment in the store, except an empty MLflow 'Default'."""
    names, token = [], None
    while True:
        page = client.search_experiments(max_results=PAGE, page_token=token)
        for experiment in page:
            if experiment.name == "Default" and not _search(client, experiment.experiment_id, max_results=1):
                continue
            names.append(experiment.name)
        token = page.token
        if not token:
            return sorted(names)


def load_study(client: MlflowClient, name: str) -> StudyRuns:
    """The runs of the experiment ``name`` (an empty table when there is no such experiment)."""
    experiment = client.get_experiment_by_name(name)
    runs = _runs_table(_search(client, experiment.experiment_id)) if experiment else _runs_table([])
    config_hash = runs.sort_values("start_time")["config_hash"].iloc[-1] if len(runs) else None
    study = StudyRuns(name, runs, config_hash, exists=experiment is not None)
    _set_expectations(study)
    return study


def _search(client: MlflowClient, experiment_id: str, max_results: int | None = None) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], max_results=max_results or PAGE, page_token=token)
        runs.extend(page)
        token = page.token
        if not token or max_results:
            return runs


def _runs_table(runs: list) -> pd.DataFrame:
    rows = []
    for run in runs:
        tags = run.data.tags
        row = {
            "run_id": run.info.run_id,
            "run_name": run.info.run_name,
            "status": run.info.status,
            "start_time": run.info.start_time,
            **{tag: tags.get(tag) for tag in TAGS},
            **run.data.metrics,
            **{f"params.{k}": v for k, v in run.data.params.items()},
        }
        rows.append(row)
    table = pd.DataFrame(rows, columns=None if rows else ["run_id", "run_name", "status", "start_time", *TAGS])
    table["seed"] = pd.to_numeric(table["seed"], errors="coerce").astype("Int64")
    table["setting"] = table["setting"].fillna(DEFAULT_SETTING)
    return table


def _set_expectations(study: StudyRuns) -> None:
    """Expected variants, settings and seeds: the study file's (when one has this name) together
    with whatever the reported configuration's repeat runs show."""
    repeats = study.current[study.current["phase"] == "repeat"].sort_values("start_time")
    seen_variants = list(dict.fromkeys(repeats["variant"].dropna()))
    seen_settings = set(repeats["setting"].dropna()) | {DEFAULT_SETTING}
    seen_seeds = sorted(int(s) for s in repeats["seed"].dropna().unique())
    spec = _study_file(study.name)
    if spec is not None:
        study.expected_variants = list(dict.fromkeys([*spec.variants, *seen_variants]))
        study.expected_settings = sorted(seen_settings | set(spec.settings()), key=setting_sort_key)
        study.expected_seeds = list(spec.seeds)
        study.seeds_source = f"study file {Path(spec.source).name}"
    else:
        study.expected_variants = seen_variants
        study.expected_settings = sorted(seen_settings, key=setting_sort_key)
        study.expected_seeds = seen_seeds
        study.seeds_source = "no study file of this name: the seeds seen in its runs"


def _study_file(name: str):
    from harness import studies

    if name not in studies.names():
        return None
    try:
        return studies.load(name)
    except studies.StudyError:  # the file changed since (e.g. a variant was renamed): use the runs
        return None


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
