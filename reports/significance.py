"""Is a variant different from full CARAT? Paired tests across seeds, Holm-corrected.

Runs are paired by their seed tag (same seed = same data split and initialisation stream),
using only seeds both variants finished. With fewer than 6 pairs the Wilcoxon signed-rank
test cannot reach p < 0.05 at all (its smallest two-sided p with 5 pairs is 0.0625), so
the paired t-test is used there; from 6 pairs on, Wilcoxon (no normality assumption).
Holm's step-down correction runs across the variants compared, separately per metric.

Each difference comes with a 95 % t-interval of the mean paired difference, so a reader sees
how large it may be, not only whether it is significant. A model that gives the same result on
every seed (a deterministic baseline on a fixed validation split, such as the label prior)
contributes no seed-to-seed spread: the test then only sees the other model's spread, and when
both are constant there is nothing to test at all; the affected rows say so.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from reports.tables import COLUMNS, Cell, Table

ALPHA = 0.05
CONFIDENCE = 0.95
MIN_PAIRS_WILCOXON = 6
CONSTANT_ATOL = 1e-9  # metrics are logged as floats: a deterministic model repeats them exactly
NO_TEST_CONSTANT = "none (the same difference on every seed)"


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
    if constant(diff):  # scipy's t would be infinite and p = 0: an artefact, not evidence
        return NO_TEST_CONSTANT, float("nan")
    if len(diff) >= MIN_PAIRS_WILCOXON:
        return _test_name(len(diff)), float(stats.wilcoxon(diff).pvalue)
    return _test_name(len(diff)), float(stats.ttest_rel(variant, reference).pvalue)


def constant(values) -> bool:
    """Whether every value is the same (to float noise): no spread across seeds."""
    values = np.asarray(values, float)
    return len(values) > 1 and bool(np.allclose(values, values[0], rtol=0.0, atol=CONSTANT_ATOL))


def mean_ci(diff, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Two-sided t-interval of the mean of paired differences: mean ± t_{(1+c)/2, n-1} * s / sqrt(n)
    (NaN with fewer than 2 pairs; zero width when every difference is the same)."""
    diff = np.asarray(diff, float)
    if len(diff) < 2:
        return float("nan"), float("nan")
    mean = float(np.mean(diff))
    half = float(stats.t.ppf((1 + confidence) / 2, len(diff) - 1) * np.std(diff, ddof=1) / np.sqrt(len(diff)))
    return mean - half, mean + half


def constancy_note(variant: str, reference: str, a, b) -> str:
    """What a reader must know when one or both models give the same result on every seed."""
    fixed = [name for name, values in ((variant, a), (reference, b)) if constant(values)]
    if len(fixed) == 2:
        return "both give the same result on every seed: a fixed difference, nothing to test"
    if fixed:
        other = reference if fixed[0] == variant else variant
        return f"{fixed[0]} gives the same result on every seed: CI and p show only {other}'s seed-to-seed spread"
    return ""


def _test_name(n_pairs: int) -> str:
    return "Wilcoxon signed-rank" if n_pairs >= MIN_PAIRS_WILCOXON else "paired t-test"


def compare(finished: pd.DataFrame, variants: list[str], reference: str = "carat") -> pd.DataFrame:
    """One row per (setting, variant, metric): mean difference variant − reference over the
    seeds both have with its 95 % t-interval (ci_low, ci_high), the test's p, the Holm-adjusted p,
    whether it is significant, and a note where a model gives the same result on every seed."""
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
                if constant(a) and constant(b):  # even identical results are no evidence of equality here
                    test, p = NO_TEST_CONSTANT, float("nan")
                diff = float(np.mean(a - b))
                low, high = mean_ci(a - b)
                block.append(
                    {
                        "setting": setting,
                        "variant": variant,
                        "metric": key,
                        "n_pairs": len(seeds),
                        "seeds": " ".join(map(str, seeds)),
                        "mean_diff": diff,
                        "ci_low": low,
                        "ci_high": high,
                        "p": p,
                        "test": test,
                        "better": (diff > 0) == higher if diff != 0 else None,
                        "note": constancy_note(variant, reference, a, b),
                    }
                )
            adjusted = holm([r["p"] for r in block])
            for row, p_holm in zip(block, adjusted):
                row["p_holm"] = p_holm
                row["significant"] = bool(p_holm < ALPHA)
            rows += block
    columns = [
        "setting",
        "variant",
        "metric",
        "n_pairs",
        "seeds",
        "mean_diff",
        "ci_low",
        "ci_high",
        "p",
        "p_holm",
        "significant",
        "test",
        "better",
        "note",
    ]
    return pd.DataFrame(rows, columns=columns)


