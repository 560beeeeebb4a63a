"""Figures of a study (PNG, seaborn styling, Agg backend: no display needed).

Every function takes plain tables/arrays, writes one PNG and returns its path, or returns
None when there is nothing to draw (the caller then says why in the report).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from harness.studies import DEFAULT_SETTING  # noqa: E402

DPI = 120
TSNE_POINTS = 1500  # t-SNE is quadratic-ish: a random subset keeps the report quick and the picture legible
BAR_METRICS = (("micro_f1", "micro-F1"), ("macro_f1", "macro-F1"), ("acc", "Acc"))


@contextlib.contextmanager
def _figure(path: Path, *args, **kwargs):
    """A styled figure, saved to ``path`` and closed (scoped style: no global rc changes)."""
    style = {**sns.axes_style("whitegrid"), **sns.plotting_context("notebook")}
    with matplotlib.rc_context(style):
        fig, axes = plt.subplots(*args, **kwargs)
        try:
            yield fig, axes
            fig.tight_layout()
            fig.savefig(path, dpi=DPI)
        finally:
            plt.close(fig)


def metric_bars(finished: pd.DataFrame, path: Path) -> Path | None:
    """Mean ± std (and each seed as a dot) of micro-F1, macro-F1 and Acc per variant."""
    runs = finished[finished["setting"] == DEFAULT_SETTING]
    if runs.empty:
        return None
    order = list(dict.fromkeys(runs["variant"]))
    height = max(2.8, 1.4 + 0.45 * len(order))
    with _figure(path, 1, len(BAR_METRICS), figsize=(4.2 * len(BAR_METRICS), height), sharey=True) as (fig, axes):
        for ax, (key, title) in zip(axes, BAR_METRICS):
            values = runs[["variant", f"test_{key}"]].rename(columns={f"test_{key}": title})
            stats = values.groupby("variant", sort=False)[title].agg(["mean", "std"]).reindex(order)
            ax.barh(
                order,
                stats["mean"],
                xerr=stats["std"].fillna(0),
                color=sns.color_palette("deep")[0],
                alpha=0.75,
                capsize=3,
            )
            sns.stripplot(data=values, x=title, y="variant", order=order, ax=ax, color="black", size=3.5, jitter=0.15)
            ax.set_xlim(0.0, min(1.0, np.nanmax(values[title]) + 0.08))  # from 0: bar lengths stay honest
            ax.set_title(title)
            ax.set_xlabel("test score")
            ax.set_ylabel("")
        fig.suptitle(f"Mean ± std over seeds (dots: single seeds), {runs['seed'].nunique()} seed(s)", fontsize=11)
    return path


def label_heatmap(finished: pd.DataFrame, labels: list[str], path: Path) -> Path | None:
    """Test F1 per label (mean over seeds): variants x labels."""
    runs = finished[finished["setting"] == DEFAULT_SETTING]
    columns = [f"test_f1_{label}" for label in labels if f"test_f1_{label}" in runs]
    if runs.empty or not columns:
        return None
    grid = runs.groupby("variant", sort=False)[columns].mean()
    grid.columns = [c.removeprefix("test_f1_") for c in columns]
    size = (2.5 + 1.1 * len(grid.columns), 2.2 + 0.5 * len(grid))
    with _figure(path, figsize=size) as (fig, ax):
        sns.heatmap(grid, annot=True, fmt=".2f", vmin=0, vmax=1, cmap="viridis", ax=ax, cbar_kws={"label": "F1"})
        ax.set_xlabel("label")
        ax.set_ylabel("")
        ax.tick_params(axis="x", rotation=30)
        ax.tick_params(axis="y", rotation=0)
        ax.set_title("Per-label test F1 (mean over seeds)")
    return path


def training_curves(history: pd.DataFrame, path: Path) -> Path | None:
    """Validation micro-F1 per epoch: mean and ± std band over seeds, one line per variant.

    ``history`` has columns variant, seed, epoch, val_micro_f1."""
    if history.empty or history["val_micro_f1"].isna().all():
        return None
    with _figure(path, figsize=(7.5, 4.5)) as (fig, ax):
        n = history["variant"].nunique()  # tab10 repeats its colours beyond 10 lines; husl does not
        palette = sns.color_palette("tab10" if n <= 10 else "husl", n_colors=n)
        for colour, (variant, rows) in zip(palette, history.groupby("variant", sort=False)):
            curve = rows.groupby("epoch")["val_micro_f1"].agg(["mean", "std", "count"])
            label = f"{variant} ({rows['seed'].nunique()} seeds)"
            ax.plot(curve.index, curve["mean"], color=colour, marker="o" if len(curve) < 3 else None, label=label)
            band = curve["std"].fillna(0)
            ax.fill_between(curve.index, curve["mean"] - band, curve["mean"] + band, color=colour, alpha=0.18)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        first, last = history["epoch"].min(), history["epoch"].max()
        if first == last:  # one epoch: matplotlib would spread fractional ticks around it
            ax.set_xlim(first - 1, last + 1)
        ax.set_ylabel("validation micro-F1")
        ax.set_title("Training curves (mean ± std over seeds)")
        ax.legend(fontsize=8, loc="lower right")
    return path


def sensitivity(finished: pd.DataFrame, defaults: dict, path: Path, metric: str = "micro_f1") -> Path | None:
    """Test ``metric`` against each swept parameter (one panel each), the default as a star.

    ``defaults`` maps a swept parameter to its value in the default setting. Values are
    placed at evenly spaced, ordered positions: sweeps such as 0, 0.001 ... 1 fit no one scale."""
    swept = finished[finished["setting"] != DEFAULT_SETTING]
    if swept.empty:
        return None
    swept = swept.assign(
        param=swept["setting"].str.partition("=")[0], value=pd.to_numeric(swept["setting"].str.partition("=")[2])
    )
    default_runs = finished[finished["setting"] == DEFAULT_SETTING][f"test_{metric}"]
    params = list(dict.fromkeys(swept["param"]))
    cols = min(4, len(params))
    rows = -(-len(params) // cols)
    size = (max(7.0, 4 * cols), 3.6 * rows)
    with _figure(path, rows, cols, figsize=size, squeeze=False, sharey=True) as (fig, axes):
        for ax, param in zip(axes.flat, params):
            stats = swept[swept["param"] == param].groupby("value")[f"test_{metric}"].agg(["mean", "std"])
            positions = sorted(set(stats.index) | ({defaults[param]} if param in defaults else set()))
            x = {v: i for i, v in enumerate(positions)}
            ax.errorbar(
                [x[v] for v in stats.index],
                stats["mean"],
                yerr=stats["std"].fillna(0),
                marker="o",
                capsize=3,
                label="swept",
            )
            if param in defaults and len(default_runs):
                spread = [np.nan_to_num(default_runs.std())]
                ax.errorbar(
                    [x[defaults[param]]],
                    [default_runs.mean()],
                    yerr=spread,
                    marker="*",
                    markersize=14,
                    color="crimson",
                    linestyle="none",
                    capsize=3,
                    label="default",
                )
            ax.set_xticks(range(len(positions)), [f"{v:g}" for v in positions])
            ax.set_xlabel(param)
            ax.set_title(param)
        for ax in axes.flat[len(params) :]:
            ax.set_visible(False)
        for ax in axes[:, 0]:
            ax.set_ylabel(f"test {metric.replace('_f1', '-F1').replace('_', ' ')}")
        axes.flat[0].legend(fontsize=8)
        fig.suptitle("One parameter changed at a time (mean ± std over seeds)", fontsize=11)
    return path


TSNE_COLUMNS = 4  # variants per row of the t-SNE grid


def latent_tsne(panels: dict[str, dict], title: str, path: Path, seed: int = 0) -> Path | None:
    """t-SNE of label-specific latents (n, M, C, dz), one column per variant (``panels``: name ->
    latents, drawn in that order; a grid of at most ``TSNE_COLUMNS`` per row): top row coloured by
    modality, bottom row by the polarity of the vector's label. Every panel is computed the same way
    (same subset size, perplexity and random state), so the columns can be compared by eye; the
    axes of separate t-SNE runs are not comparable, only the clustering is."""
    embedded = {name: _tsne_frame(latents, seed) for name, latents in panels.items()}
    embedded = {name: frame for name, frame in embedded.items() if frame is not None}
    if not embedded:
        return None
    cols = min(TSNE_COLUMNS, len(embedded))
    blocks = -(-len(embedded) // cols)
    with _figure(path, 2 * blocks, cols, figsize=(4.2 * cols, 3.9 * 2 * blocks), squeeze=False) as (fig, axes):
        modalities = list(dict.fromkeys(m for frame, _ in embedded.values() for m in frame["modality"]))
        colours = dict(zip(modalities, sns.color_palette("deep", n_colors=max(3, len(modalities)))))
        for i, (name, (frame, caption)) in enumerate(embedded.items()):
            top, bottom = axes[2 * (i // cols), i % cols], axes[2 * (i // cols) + 1, i % cols]
            sns.scatterplot(
                data=frame,
                x="x",
                y="y",
                hue="modality",
                hue_order=modalities,
                palette=colours,
                s=10,
                alpha=0.7,
                linewidth=0,
                ax=top,
            )
            sns.scatterplot(
                data=frame,
                x="x",
                y="y",
                hue="polarity",
                hue_order=["positive", "negative"],
                palette={"positive": "crimson", "negative": "steelblue"},
                s=10,
                alpha=0.6,
                linewidth=0,
                ax=bottom,
            )
            top.set_title(f"{name}\n{caption}", fontsize=10)
            top.text(0.02, 0.98, "by modality", transform=top.transAxes, va="top", fontsize=8, color="#555")
            bottom.text(0.02, 0.98, "by label polarity", transform=bottom.transAxes, va="top", fontsize=8, color="#555")
            last_in_row = i % cols == cols - 1 or i == len(embedded) - 1
            for ax in (top, bottom):
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_xlabel("")
                ax.set_ylabel("")
                if last_in_row:  # one legend per row: the colours mean the same in every panel
                    ax.legend(markerscale=2, fontsize=8, loc="lower right")
                elif ax.get_legend() is not None:
                    ax.get_legend().remove()
        for j in range(len(embedded), blocks * cols):
            axes[2 * (j // cols), j % cols].set_visible(False)
            axes[2 * (j // cols) + 1, j % cols].set_visible(False)
        fig.suptitle(title, fontsize=11)
    return path


def _tsne_frame(latents: dict, seed: int) -> tuple[pd.DataFrame, str] | None:
    """2-D t-SNE points of one run's latents (a random subset of at most ``TSNE_POINTS``) and a caption."""
    z = np.asarray(latents["z"], dtype=np.float32)
    n, n_mod, n_labels, dz = z.shape
    names = (
        [str(m) for m in latents["modality_names"]]
        if "modality_names" in latents
        else [f"modality {m + 1}" for m in range(n_mod)]
    )
    modality = np.broadcast_to(np.arange(n_mod)[None, :, None], z.shape[:3]).reshape(-1)
    positive = np.broadcast_to(np.asarray(latents["labels"], bool)[:, None, :], z.shape[:3]).reshape(-1)
    points = z.reshape(-1, dz)
    if len(points) < 5:
        return None
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(points), size=min(TSNE_POINTS, len(points)), replace=False))
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    perplexity = float(min(30.0, (len(keep) - 1) / 3))
    # One thread: Barnes-Hut's OpenMP threads spin-wait, and on busy shared cores that made a
    # 120-point t-SNE take 20 s instead of 0.2 s.
    with threadpool_limits(limits=1):
        xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(points[keep])
    frame = pd.DataFrame(
        {
            "x": xy[:, 0],
            "y": xy[:, 1],
            "modality": [names[m] for m in modality[keep]],
            "polarity": np.where(positive[keep], "positive", "negative"),
        }
    )
    caption = f"{len(keep)} of {len(points)} vectors ({n} samples x {n_mod} mod. x {n_labels} labels)"
    return frame, caption
