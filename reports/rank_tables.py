"""The cross-data-set rank verdicts of ``reports.ranks`` as tables, files and critical-difference diagrams.

Plain data in (``RankVerdict`` objects), tables (``reports.tables.Table``), CSV/Markdown files
and PNG diagrams out; no statistics are computed here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from reports.ranks import ALPHA, METHOD_NOTE, PAIRWISE_COLUMNS, RANK_COLUMNS, RankVerdict
from reports.tables import COLUMNS, Cell, Table, markdown

# -- plain tables ----------------------------------------------------------------------------


def rank_frame(results: Sequence[RankVerdict]) -> pd.DataFrame:
    """One row per (metric, variant): ``RANK_COLUMNS``, the metric's Friedman result and CD repeated on each row."""
    rows = []
    for r in results:
        for variant, rank in r.average_ranks.items():
            rows.append(
                {
                    "metric": r.metric,
                    "higher_is_better": r.higher_is_better,
                    "variant": variant,
                    "average_rank": float(rank),
                    "n_datasets": r.n_datasets,
                    "n_variants": len(r.average_ranks),
                    "friedman_chi2": r.friedman_chi2,
                    "friedman_p": r.friedman_p,
                    "iman_davenport_f": r.iman_davenport_f,
                    "iman_davenport_p": r.iman_davenport_p,
                    "q_alpha": r.q_alpha,
                    "cd": r.cd,
                    "alpha": r.alpha,
                    "undetectable": " ".join(r.undetectable),
                }
            )
    return pd.DataFrame(rows, columns=RANK_COLUMNS)


def pairwise_frame(results: Sequence[RankVerdict]) -> pd.DataFrame:
    """Every verdict's pairwise rows (``PAIRWISE_COLUMNS``), metric after metric."""
    frames = [r.pairwise for r in results if len(r.pairwise)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=PAIRWISE_COLUMNS)


def title(metric: str) -> str:
    """The report's column title of a metric (``micro_f1`` or ``test_micro_f1`` -> micro-F1), else the name."""
    titles = {key: text for key, text, _ in COLUMNS}
    return titles.get(metric.removeprefix("test_"), metric)


def average_rank_table(results: Sequence[RankVerdict]) -> Table:
    """Variants x metrics of average ranks, variants in the first metric's order. A metric's best average
    rank is in bold only when no other variant shares it (as in the results tables: a tie has no winner)."""
    order = list(dict.fromkeys(v for r in results for v in r.variants))
    header = ["Variant", *(title(r.metric) for r in results)]
    rows = []
    for variant in order:
        cells = [Cell(variant)]
        for r in results:
            rank = r.average_ranks.get(variant, np.nan)
            best = bool(len(r.ranks)) and rank == r.average_ranks.min() and (r.average_ranks == rank).sum() == 1
            cells.append(Cell("–" if np.isnan(rank) else f"{rank:.2f}", bold=best))
        rows.append(cells)
    counts = ", ".join(f"{title(r.metric)}: {r.n_datasets}" for r in results)
    return Table(
        header,
        rows,
        notes=[
            f"Average rank over data sets (1 = best); bold: a metric's best rank when no "
            f"other variant shares it. Data sets per metric: {counts}."
        ],
    )


def omnibus_table(results: Sequence[RankVerdict]) -> Table:
    header = [
        "Metric",
        "Data sets",
        "Variants",
        "Friedman χ²",
        "p",
        "Iman-Davenport F",
        "p (F)",
        "Differ",
        "q_alpha",
        "CD (Nemenyi)",
    ]
    rows = [
        [
            Cell(title(r.metric)),
            Cell(str(r.n_datasets)),
            Cell(str(len(r.average_ranks))),
            Cell(_num(r.friedman_chi2)),
            Cell(_p(r.friedman_p)),
            Cell(_num(r.iman_davenport_f)),
            Cell(_p(r.iman_davenport_p)),
            Cell("–" if np.isnan(r.iman_davenport_p) else ("yes" if r.differ else "no"), bold=r.differ),
            Cell(_num(r.q_alpha)),
            Cell(_num(r.cd)),
        ]
        for r in results
    ]
    alpha = results[0].alpha if results else ALPHA
    return Table(header, rows, notes=[f"Differ = Iman-Davenport p < {alpha}. CD at alpha = {alpha}."])


def pairwise_table(result: RankVerdict) -> Table:
    """The pairs of one metric: difference, wins, Nemenyi p, Wilcoxon p raw and Holm-adjusted."""
    header = [
        "Pair",
        "Mean Δ",
        "Wins / ties / losses",
        "Δ rank",
        "Nemenyi p",
        "Wilcoxon p",
        "Wilcoxon p (Holm)",
        "Significant (Holm)",
    ]
    rows = [
        [
            Cell(f"{r.variant_a} vs {r.variant_b}"),
            Cell(_num(r.mean_diff, "+.4f")),
            Cell(f"{r.a_wins} / {r.ties} / {r.b_wins}"),
            Cell(_num(r.rank_diff, "+.2f")),
            Cell(_p(r.nemenyi_p)),
            Cell(_p(r.wilcoxon_p)),
            Cell(_p(r.wilcoxon_p_holm)),
            Cell(
                "–" if np.isnan(r.wilcoxon_p_holm) else ("yes" if r.wilcoxon_significant else "no"),
                bold=r.wilcoxon_significant,
            ),
        ]
        for r in result.pairwise.itertuples()
    ]
    direction = "higher" if result.higher_is_better else "lower"
    notes = [
        f"Δ = mean over data sets of (first − second) in {title(result.metric)} ({direction} is better); wins "
        "count the data sets where the first variant is better. Δ rank < 0: the first ranks better."
    ]
    return Table(header, rows, notes=notes)


