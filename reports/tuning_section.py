"""The tuning section of a study's report: what its Optuna search found, laid out for the page.

The pieces (summaries, tables, Optuna's own figures) are ``reports.tuning``'s; this module finds
the study's tuning studies from its tuning runs in MLflow (tag ``optuna_study``), writes the tables
as CSV beside the figures and says why anything is absent.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.storage import DEFAULT_STORAGE, redact
from reports import collect, tuning
from reports.html import Figure, TuningPart, runs_table

FIGURE_TITLES = {"history": "optimisation history", "importances": "parameter importances (fANOVA)"}


def _tuning(study: collect.StudyRuns, storage: str | None, folder: Path, out_dir: Path) -> tuple:
    """(TuningPart, paths written) for the study's current configuration; (None, []) when it was
    not tuned."""
    names = tuning.names_from_runs(study.tuning)
    if not names:
        return None, []
    url = storage or DEFAULT_STORAGE
    part = TuningPart()
    if "://" not in url and not Path(url.removeprefix("journal:")).exists():
        part.notes.append(f"Tuning section skipped: no Optuna storage at {url} (pass --storage).")
        return part, []
    folder.mkdir(parents=True, exist_ok=True)
    built = tuning.build_section(url, names, folder)
    part.notes += [note.replace(url, redact(url)) for note in built.notes]
    several = len({dataset for _variant, dataset in names}) > 1
    for key, summary in built.summaries.items():
        part.best[_label(key, several)] = {
            "best_value": summary.best_value,
            "best_params": summary.best_params,
            "complete": summary.n_complete,
            "pruned": summary.n_pruned,
        }
    best, trials = _shown(built.best, several), _shown(built.trials, several)
    part.best_html, part.trials_html, part.n_trials = runs_table(best), runs_table(trials), len(trials)
    paths = []
    for stem, table in (("tuning_best", built.best), ("tuning_trials", built.trials)):
        path = folder / f"{stem}.csv"
        table.to_csv(path, index=False)
        paths.append(path)
    part.files = [p.relative_to(out_dir).as_posix() for p in paths]
    for key, drawn in built.figures.items():
        label = _label(key, several)
        for kind, what in drawn.items():
            if isinstance(what, Path):
                title = f"Tuning {label}: {FIGURE_TITLES[kind]}"
                caption = f"Optuna study {names[key]} (optuna.visualization.matplotlib)."
                part.figures.append(Figure(title, what.relative_to(out_dir).as_posix(), caption))
                paths.append(what)
            else:
                part.notes.append(f"Tuning {label}: no {FIGURE_TITLES[kind]} plot ({what}).")
    return part, paths


def _label(key: tuple[str, str], several: bool) -> str:
    variant, dataset = key
    return f"{variant} on {dataset}" if several else variant


def _shown(table: pd.DataFrame, several: bool) -> pd.DataFrame:
    """A table as the page shows it: parameters to 4 significant digits (a learning rate of 3e-4
    is not 0.0003 to 4 places), the data set column only where there are several."""
    shown = table.drop(columns=[] if several else ["dataset"], errors="ignore").copy()
    counts, scores = ("number", "best_trial", "complete", "pruned"), ("value", "best_val_micro_f1")
    for column in shown.columns:
        if column not in (*counts, *scores) and pd.api.types.is_float_dtype(shown[column]):
            shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else f"{v:.4g}")
    for column in counts:
        if column in shown:
            shown[column] = shown[column].astype("Int64")
    return shown
