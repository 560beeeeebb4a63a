"""Is a variant different from the study's reference? Paired tests across seeds, Holm-corrected,
and a verdict per comparison: better, worse, equivalent or inconclusive, with its power.

The statistics live in ``harness/verdicts.py`` (the study runner's CLI summary uses them too);
this module builds the report's tables from them. Runs are paired by their seed tag (same seed =
same data split and initialisation stream), using only seeds both variants finished. With fewer
than 6 pairs the paired t-test is used, from 6 pairs on Wilcoxon signed-rank; Holm's step-down
correction runs across the variants compared, separately per metric. ``verdict``: better/worse
when the Holm-adjusted p < 0.05 (direction per metric, Hamming loss lower-is-better),
equivalent when identical on every seed or when TOST puts the 90 % interval of the mean paired
difference inside ± the equivalence margin, else inconclusive. ``mde``: the smallest |Δ| these
pairs detect with 80 % power; ``seeds_needed``: paired seeds that would detect the observed Δ
with 80 % power (empty where Δ = 0 or there is no spread).

Each difference comes with a 95 % t-interval of the mean paired difference. A model that gives
the same result on every seed (a deterministic baseline on a fixed validation split, such as the
label prior) contributes no seed-to-seed spread: the test then only sees the other model's
spread, and when both are constant there is nothing to test at all; the affected rows say so.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.metrics import LOWER_IS_BETTER, METRIC_TITLES, higher_is_better
from harness.verdicts import (
    ALPHA,
    CONFIDENCE,
    CONSTANT_ATOL,
    DEFAULT_EQUIVALENCE_MARGIN,
    MIN_PAIRS_WILCOXON,
    NO_TEST_CONSTANT,
    compare_family,
    constant,
    default_reference,
    holm,
    mean_ci,
    paired_test,
    test_name,
)
from reports.tables import COLUMNS, Cell, Table

__all__ = [  # the names callers used from here before the statistics moved to harness/verdicts.py
    "ALPHA",
    "CONFIDENCE",
    "MIN_PAIRS_WILCOXON",
    "NO_TEST_CONSTANT",
    "constant",
    "holm",
    "mean_ci",
    "paired_test",
    "compare",
    "default_reference",
    "table",
]
VERDICT_CLASSES = {"better": "verdict-better", "worse": "verdict-worse", "equivalent": "verdict-equivalent"}


def constancy_note(variant: str, reference: str, a, b) -> str:
    """What a reader must know when one or both models give the same result on every seed."""
    fixed = [name for name, values in ((variant, a), (reference, b)) if constant(values)]
    if len(fixed) == 2:
        return "both give the same result on every seed: a fixed difference, nothing to test"
    if fixed:
        other = reference if fixed[0] == variant else variant
        return f"{fixed[0]} gives the same result on every seed: CI and p show only {other}'s seed-to-seed spread"
    return ""


def compare(
    finished: pd.DataFrame,
    variants: list[str],
    reference: str | None = None,
    equivalence_margin: float = DEFAULT_EQUIVALENCE_MARGIN,
) -> pd.DataFrame:
    """One row per (setting, variant, metric): mean difference variant − reference over the seeds both
    have with its 95 % t-interval (ci_low, ci_high), the test's p, the Holm-adjusted p, whether it is
    significant, the TOST p, the ``verdict``, ``mde`` and ``seeds_needed`` (harness/verdicts.py), and a
    note where a model gives the same result on every seed. ``reference`` defaults to
    ``default_reference`` of the variants in ``finished``; one that names none of them is refused."""
    rows = []
    if finished.empty:  # nothing finished yet: no comparison, whatever the reference
        return _frame(rows)
    present = list(dict.fromkeys(finished["variant"]))
    reference = default_reference(present) if reference is None else reference
    if reference not in present:
        raise ValueError(f"reference: {reference!r} is not a variant of the study ({', '.join(present)})")
    for setting, runs in finished.groupby("setting", sort=False):
        base = runs[runs["variant"] == reference].set_index("seed")
        if base.empty:
            continue
        for key, _, _ in COLUMNS:
            pairs, extra = {}, {}
            for variant in variants:
                if variant == reference:
                    continue
                other = runs[runs["variant"] == variant].set_index("seed")
                seeds = sorted(set(base.index) & set(other.index))
                if other.empty or not seeds:
                    continue
                a = other.loc[seeds, f"test_{key}"].to_numpy(float)
                b = base.loc[seeds, f"test_{key}"].to_numpy(float)
                pairs[variant] = (a, b)
                extra[variant] = (seeds, a, b)
            for c in compare_family(pairs, key, reference, equivalence_margin):
                seeds, a, b = extra[c.variant]
                rows.append(
                    {
                        "setting": setting,
                        "variant": c.variant,
                        "metric": key,
                        "n_pairs": c.n_pairs,
                        "seeds": " ".join(map(str, seeds)),
                        "mean_diff": c.mean_diff,
                        "ci_low": c.ci_low,
                        "ci_high": c.ci_high,
                        "p": c.p,
                        "p_holm": c.p_holm,
                        "significant": c.significant,
                        "test": c.test,
                        "better": _direction(c.mean_diff, key),
                        "verdict": c.verdict,
                        "mde": c.mde,
                        "seeds_needed": c.seeds_needed,
                        "tost_p": c.tost_p,
                        "equivalence_margin": c.margin,
                        "reference": reference,
                        "note": constancy_note(c.variant, reference, a, b),
                    }
                )
    return _frame(rows)


def _frame(rows: list[dict]) -> pd.DataFrame:
    result = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    result["seeds_needed"] = result["seeds_needed"].astype("Int64")  # an empty cell where there is none
    return result


RESULT_COLUMNS = [
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
    "verdict",
    "mde",
    "seeds_needed",
    "tost_p",
    "equivalence_margin",
    "reference",
    "note",
]


def _direction(mean_diff: float, metric: str) -> bool | None:
    """Whether the variant's mean is the better one (None for no difference), significant or not."""
    return (mean_diff > 0) == higher_is_better(metric) if mean_diff != 0 and not np.isnan(mean_diff) else None