def per_dataset_table(result: RankVerdict) -> Table:
    """Data sets x variants: each score with its rank in brackets."""
    names = result.variants
    rows = [
        [Cell(dataset)]
        + [
            Cell(
                f"{result.scores.loc[dataset, v]:.4f} ({result.ranks.loc[dataset, v]:g})",
                bold=result.ranks.loc[dataset, v] == 1,
            )
            for v in names
        ]
        for dataset in result.ranks.index
    ]
    return Table(["Data set", *names], rows)


def _num(value: float, fmt: str = ".3f") -> str:
    return "–" if np.isnan(value) else ("∞" if np.isinf(value) else format(value, fmt))


def _p(value: float) -> str:
    if np.isnan(value):
        return "–"
    return f"{value:.2e}" if value < 1e-3 else f"{value:.3f}"


# -- files -----------------------------------------------------------------------------------


def write(results: Sequence[RankVerdict], folder: Path, heading: str = "Ranks across data sets") -> list[Path]:
    """Write ranks.md, ranks.csv (``rank_frame``), ranks_pairwise.csv (``pairwise_frame``) and, where a metric
    could be tested, critical_difference.png (Nemenyi) and critical_difference_wilcoxon.png (Wilcoxon-Holm)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "ranks.csv", folder / "ranks_pairwise.csv", folder / "ranks.md"]
    rank_frame(results).to_csv(written[0], index=False)
    pairwise_frame(results).to_csv(written[1], index=False)
    written[2].write_text(report_markdown(results, heading))
    for test, name in (("nemenyi", "critical_difference.png"), ("wilcoxon", "critical_difference_wilcoxon.png")):
        path = critical_difference_diagram(results, folder / name, test=test)
        if path is not None:
            written.append(path)
    return written


def report_markdown(results: Sequence[RankVerdict], heading: str = "Ranks across data sets") -> str:
    parts = [
        f"# {heading}\n",
        METHOD_NOTE + "\n",
        "## Average ranks\n",
        markdown(average_rank_table(results)),
        "## Omnibus test\n",
        markdown(omnibus_table(results)),
    ]
    for r in results:
        parts.append(f"## {title(r.metric)}\n")
        if r.notes:
            parts.append("\n".join(f"- {note}" for note in r.notes) + "\n")
        if len(r.pairwise):
            parts.append(markdown(pairwise_table(r)))
        if len(r.ranks):
            parts.append(markdown(per_dataset_table(r)))
    return "\n".join(parts)


def critical_difference_diagram(results: Sequence[RankVerdict], path: Path, test: str = "nemenyi") -> Path | None:
    """Demšar's diagram, one panel per metric that could be tested: the average ranks on an axis (1 = best, on
    the left), each variant named, bars joining groups not significantly different at alpha (``test``:
    "nemenyi", whose CD is drawn above the axis, or "wilcoxon", Holm-adjusted); None when no metric could be
    tested (fewer than 2 variants or data sets)."""
    import matplotlib.pyplot as plt
    import scikit_posthocs

    from reports.plots import DPI  # also selects the Agg backend

    if test not in ("nemenyi", "wilcoxon"):
        raise ValueError(f"test must be 'nemenyi' or 'wilcoxon', got {test!r}")
    drawable = [r for r in results if r.n_datasets >= 2 and len(r.average_ranks) >= 2]
    if not drawable:
        return None
    heights = [1.2 + 0.32 * len(r.average_ranks) for r in drawable]
    fig, axes = plt.subplots(
        len(drawable), 1, figsize=(8, sum(heights) + 0.4), squeeze=False, gridspec_kw={"height_ratios": heights}
    )
    try:
        for ax, r in zip(axes[:, 0], drawable):
            k = len(r.average_ranks)
            pvalues = r.nemenyi if test == "nemenyi" else r.wilcoxon_matrix()
            scikit_posthocs.critical_difference_diagram(
                r.average_ranks,
                pvalues.fillna(1.0),
                alpha=r.alpha,
                ax=ax,
                label_fmt_left="{label} ({rank:.2f})",
                label_fmt_right="({rank:.2f}) {label}",
            )
            ax.set_xlim(0.8, k + 0.2)
            ax.set_xticks(range(1, k + 1))
            bottom = ax.get_ylim()[0]
            if test == "nemenyi":  # Demšar's CD interval, from rank 1, above the tick labels
                ax.plot([1, 1 + r.cd], [1.3, 1.3], color="k", linewidth=1.5)
                ax.plot([1, 1, np.nan, 1 + r.cd, 1 + r.cd], [1.15, 1.45, np.nan, 1.15, 1.45], color="k", linewidth=1)
                ax.text(1 + r.cd / 2, 1.55, f"CD = {r.cd:.2f}", ha="center", va="bottom", fontsize=9)
            ax.set_ylim(bottom, 2.3 if test == "nemenyi" else 0.9)
            how = "Nemenyi" if test == "nemenyi" else "Wilcoxon signed-rank, Holm"
            ax.set_title(
                f"{title(r.metric)}: average rank over {r.n_datasets} data sets; bars join variants not "
                f"significantly different ({how}, alpha {r.alpha})",
                fontsize=9,
            )
        fig.savefig(path, dpi=DPI, bbox_inches="tight")
    finally:
        plt.close(fig)
    return Path(path)
