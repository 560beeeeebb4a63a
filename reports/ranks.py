"""Which variant wins across data sets? Average ranks, Friedman, Nemenyi and Wilcoxon-Holm.

The multi-label literature compares methods over several data sets by ranks (Demšar 2006,
"Statistical comparisons of classifiers over multiple data sets", JMLR 7): on every data set
the variants are ranked by a metric (1 = best, ties get the average of the ranks they span),
the ranks are averaged over data sets, Friedman's test asks whether any variant differs, and
the Nemenyi post-hoc test (critical difference CD) says which pairs do. Benavoli, Corani and
Mangili (2016, "Should we really use post-hoc tests based on mean-ranks?", JMLR 17) showed
that whether two variants differ under a mean-ranks test depends on which *other* variants
are in the comparison; they recommend pairwise Wilcoxon signed-rank tests over data sets
with a Holm correction instead. Both are computed: the critical-difference diagram shows
Nemenyi (as papers draw it), the pairwise table and a second diagram give Wilcoxon-Holm.

Input is plain data: a DataFrame with one row per (data set, variant) holding that unit's
score (the mean over seeds) in a metric column. Only complete data sets count: a data set on
which some variant has no score (no row, or NaN) is left out of the ranks and every test,
and the verdict's notes name it and the variants it lacks; the ranks of the other variants
there would otherwise not be comparable. Too few data sets or variants never raise: the
undefined numbers are NaN and a note says why.

Statistics come from libraries: Friedman from ``scipy.stats.friedmanchisquare`` (with its
tie correction; equal to Demšar's formula when there are no ties), Nemenyi p-values from
``scikit_posthocs.posthoc_nemenyi_friedman``, q_alpha from scipy's studentized range
(``studentized_range.ppf(1 - alpha, k, inf) / sqrt(2)``, Demšar's Table 5), Wilcoxon from
``scipy.stats.wilcoxon`` (zero differences split between the signs, as Demšar suggests),
Holm from ``harness.verdicts.holm``, the diagram from
``scikit_posthocs.critical_difference_diagram``. Written here: the average ranks (pandas),
the Iman-Davenport F from the Friedman statistic. Tables, files and diagrams: ``reports.rank_tables``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from harness.verdicts import holm

ALPHA = 0.05
FEW_DATASETS = 5  # below this, say that the tests have little power
KEYS = ("dataset", "variant")
PAIRWISE_COLUMNS = [
    "metric",
    "variant_a",
    "variant_b",
    "n_datasets",
    "mean_diff",
    "a_wins",
    "ties",
    "b_wins",
    "rank_diff",
    "nemenyi_p",
    "nemenyi_significant",
    "wilcoxon_statistic",
    "wilcoxon_p",
    "wilcoxon_p_holm",
    "wilcoxon_significant",
]
RANK_COLUMNS = [
    "metric",
    "higher_is_better",
    "variant",
    "average_rank",
    "n_datasets",
    "n_variants",
    "friedman_chi2",
    "friedman_p",
    "iman_davenport_f",
    "iman_davenport_p",
    "q_alpha",
    "cd",
    "alpha",
    "undetectable",
]
METHOD_NOTE = (
    "Ranks per data set, 1 = best, ties share the average rank; only data sets on which every variant has a score "
    "count. Friedman's chi-square (scipy, tie-corrected) and its Iman-Davenport F form test whether any variant "
    "differs; Demšar (2006) recommends the F form, which is less conservative. CD = q_alpha * sqrt(k(k+1)/(6N)) is "
    "the Nemenyi critical difference: two average ranks further apart than CD differ at alpha. Benavoli et al. "
    "(2016) advise against mean-rank post-hoc tests (their verdict on a pair depends on the other variants "
    "compared) and recommend pairwise Wilcoxon signed-rank tests over data sets with Holm's correction: the "
    "'Wilcoxon p (Holm)' column, corrected over all pairs of one metric (zero differences split between the "
    "signs). critical_difference.png joins variants Nemenyi cannot separate; critical_difference_wilcoxon.png "
    "joins those Wilcoxon-Holm cannot. Scores are means over seeds; the tests treat data sets, not seeds, as the "
    "samples."
)


@dataclass(frozen=True)
class RankVerdict:
    """The cross-data-set verdict on one metric (plain data; every DataFrame uses variant names).

    ``scores`` and ``ranks`` are data set x variant (complete data sets only, in first-seen
    order); ``average_ranks`` is indexed by variant, best first; ``nemenyi`` is the symmetric
    variant x variant matrix of Nemenyi p-values (1 on the diagonal); ``pairwise`` has one row
    per pair of variants (``PAIRWISE_COLUMNS``, the better-ranked variant as ``variant_a``)."""

    metric: str
    higher_is_better: bool
    alpha: float
    scores: pd.DataFrame
    ranks: pd.DataFrame
    average_ranks: pd.Series
    friedman_chi2: float
    friedman_p: float
    iman_davenport_f: float
    iman_davenport_p: float
    q_alpha: float
    cd: float
    nemenyi: pd.DataFrame
    pairwise: pd.DataFrame
    dropped: dict[str, list[str]] = field(default_factory=dict)  # data set -> the variants it has no score for
    notes: tuple[str, ...] = ()
    # Tests that cannot call ANY pair different with this many data sets and variants, whatever the scores:
    # "nemenyi" (CD above the largest possible rank difference k - 1), "wilcoxon-holm" (smallest possible
    # adjusted p not below alpha). A "no difference" from them says nothing about the variants.
    undetectable: tuple[str, ...] = ()

    @property
    def n_datasets(self) -> int:
        return len(self.ranks)

    @property
    def variants(self) -> list[str]:
        return list(self.average_ranks.index)

    @property
    def differ(self) -> bool:
        """Whether the omnibus test (Iman-Davenport) rejects "all variants are equivalent" at ``alpha``."""
        return bool(self.iman_davenport_p < self.alpha)

    def wilcoxon_matrix(self) -> pd.DataFrame:
        """Symmetric variant x variant matrix of Holm-adjusted Wilcoxon p-values (1 on the diagonal)."""
        names = self.variants
        matrix = pd.DataFrame(np.eye(len(names)), index=names, columns=names)
        for row in self.pairwise.itertuples():
            matrix.loc[row.variant_a, row.variant_b] = matrix.loc[row.variant_b, row.variant_a] = row.wilcoxon_p_holm
        return matrix


def verdict(scores: pd.DataFrame, metric: str, higher_is_better: bool = True, alpha: float = ALPHA) -> RankVerdict:
    """Rank the variants of ``scores`` on ``metric`` across data sets and test the differences.

    ``scores`` has columns ``dataset``, ``variant`` and ``metric``, one row per (data set,
    variant): average the seeds first, e.g. ``runs.groupby(["dataset", "variant"],
    as_index=False)[metric].mean()``."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    table, dropped = _complete_table(scores, metric)
    ranks = table.rank(axis=1, ascending=not higher_is_better, method="average")
    average = ranks.mean(axis=0).sort_values(kind="stable")  # NaN for every variant when no data set is complete
    n, k = table.shape
    notes = _notes(n, k, dropped, alpha)
    nan = float("nan")
    chi2 = p_chi2 = f_id = p_id = q_alpha = cd = nan
    testable = n >= 2 and k >= 2
    if testable:
        q_alpha = float(stats.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2))
        cd = q_alpha * math.sqrt(k * (k + 1) / (6.0 * n))
        nemenyi = _nemenyi(ranks).loc[average.index, average.index]
        if k >= 3:
            if (ranks.nunique(axis=1) == 1).all():
                notes.append(
                    "Every variant ties on every data set: Friedman's statistic is undefined (0/0) and "
                    "nothing suggests a difference."
                )
            else:
                result = stats.friedmanchisquare(*(table[v] for v in table.columns))
                chi2, p_chi2 = float(result.statistic), float(result.pvalue)
                f_id, p_id = _iman_davenport(chi2, n, k)
    else:  # p = 1 for a variant against itself, undefined for every pair
        nemenyi = pd.DataFrame(np.where(np.eye(k, dtype=bool), 1.0, nan), index=average.index, columns=average.index)
    pairwise = _pairwise(table, average, nemenyi, metric, higher_is_better, alpha, testable)
    undetectable = _undetectable(n, k, cd, alpha)
    if "nemenyi" in undetectable:
        notes.append(
            f"With {n} data sets and {k} variants the Nemenyi critical difference CD = {cd:.3g} exceeds the largest "
            f"possible difference of average ranks ({k - 1}): no pair can differ under Nemenyi, whatever the scores."
        )
    return RankVerdict(
        metric=metric,
        higher_is_better=higher_is_better,
        alpha=alpha,
        scores=table,
        ranks=ranks,
        average_ranks=average,
        friedman_chi2=chi2,
        friedman_p=p_chi2,
        iman_davenport_f=f_id,
        iman_davenport_p=p_id,
        q_alpha=q_alpha,
        cd=cd,
        nemenyi=nemenyi,
        pairwise=pairwise,
        dropped=dropped,
        notes=tuple(notes),
        undetectable=undetectable,
    )


