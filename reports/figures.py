"""The figures of one data set: training curves, sweeps, the t-SNE of the latents (tuning: tuning_section.py)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.studies import DEFAULT_SETTING
from reports import collect, plots
from reports.html import Figure, Part
from reports.results_section import REFERENCE_VARIANT


def _figures(client, runs: pd.DataFrame, folder: Path, out_dir: Path, part: Part) -> list[Path]:
    labels = collect.label_names(client, runs["run_id"].iloc[0]) or sorted(
        c.removeprefix("test_f1_") for c in runs.columns if c.startswith("test_f1_") and runs[c].notna().any()
    )
    default = runs[runs["setting"] == DEFAULT_SETTING]
    history = collect.histories(client, list(default["run_id"]))
    if not history.empty:
        history = history.merge(default[["run_id", "variant", "seed"]], on="run_id")
    candidates = [
        ("Test metrics per variant", plots.metric_bars(runs, folder / "metrics.png"), "Default setting."),
        ("Per-label F1", plots.label_heatmap(runs, labels, folder / "per_label_f1.png"), "Mean over seeds."),
        (
            "Training curves",
            plots.training_curves(history, folder / "training_curves.png"),
            "From each run's per-epoch history (history.csv).",
        ),
        (
            "Sensitivity",
            plots.sensitivity(runs, _defaults(runs), folder / "sensitivity.png"),
            "Star: the default setting's value and result.",
        ),
    ]
    candidates += [_tsne_figure(client, runs, folder, part)]
    paths = []
    for title, path, caption in candidates:
        if path is not None:
            part.figures.append(Figure(title, path.relative_to(out_dir).as_posix(), caption))
            paths.append(path)
    return paths


def _defaults(finished: pd.DataFrame) -> dict[str, float]:
    """Each swept parameter's value in the default setting (from the runs' params)."""
    default = finished[finished["setting"] == DEFAULT_SETTING]
    swept = {s.partition("=")[0] for s in finished["setting"] if s != DEFAULT_SETTING}
    out = {}
    for name in swept:
        values = pd.to_numeric(default.get(f"params.{name}", pd.Series(dtype=object)), errors="coerce").dropna()
        if len(values):
            out[name] = float(values.iloc[0])
    return out


def _tsne_figure(client, runs: pd.DataFrame, folder: Path, part: Part) -> tuple:
    """Every variant whose runs kept latents, side by side, at one seed: the lowest seed all of them
    finished (the same data split and initialisation stream), else each variant's lowest seed."""
    none = ("t-SNE", None, "")
    default = runs[runs["setting"] == DEFAULT_SETTING]
    if default.empty:
        return none
    by_variant = {v: g.sort_values("seed") for v, g in default.groupby("variant", sort=False)}
    with_latents = [
        v for v, g in by_variant.items() if collect.has_artifact(client, g["run_id"].iloc[0], "latents.npz")
    ]
    if not with_latents:
        if REFERENCE_VARIANT in by_variant:
            part.figure_notes.append(f"No latents.npz in the runs of {REFERENCE_VARIANT}: no t-SNE of the latents.")
        return none
    common = set.intersection(*(set(int(s) for s in by_variant[v]["seed"]) for v in with_latents))
    seed = min(common) if common else None
    panels, used = {}, []
    for variant in with_latents:
        group = by_variant[variant]
        run = group[group["seed"] == seed].iloc[0] if seed is not None else group.iloc[0]
        arrays = collect.latents(client, run["run_id"])
        if arrays is None:
            part.figure_notes.append(f"No latents.npz in run {run['run_id']} ({variant}, seed {run['seed']}).")
            continue
        panels[variant if seed is not None else f"{variant}, seed {run['seed']}"] = arrays
        used.append(f"{variant} {run['run_id']}")
    title = "t-SNE of the label-specific latents (test)" + (f", seed {seed}" if seed is not None else "")
    path = plots.latent_tsne(panels, title, folder / "latents_tsne.png")
    without = [v for v in by_variant if v not in with_latents]
    caption = (
        f"Seed {seed}, the lowest seed every variant with latents finished."
        if seed is not None
        else "These variants share no finished seed: each at its lowest seed."
    )
    caption += f" Same subset size, perplexity and random_state 0 in every panel. Runs: {'; '.join(used)}."
    if without:
        caption += f" No latents kept by: {', '.join(without)}."
    return ("t-SNE of the latents", path, caption)
