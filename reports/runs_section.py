"""The parts of a study's section about its runs: warnings, flagged, failed and reported runs, variants."""

from __future__ import annotations

import pandas as pd

from harness import keys
from harness.studies import DEFAULT_SETTING
from reports import collect, tables
from reports.links import _with_links
from reports.tables import Cell, Table


def _flagged(runs: pd.DataFrame) -> list[str]:
    """One line per (variant, setting, reason) of the runs tagged degenerate, naming their seeds."""
    flagged = runs[tables.flagged_mask(runs)]
    lines = []
    for (variant, setting, reason), group in flagged.groupby(["variant", "setting", keys.DEGENERATE], sort=False):
        seeds = ", ".join(str(s) for s in sorted(int(x) for x in group["seed"]))
        where = "" if setting == DEFAULT_SETTING else f" ({setting})"
        lines.append(f"{variant}{where}, seed{'s' if len(group) > 1 else ''} {seeds}: {reason}")
    return lines


def _warnings(study: collect.StudyRuns) -> list[str]:
    notes = []
    if study.older_hashes:
        listed = ", ".join(f"{h} ({n} runs)" for h, n in study.older_hashes.items())
        notes.append(f"Runs of other (older) configurations of this study are not reported: {listed}.")
    repeats = study.current[(study.current[keys.PHASE] == keys.REPEAT) & (study.current["status"] == "FINISHED")]
    duplicated = len(repeats) - len(study.finished)
    if duplicated:
        notes.append(f"{duplicated} finished run(s) repeat a unit already run; the latest is used.")
    if "code_version" in study.finished and study.finished["code_version"].nunique() > 1:
        notes.append("The reported runs come from different code versions (see Code version in the configuration).")
    return notes


def _failed(study: collect.StudyRuns) -> pd.DataFrame:
    columns = ["dataset", "variant", "setting", "seed", keys.PHASE, keys.CONFIG_HASH, "run_id", keys.FAILURE_REASON]
    return study.failed[columns].reset_index(drop=True)


def _runs_table(finished: pd.DataFrame, several: bool, study: collect.StudyRuns, ui: str | None) -> pd.DataFrame:
    """The reported runs, each traceable: run id (a link with a UI), name, headline scores, and the
    reason it is flagged where the runner tagged it degenerate."""
    columns = ["dataset", "variant", "setting", "seed", "run_id", "run_name", keys.TEST_MICRO_F1, "test_macro_f1"]
    runs = finished[columns].reset_index(drop=True)
    flags = tables.flagged_mask(finished).to_numpy()
    if flags.any():
        runs["flagged"] = [reason if flag else "" for reason, flag in zip(finished[keys.DEGENERATE], flags)]
    if (runs["setting"] == DEFAULT_SETTING).all():
        runs = runs.drop(columns="setting")
    if not several:
        runs = runs.drop(columns="dataset")
    return _with_links(runs, study, ui)


def _variants_table(variants: list[str]) -> Table:
    """What each variant is, in the registry's one-line words, so the tables read without the code."""
    import models

    rows = []
    for name in variants:
        try:
            text = models.describe(name)
        except (KeyError, ValueError):
            text = "not registered in this code (a plugin model, or one renamed since)"
        rows.append([Cell(name), Cell(text)])
    return Table(["Variant", "What it is"], rows)


def _unit(variant: str, setting: str) -> str:
    return variant if setting == DEFAULT_SETTING else f"{variant} ({setting})"