def verdicts(scores: pd.DataFrame, metrics: Sequence[tuple[str, bool]], alpha: float = ALPHA) -> list[RankVerdict]:
    """``verdict`` for each (metric column, higher is better) pair, in that order."""
    return [verdict(scores, metric, higher, alpha) for metric, higher in metrics]


# -- the pieces ------------------------------------------------------------------------------


def _complete_table(scores: pd.DataFrame, metric: str) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Data set x variant scores of the complete data sets, and the incomplete ones with what they lack."""
    if not isinstance(scores, pd.DataFrame):
        raise TypeError(f"scores must be a pandas DataFrame, got {type(scores).__name__}")
    missing = [c for c in (*KEYS, metric) if c not in scores.columns]
    if missing:
        raise ValueError(f"scores lack column(s) {missing}; columns present: {list(scores.columns)}")
    frame = scores[[*KEYS, metric]].copy()
    frame[list(KEYS)] = frame[list(KEYS)].astype(str)
    values = pd.to_numeric(frame[metric], errors="coerce")
    bad = frame.loc[values.isna() & frame[metric].notna(), metric]
    if len(bad):
        raise ValueError(f"metric {metric!r} holds non-numeric values, e.g. {bad.iloc[0]!r}")
    frame[metric] = values
    repeated = frame[frame.duplicated(list(KEYS), keep=False)][list(KEYS)].drop_duplicates()
    if len(repeated):
        pairs = ", ".join(f"({d}, {v})" for d, v in repeated.itertuples(index=False))
        raise ValueError(
            f"scores must have one row per (dataset, variant); repeated: {pairs}. Average the seeds first: "
            f"runs.groupby(['dataset', 'variant'], as_index=False)[{metric!r}].mean()"
        )
    datasets = list(dict.fromkeys(frame["dataset"]))
    variants = list(dict.fromkeys(frame["variant"]))
    table = frame.pivot(index="dataset", columns="variant", values=metric).reindex(index=datasets, columns=variants)
    table.index.name, table.columns.name = "dataset", "variant"
    incomplete = table.isna().any(axis=1)
    dropped = {d: [v for v in variants if pd.isna(table.loc[d, v])] for d in table.index[incomplete]}
    return table[~incomplete].astype(float), dropped


def _notes(n: int, k: int, dropped: dict[str, list[str]], alpha: float) -> list[str]:
    notes = []
    for dataset, lacking in dropped.items():
        notes.append(f"Data set {dataset!r} is left out: no score for {', '.join(lacking)}.")
    if n < 2 or k < 2:
        notes.append(
            f"The tests need at least 2 variants and 2 complete data sets; there are {k} variant(s) and "
            f"{n} data set(s): only the average ranks are given."
        )
        return notes
    if k == 2:
        notes.append(
            "Two variants: Friedman's test is not computed (scipy needs 3); for two methods Demšar "
            "(2006) recommends the Wilcoxon signed-rank test over data sets, given in the pairwise "
            "table."
        )
    if n < FEW_DATASETS:
        notes.append(f"Only {n} data sets: every test here has little power, read the ranks as descriptive.")
    pairs, smallest = math.comb(k, 2), _smallest_wilcoxon_holm_p(n, k)
    if smallest >= alpha:
        notes.append(
            f"With {n} data sets and {pairs} pair(s), no pair can be significant under Wilcoxon-Holm: the "
            f"smallest possible adjusted p is {pairs} x 2/2^{n} = {smallest:.3g}."
        )
    return notes


def _undetectable(n: int, k: int, cd: float, alpha: float) -> tuple[str, ...]:
    """Which pairwise tests cannot reach significance at all with n complete data sets and k variants."""
    if n < 2 or k < 2:
        return ("nemenyi", "wilcoxon-holm")
    out = []
    if cd > k - 1:  # average ranks lie in [1, k]: no two differ by more than k - 1
        out.append("nemenyi")
    if _smallest_wilcoxon_holm_p(n, k) >= alpha:
        out.append("wilcoxon-holm")
    return tuple(out)


def _smallest_wilcoxon_holm_p(n: int, k: int) -> float:
    """The smallest Holm-adjusted p any pair can reach: the exact two-sided Wilcoxon p of n
    differences all of one sign (2 / 2^n), times the number of pairs (the first step of Holm)."""
    return min(1.0, math.comb(k, 2) * 2.0 / 2**n)


def _iman_davenport(chi2: float, n: int, k: int) -> tuple[float, float]:
    """Iman and Davenport's F = (N-1) chi2 / (N(k-1) - chi2) with (k-1, (k-1)(N-1)) degrees of freedom."""
    denominator = n * (k - 1) - chi2
    if denominator <= 0:  # every data set ranks the variants the same way, without ties
        return float("inf"), 0.0
    f = (n - 1) * chi2 / denominator
    return float(f), float(stats.f.sf(f, k - 1, (k - 1) * (n - 1)))


