"""What a run records about itself: its name, tags, parameters and resolved configuration."""

from __future__ import annotations

import functools
from dataclasses import asdict
from pathlib import Path

from harness import keys
from harness.config import TrainConfig
from harness.devices import device_name
from harness.run.overrides import applied_text
from harness.run.plan import Plan, Unit
from harness.storage import redact
from harness.studies import Study


def run_name(unit: Unit, trial_number: int, several_datasets: bool = False) -> str:
    """``carat / default / s3`` (``carat / emotions / default / s3`` with several data sets); a tuning
    trial is ``carat / tune 7``."""
    parts = [unit.variant, *([unit.dataset] if several_datasets else [])]
    if unit.phase == keys.TUNE:
        return " / ".join([*parts, f"tune {trial_number}"])
    return " / ".join([*parts, unit.setting, f"s{unit.seed}"])


def run_tags(plan: Plan, unit: Unit, trial_number: int, queue_name: str, device: str = "cpu") -> dict:
    """The tags a training run is created with: ``keys.RUN_TAGS``, each given once here."""
    values = {
        keys.DEVICE: device,
        keys.GPU_NAME: device_name(device),
        "study": plan.study.name,
        "variant": unit.variant,
        "dataset": unit.dataset,
        "seed": unit.seed,
        keys.PHASE: unit.phase,
        "setting": unit.setting,
        keys.OPTUNA_TRIAL: trial_number,
        keys.OPTUNA_STUDY: queue_name,
        keys.CONFIG_HASH: unit.config_hash,
        "data_fingerprint": plan.data_fingerprints[unit.dataset],
        "code_version": code_version(),
        keys.STORAGE: redact(plan.options.storage or "runs/optuna.journal"),
    }
    return {tag: values[tag] for tag in keys.RUN_TAGS}  # a tag added to RUN_TAGS and not here fails at once


def run_params(study: Study, unit: Unit, train_cfg: TrainConfig, model) -> dict:
    """A run's MLflow parameters: its unit, preset, data entry, training and model settings."""
    return {
        "variant": unit.variant,
        "dataset": unit.dataset,
        "setting": unit.setting,
        "seed": unit.seed,
        "preset": study.preset,
        "overrides": applied_text(study, unit.variant),  # what of the study file reached this variant
        "data": asdict(study.dataset(unit.dataset)),
        **train_cfg.to_dict(),
        **model_params(model),
    }


def model_params(model) -> dict:
    config = getattr(model, "config", None)
    return asdict(config) if config is not None else {}


def data_profile(data) -> dict:
    return {
        "modalities": {m: list(td) for m, td in data.spec.modalities.items()},
        "labels": len(data.label_names),
        **{f"n_{split}": s.n for split, s in data.splits.items()},
    }


def resolved_config(plan: Plan, unit: Unit, train_cfg: TrainConfig, model, trial_number: int) -> dict:
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
        "model": {"class": type(model).__name__, **model_params(model)},
    }


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """The git commit of the harness (``-dirty`` with uncommitted changes), or ``unknown``."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
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
