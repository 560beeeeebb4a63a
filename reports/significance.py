"""Is an ablation different from full CARAT? Paired tests across seeds, Holm-corrected.

Runs are paired by their seed tag (same seed = same data split and initialisation stream),
using only seeds both variants finished. With fewer than 6 pairs the Wilcoxon signed-rank
test cannot reach p < 0.05 at all (its smallest two-sided p with 5 pairs is 0.0625), so
the paired t-test is used there; from 6 pairs on, Wilcoxon (no normality assumption).
Holm's step-down correction runs across the variants compared, separately per metric.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from reports.tables import COLUMNS, Cell, Table

ALPHA = 0.05
MIN_PAIRS_WILCOXON = 6


def holm(pvalues) -> np.ndarray:
    """Holm-adjusted p-values (NaN entries are left out of the family and stay NaN)."""
    p = np.asarray(pvalues, dtype=float)
    adjusted = np.full_like(p, np.nan)
    present = np.flatnonzero(~np.isnan(p))
    order = present[np.argsort(p[present], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):  # the k-th smallest p is multiplied by (m - k + 1), kept monotone
        running = max(running, min(1.0, (len(order) - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def paired_test(variant: np.ndarray, reference: np.ndarray) -> tuple[str, float]:
    """(test name, two-sided p) for paired samples; p is NaN with fewer than 2 pairs."""
    diff = np.asarray(variant, float) - np.asarray(reference, float)
    if len(diff) < 2:
        return "none (fewer than 2 pairs)", float("nan")
    if np.allclose(diff, 0.0):
        return _test_name(len(diff)), 1.0  # identical results: no evidence of a difference
    if len(diff) >= MIN_PAIRS_WILCOXON:
        return _test_name(len(diff)), float(stats.wilcoxon(diff).pvalue)
    return _test_name(len(diff)), float(stats.ttest_rel(variant, reference).pvalue)


def _test_name(n_pairs: int) -> str:
    return "Wilcoxon signed-rank" if n_pairs >= MIN_PAIRS_WILCOXON else "paired t-test"


def compare(finished: pd.DataFrame, variants: list[str], reference: str = "carat") -> pd.DataFrame:
    """One row per (setting, variant, metric): mean difference variant − reference over the
    seeds both have, the test's p, the Holm-adjusted p and whether it is significant."""
    rows = []
    for setting, runs in finished.groupby("setting", sort=False):
        base = runs[runs["variant"] == reference].set_index("seed")
        if base.empty:
            continue
        for key, _, higher in COLUMNS:
            block = []
            for variant in variants:
                other = runs[runs["variant"] == variant].set_index("seed")
                seeds = sorted(set(base.index) & set(other.index))
                if other.empty or not seeds:
                    continue
                a = other.loc[seeds, f"test_{key}"].to_numpy(float)
                b = base.loc[seeds, f"test_{key}"].to_numpy(float)
                test, p = paired_test(a, b)
                diff = float(np.mean(a - b))
                block.append({
                    "setting": setting, "variant": variant, "metric": key, "n_pairs": len(seeds),
                    "seeds": " ".join(map(str, seeds)), "mean_diff": diff, "p": p, "test": test,
                    "better": (diff > 0) == higher if diff != 0 else None,
                })  # fmt: skip
            adjusted = holm([r["p"] for r in block])
            for row, p_holm in zip(block, adjusted):
                row["p_holm"] = p_holm
                row["significant"] = bool(p_holm < ALPHA)
            rows += block
    columns = ["setting", "variant", "metric", "n_pairs", "seeds", "mean_diff", "p", "p_holm", "significant", "test",
               "better"]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def table(result: pd.DataFrame, reference: str = "carat") -> Table:
    titles = {key: title for key, title, _ in COLUMNS}
    with_setting = result["setting"].nunique() > 1
    header = ["Variant", *(["Setting"] if with_setting else []), "Metric", f"Δ vs {reference}", "p", "p (Holm)",
              "Significant", "Pairs", "Test"]  # fmt: skip
    rows = []
    for _, r in result.iterrows():
        verdict = "no"
        if r["significant"]:
            verdict = "yes, " + ("better" if r["better"] else "worse")
        rows.append(
            [Cell(r["variant"])] + ([Cell(r["setting"])] if with_setting else [])
            + [Cell(titles[r["metric"]]), Cell(f"{r['mean_diff']:+.4f}"), Cell(_p(r["p"])), Cell(_p(r["p_holm"])),
               Cell(verdict, bold=bool(r["significant"])), Cell(str(r["n_pairs"])), Cell(r["test"])]
        )  # fmt: skip
    notes = [
        f"Δ = mean over paired seeds of (variant − {reference}); for HL (Hamming loss) a negative Δ is better. "
        f"Seeds are paired by their seed tag, using only seeds both runs finished. Paired t-test below "
        f"{MIN_PAIRS_WILCOXON} pairs (Wilcoxon cannot reach p < 0.05 with 5 pairs), Wilcoxon signed-rank from "
        f"{MIN_PAIRS_WILCOXON} pairs on; both two-sided. Holm correction across the variants compared, per "
        f"metric; significant = Holm-adjusted p < {ALPHA}."
    ]
    return Table(header, rows, notes=notes)


def _p(value: float) -> str:
    if np.isnan(value):
        return "–"
    return f"{value:.2e}" if value < 1e-3 else f"{value:.3f}"