def _nemenyi(ranks: pd.DataFrame) -> pd.DataFrame:
    import scikit_posthocs

    # Nemenyi reads only differences of average ranks, so re-ranking the ranks changes nothing.
    p = scikit_posthocs.posthoc_nemenyi_friedman(ranks.to_numpy())
    return pd.DataFrame(p.to_numpy(), index=ranks.columns, columns=ranks.columns)


def _pairwise(table, average, nemenyi, metric, higher, alpha, testable) -> pd.DataFrame:
    names = list(average.index)
    rows = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            diff = table[a] - table[b]
            better = diff > 0 if higher else diff < 0
            worse = diff < 0 if higher else diff > 0
            statistic = p = float("nan")
            if testable:
                result = stats.wilcoxon(table[a], table[b], zero_method="zsplit")
                statistic, p = float(result.statistic), float(result.pvalue)
            nemenyi_p = float(nemenyi.loc[a, b])
            rows.append(
                {
                    "metric": metric,
                    "variant_a": a,
                    "variant_b": b,
                    "n_datasets": len(table),
                    "mean_diff": float(diff.mean()),  # NaN when no data set is complete
                    "a_wins": int(better.sum()),
                    "ties": int((diff == 0).sum()),
                    "b_wins": int(worse.sum()),
                    "rank_diff": float(average[a] - average[b]),
                    "nemenyi_p": nemenyi_p,
                    "nemenyi_significant": bool(nemenyi_p < alpha),
                    "wilcoxon_statistic": statistic,
                    "wilcoxon_p": p,
                }
            )
    adjusted = holm([r["wilcoxon_p"] for r in rows])
    for row, p_holm in zip(rows, adjusted):
        row["wilcoxon_p_holm"] = float(p_holm)
        row["wilcoxon_significant"] = bool(p_holm < alpha)
    return pd.DataFrame(rows, columns=PAIRWISE_COLUMNS)
