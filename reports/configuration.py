"""The configuration table: what each data set's reported runs were run with, read from their MLflow params."""

from __future__ import annotations

import json

import pandas as pd

from harness.studies import DEFAULT_SETTING
from reports.tables import Cell, Table

CONFIG_FIELDS = (  # (row title, where it is read: a runs-table column, or a function of one run)
    ("Preset", "params.preset"),
    ("Epochs", "params.epochs"),
    ("Batch size", "params.batch_size"),
    ("Learning rate", "params.lr"),
    ("Optimizer", "params.optimizer"),
    ("Threshold", "params.threshold"),
)


def _configuration_table(runs: pd.DataFrame, current: pd.DataFrame, config_hash: str) -> Table:
    """The configuration the data set's numbers come from, read from the runs' params and tags (the
    default setting's finished repeat runs; without any, every run of the configuration). A field
    every variant shares is one value; one that differs is given per variant."""
    source = runs[runs["setting"] == DEFAULT_SETTING] if len(runs) else current
    if source.empty:
        source = runs if len(runs) else current
    fields = [
        *((title, _column(key)) for title, key in CONFIG_FIELDS),
        ("Overrides applied (study file)", _column("params.overrides")),
        *(
            [("Contrastive queue size", _column("params.queue_size", missing="n/a (no queue)"))]
            if "params.queue_size" in source and source["params.queue_size"].notna().any()
            else []
        ),
        ("Data loader", _column("params.data.loader")),
        ("Data files", _data_path),
        ("Data options", _data_options),
        ("Samples train / valid / test", _split_sizes),
        ("Modalities (steps x features)", _modalities),
        ("Content fingerprint", _column("data_fingerprint")),
        ("config_hash", lambda run: config_hash),
        ("Code version", _column("code_version")),
    ]
    rows = [[Cell(title), Cell(_per_variant(source, read))] for title, read in fields]
    counts = current.groupby(["phase", "status"]).size()
    rows.append(
        [
            Cell("Runs of this configuration"),
            Cell("; ".join(f"{phase} {status}: {n}" for (phase, status), n in counts.items()) or "none"),
        ]
    )
    if len(runs):
        rows.append(
            [
                Cell("Reported"),
                Cell(
                    f"{len(runs)} finished repeat runs, seeds "
                    f"{' '.join(map(str, sorted(set(int(s) for s in runs['seed']))))}"
                ),
            ]
        )
    notes = [
        "Read from the reported runs' MLflow params, tags and dataset input"
        + (" (default setting)" if (runs["setting"] != DEFAULT_SETTING).any() else "")
        + "; a field that differs between variants is given per variant."
    ]
    swept = [s for s in dict.fromkeys(runs["setting"]) if s != DEFAULT_SETTING]
    if swept:
        notes.append(f"Swept settings change one field each: {', '.join(swept)}.")
    return Table(["Field", "Value"], rows, notes=notes)


def _per_variant(runs: pd.DataFrame, read) -> str:
    values = {}
    for variant, group in runs.groupby("variant", sort=False):
        values[variant] = ", ".join(dict.fromkeys(read(run) for _, run in group.iterrows()))
    distinct = list(dict.fromkeys(values.values()))
    if len(distinct) <= 1:
        return distinct[0] if distinct else "unknown"
    return "; ".join(f"{value} ({', '.join(v for v, x in values.items() if x == value)})" for value in distinct)


def _column(key: str, missing: str = "unknown"):
    def read(run) -> str:
        value = run.get(key)
        return missing if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)

    return read


def _data_path(run) -> str:
    path = run.get("params.data.data_path")
    if isinstance(path, str) and path not in ("None", ""):
        return path
    return "none (built in or the loader's default)"


def _data_options(run) -> str:
    options = {
        str(k).removeprefix("params.data.options."): v
        for k, v in run.items()
        if str(k).startswith("params.data.options.") and isinstance(v, str)
    }
    return ", ".join(f"{k}={v}" for k, v in sorted(options.items())) or "none"


def _profile(run) -> dict:
    try:
        return json.loads(run.get("input_profile") or "{}")
    except (TypeError, ValueError):
        return {}


def _split_sizes(run) -> str:
    profile = _profile(run)
    sizes = [profile.get(f"n_{split}") for split in ("train", "valid", "test")]
    return " / ".join(str(n) for n in sizes) if all(n is not None for n in sizes) else "unknown"


def _modalities(run) -> str:
    shapes = _profile(run).get("modalities") or {}
    text = ", ".join(f"{m} {t}x{d}" for m, (t, d) in shapes.items())
    labels = _profile(run).get("labels")
    return (text or "unknown") + (f"; {labels} labels" if labels is not None else "")