def table(result: pd.DataFrame, reference: str | None = None, notes: bool = True) -> Table:
    """The comparisons as a report table; its notes describe only what the rows contain (the tests
    actually used, Holm only when several variants share a family), and the Test and Note columns
    appear only when they tell the rows apart (several tests, a row that needs a note). The Verdict
    cell carries a css class per verdict (coloured on the page)."""
    if reference is None:
        reference = str(result["reference"].iloc[0]) if "reference" in result and len(result) else "carat"
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
        "Verdict",
        "MDE",
        "Seeds needed",
        *(["Test"] if test_column else []),
        *(["Note"] if notes_column else []),
    ]
    rows = []
    for _, r in result.iterrows():
        significant = "no" if not np.isnan(r["p_holm"]) else "–"
        if r["significant"]:
            significant = "yes, " + ("better" if r["better"] else "worse")
        verdict = str(r.get("verdict", "") or "")
        needed = r.get("seeds_needed")
        rows.append(
            [Cell(r["variant"])]
            + ([Cell(r["setting"])] if with_setting else [])
            + [
                Cell(titles[r["metric"]]),
                Cell(_diff(r["mean_diff"], r.get("ci_low"), r.get("ci_high"))),
                Cell(_p(r["p"])),
                Cell(_p(r["p_holm"])),
                Cell(significant, bold=bool(r["significant"])),
                Cell(str(r["n_pairs"])),
                Cell(verdict, bold=verdict in ("better", "worse"), css_class=VERDICT_CLASSES.get(verdict, "verdict")),
                Cell("–" if pd.isna(r.get("mde", np.nan)) else f"{r['mde']:.4f}"),
                Cell("–" if needed is None or pd.isna(needed) else str(int(needed))),
            ]
            + ([Cell(r["test"])] if test_column else [])
            + ([Cell(r["note"] or "")] if notes_column else [])
        )
    return Table(header, rows, notes=_notes(result, reference) if notes else [])


def _notes(result: pd.DataFrame, reference: str) -> list[str]:
    tests = set(result["test"])
    used = []
    if test_name(2) in tests:
        used.append(f"paired t-test (below {MIN_PAIRS_WILCOXON} pairs, where Wilcoxon cannot reach p < 0.05)")
    if test_name(MIN_PAIRS_WILCOXON) in tests:
        used.append(f"Wilcoxon signed-rank ({MIN_PAIRS_WILCOXON} pairs or more)")
    lower = ", ".join(f"{METRIC_TITLES[m]} ({m.replace('_', ' ')})" for m in sorted(LOWER_IS_BETTER))
    text = (
        f"Δ = mean over paired seeds of (variant − {reference}), with its {CONFIDENCE:.0%} t-interval in "
        f"brackets; for {lower} a negative Δ is better. Seeds are paired by their seed tag, using only "
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
    notes = [text, VERDICT_NOTE.format(margin=_margin(result), alpha=ALPHA)]
    if any(str(t).startswith("none (fewer") for t in tests):
        notes.append("Rows with fewer than 2 paired seeds have no interval and no test.")
    return notes


VERDICT_NOTE = (
    "Verdict: better/worse = significant (as above) in that direction; equivalent = identical on every seed, or "
    "two one-sided t-tests (TOST) at {alpha} put the 90% interval of Δ inside ± {margin} (the equivalence margin); "
    "otherwise inconclusive. MDE = the smallest |Δ| these pairs detect with 80% power at {alpha} (paired t: "
    "noncentral t; Wilcoxon: as the t-test with n·3/π pairs, its asymptotic relative efficiency), from the spread "
    "of the paired differences; Seeds needed = paired seeds that would detect the observed Δ with 80% power "
    "(– where Δ = 0 or there is no spread)."
)


def _margin(result: pd.DataFrame) -> str:
    margins = sorted(set(result["equivalence_margin"].dropna())) if "equivalence_margin" in result else []
    return " / ".join(f"{m:g}" for m in margins) or f"{DEFAULT_EQUIVALENCE_MARGIN:g}"


def _diff(mean: float, low, high) -> str:
    if low is None or np.isnan(low) or np.isnan(high) or high - low < CONSTANT_ATOL:  # no interval to show
        return f"{mean:+.4f}"
    return f"{mean:+.4f} [{low:+.4f}, {high:+.4f}]"


def _p(value: float) -> str:
    if np.isnan(value):
        return "–"
    return f"{value:.2e}" if value < 1e-3 else f"{value:.3f}"