def table(result: pd.DataFrame, reference: str = "carat", notes: bool = True) -> Table:
    """The comparisons as a report table; its notes describe only what the rows contain (the tests
    actually used, Holm only when several variants share a family), and the Test and Note columns
    appear only when they tell the rows apart (several tests, a row that needs a note)."""
    titles = {key: title for key, title, _ in COLUMNS}
    with_setting = result["setting"].nunique() > 1
    notes_column = bool(result["note"].fillna("").astype(bool).any()) if "note" in result else False
    test_column = result["test"].nunique() > 1
    header = [
        "Variant",
        *(["Setting"] if with_setting else []),
        "Metric",
        f"Δ vs {reference} (95% CI)",
        "p",
        "p (Holm)",
        "Significant",
        "Pairs",
        *(["Test"] if test_column else []),
        *(["Note"] if notes_column else []),
    ]
    rows = []
    for _, r in result.iterrows():
        verdict = "no" if not np.isnan(r["p_holm"]) else "–"
        if r["significant"]:
            verdict = "yes, " + ("better" if r["better"] else "worse")
        rows.append(
            [Cell(r["variant"])]
            + ([Cell(r["setting"])] if with_setting else [])
            + [
                Cell(titles[r["metric"]]),
                Cell(_diff(r["mean_diff"], r.get("ci_low"), r.get("ci_high"))),
                Cell(_p(r["p"])),
                Cell(_p(r["p_holm"])),
                Cell(verdict, bold=bool(r["significant"])),
                Cell(str(r["n_pairs"])),
            ]
            + ([Cell(r["test"])] if test_column else [])
            + ([Cell(r["note"] or "")] if notes_column else [])
        )
    return Table(header, rows, notes=_notes(result, reference) if notes else [])


def _notes(result: pd.DataFrame, reference: str) -> list[str]:
    tests = set(result["test"])
    used = []
    if _test_name(2) in tests:
        used.append(f"paired t-test (below {MIN_PAIRS_WILCOXON} pairs, where Wilcoxon cannot reach p < 0.05)")
    if _test_name(MIN_PAIRS_WILCOXON) in tests:
        used.append(f"Wilcoxon signed-rank ({MIN_PAIRS_WILCOXON} pairs or more)")
    text = (
        f"Δ = mean over paired seeds of (variant − {reference}), with its {CONFIDENCE:.0%} t-interval in "
        "brackets; for HL (Hamming loss) a negative Δ is better. Seeds are paired by their seed tag, using only "
        "seeds both runs finished."
    )
    if used:
        text += " Test: " + "; ".join(used) + ", two-sided."
    if NO_TEST_CONSTANT in tests:
        text += f" Test '{NO_TEST_CONSTANT}': a difference without spread cannot be tested across seeds."
    several = result.groupby(["setting", "metric"])["variant"].nunique().max() > 1 if len(result) else False
    if several:
        text += f" Holm correction across the variants compared, per metric; significant = Holm-adjusted p < {ALPHA}."
    else:
        text += f" One comparison per metric, so Holm changes nothing; significant = p < {ALPHA}."
    notes = [text]
    if any(str(t).startswith("none (fewer") for t in tests):
        notes.append("Rows with fewer than 2 paired seeds have no interval and no test.")
    return notes


def _diff(mean: float, low, high) -> str:
    if low is None or np.isnan(low) or np.isnan(high) or high - low < CONSTANT_ATOL:  # no interval to show
        return f"{mean:+.4f}"
    return f"{mean:+.4f} [{low:+.4f}, {high:+.4f}]"


def _p(value: float) -> str:
    if np.isnan(value):
        return "–"
    return f"{value:.2e}" if value < 1e-3 else f"{value:.3f}"
