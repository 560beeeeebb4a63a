"""How sure is an ablation's claim? Paired tests, verdicts and power.

Pure statistics over plain arrays, imported by both the study runner (its CLI summary and
``--until-settled``) and the report (``reports/significance.py``); it imports nothing of either.

Paired test. Runs are paired by seed (same seed = same split and initialisation stream). With
fewer than 6 pairs the Wilcoxon signed-rank test cannot reach p < 0.05 at all (its smallest
two-sided p with 5 pairs is 2/32 = 0.0625), so the paired t-test is used there; from 6 pairs
on, Wilcoxon (no normality assumption). Holm's step-down correction runs across the
comparisons of one family (the variants compared with the reference on one metric).

Verdict of one comparison (variant − reference on one metric), in this order:

* ``better`` / ``worse``: the Holm-adjusted p is below alpha; the sign of the mean difference,
  read through the metric's direction (``harness.metrics.higher_is_better``: Hamming loss is
  lower-is-better), says which.
* ``equivalent``: identical results on every seed, or two one-sided paired t-tests (TOST,
  ``statsmodels.stats.weightstats.ttost_paired``, written out here) reject |Δ| >= margin at alpha, i.e. the
  (1 − 2 alpha) = 90 % t-interval of the mean paired difference lies inside ± margin. TOST is
  an intersection-union test: each equivalence claim holds at alpha on its own, so no Holm.
* ``inconclusive``: everything else, including fewer than 2 pairs and a difference that is the
  same non-zero number on every seed (no spread: nothing to test, see ``constant``).

Default margin 0.01: every metric the harness reports lies in [0, 1], and one point (0.01) is
below the gains papers in this line of work claim for a component (CARAT's ablations differ
from the full model by 1-4 points of micro-F1) while above the test-sample noise of the
synthetic data sets' default test split (bootstrap SE about 0.006 of micro-F1 at 1 000
samples). A study with another scale sets its own ``equivalence_margin``.

Power, from the observed spread s of the paired differences (ddof = 1), at alpha = 0.05 and
80 % power, for ONE comparison (Holm across k comparisons needs more):

* paired t (below 6 pairs): the noncentral t, ``statsmodels.stats.power.TTestPower``:
  ``mde = d * s`` with d the effect size the n pairs detect;
* Wilcoxon (6 pairs or more): the same with n * 3/pi pairs, 3/pi ~ 0.955 being the Wilcoxon
  test's asymptotic relative efficiency to the t-test under normal differences (Lehmann
  1975): Wilcoxon with n pairs has about the power of the t-test with 0.955 n.
* ``seeds_needed``: the smallest n whose test (t below 6, Wilcoxon from 6, as above) detects
  the observed |Δ| with 80 % power; None where Δ = 0 or s = 0.

The sequential stopping rule of ``--until-settled`` is ``harness.sequential``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats
from statsmodels.stats.power import TTestPower

from harness.metrics import higher_is_better

ALPHA = 0.05
POWER = 0.8
CONFIDENCE = 0.95
MIN_PAIRS_WILCOXON = 6
WILCOXON_ARE = 3.0 / math.pi  # Wilcoxon signed-rank vs t under normality
DEFAULT_EQUIVALENCE_MARGIN = 0.01
CONSTANT_ATOL = 1e-9  # metrics are logged as floats: a deterministic model repeats them exactly
MAX_SEEDS_SEARCHED = 100_000  # beyond this, seeds_needed is None: no study runs that many
VERDICTS = ("better", "worse", "equivalent", "inconclusive")
NO_TEST_FEW = "none (fewer than 2 pairs)"
NO_TEST_CONSTANT = "none (the same difference on every seed)"
T_TEST = "paired t-test"
WILCOXON = "Wilcoxon signed-rank"


def default_reference(variants: Sequence[str]) -> str | None:
    """The variant the others are compared with when a study names none: ``carat`` when present, else
    the first variant listed (None when there are none)."""
    names = list(dict.fromkeys(variants))
    if "carat" in names:
        return "carat"
    return names[0] if names else None


# -- the paired test, Holm -------------------------------------------------------------------


def test_name(n_pairs: int) -> str:
    """The test used for n pairs: Wilcoxon from 6 pairs on, the paired t-test below."""
    return WILCOXON if n_pairs >= MIN_PAIRS_WILCOXON else T_TEST


test_name.__test__ = False  # a helper, not a pytest test


def constant(values) -> bool:
    """Whether every value is the same (to float noise): no spread across seeds."""
    values = np.asarray(values, float)
    return len(values) > 1 and bool(np.allclose(values, values[0], rtol=0.0, atol=CONSTANT_ATOL))


def identical(variant, reference) -> bool:
    """Whether the two give the same result on every seed (at least one pair)."""
    diff = np.asarray(variant, float) - np.asarray(reference, float)
    return len(diff) > 0 and bool(np.allclose(diff, 0.0, rtol=0.0, atol=CONSTANT_ATOL))


def paired_test(variant, reference) -> tuple[str, float]:
    """(test name, two-sided p) of variant vs reference, paired; p is NaN with fewer than 2 pairs
    and when every difference is the same non-zero number (scipy's t would be infinite: an artefact)."""
    a, b = _pair(variant, reference)
    diff = a - b
    if len(diff) < 2:
        return NO_TEST_FEW, float("nan")
    if identical(a, b):
        return test_name(len(diff)), 1.0  # identical results: no evidence of a difference
    if constant(diff):
        return NO_TEST_CONSTANT, float("nan")
    if len(diff) >= MIN_PAIRS_WILCOXON:
        return WILCOXON, float(stats.wilcoxon(diff).pvalue)
    return T_TEST, float(stats.ttest_rel(a, b).pvalue)


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


def mean_ci(diff, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Two-sided t-interval of the mean of paired differences: mean ± t_{(1+c)/2, n-1} * s / sqrt(n)
    (NaN with fewer than 2 pairs; zero width when every difference is the same)."""
    diff = np.asarray(diff, float)
    if len(diff) < 2:
        return float("nan"), float("nan")
    mean = float(np.mean(diff))
    half = float(stats.t.ppf((1 + confidence) / 2, len(diff) - 1) * np.std(diff, ddof=1) / np.sqrt(len(diff)))
    return mean - half, mean + half


def tost_p(variant, reference, margin: float) -> float:
    """p of the two one-sided paired t-tests of H0: |mean(variant − reference)| >= margin (the larger of
    the two one-sided p); below alpha exactly when the (1 − 2 alpha) t-interval lies inside ± margin.
    0 for identical results, NaN with fewer than 2 pairs or a constant non-zero difference."""
    check_margin(margin)
    a, b = _pair(variant, reference)
    if len(a) < 2:
        return float("nan")
    if identical(a, b):
        return 0.0
    if constant(a - b):
        return float("nan")
    diff = a - b
    n, mean = len(diff), float(np.mean(diff))
    se = float(np.std(diff, ddof=1)) / math.sqrt(n)
    # = statsmodels.stats.weightstats.ttost_paired(a, b, -margin, margin)[0] (tested), at a tenth of its cost:
    # the sequential procedure calls this at every look of every simulated study.
    above_low = float(stats.t.sf((mean + margin) / se, n - 1))  # H0: mean <= -margin
    below_high = float(stats.t.cdf((mean - margin) / se, n - 1))  # H0: mean >= +margin
    return max(above_low, below_high)


# -- power -------------------------------------------------------------------------------------


def _effective_pairs(n_pairs: int) -> float:
    """Pairs of a t-test with the power of the test used on n pairs (Wilcoxon: n * 3/pi)."""
    return n_pairs * WILCOXON_ARE if n_pairs >= MIN_PAIRS_WILCOXON else float(n_pairs)


def mde(diff, alpha: float = ALPHA, power: float = POWER) -> float:
    """Smallest |Δ| the pairs at hand detect with ``power`` at two-sided ``alpha``, for the test used
    (see the module's docstring); NaN with fewer than 2 pairs or no spread."""
    diff = np.asarray(diff, float)
    if len(diff) < 2 or constant(diff):
        return float("nan")
    nobs = _effective_pairs(len(diff))
    if nobs < 2:  # cannot happen (Wilcoxon starts at 6), kept for a changed threshold
        return float("nan")
    if alpha >= power:  # even Δ = 0 is "detected" that often: there is no smallest effect to solve for
        return 0.0
    d = TTestPower().solve_power(effect_size=None, nobs=nobs, alpha=alpha, power=power, alternative="two-sided")
    return float(np.squeeze(d)) * float(np.std(diff, ddof=1))


def power_at(effect_size: float, n_pairs: int, alpha: float = ALPHA) -> float:
    """Power of the test used on n pairs to detect a standardised effect |Δ| / s."""
    nobs = _effective_pairs(n_pairs)
    power = float(TTestPower().power(abs(effect_size), nobs, alpha, alternative="two-sided"))
    if math.isnan(power):  # statsmodels' noncentral t fails at large noncentrality, even at 2 pairs
        power = _t_power_by_integration(abs(effect_size), nobs, alpha)
    return power


def _t_power_by_integration(effect_size: float, nobs: float, alpha: float) -> float:
    """Two-sided power of the one-sample t-test, P(|Z + nc| >= c S) with S = sqrt(chi2_df / df), integrated
    over the quantiles of S (smooth on [0, 1] whatever df is; the normal limit overstates few pairs' power)."""
    from scipy import integrate  # only for this rare path

    df = nobs - 1
    crit, shift = float(stats.t.isf(alpha / 2, df)), effect_size * math.sqrt(nobs)

    def rejected(q: float) -> float:
        edge = crit * float(stats.chi.ppf(q, df)) / math.sqrt(df)
        return float(stats.norm.sf(edge - shift) + stats.norm.cdf(-edge - shift))

    return float(integrate.quad(rejected, 0.0, 1.0, limit=200)[0])


def seeds_needed(diff, alpha: float = ALPHA, power: float = POWER) -> int | None:
    """Paired seeds needed to detect the observed mean difference with ``power`` (test used at that n);
    None where Δ = 0, there is no spread or fewer than 2 pairs, or more than MAX_SEEDS_SEARCHED."""
    diff = np.asarray(diff, float)
    if len(diff) < 2 or constant(diff) or abs(float(np.mean(diff))) <= CONSTANT_ATOL:
        return None
    effect = abs(float(np.mean(diff))) / float(np.std(diff, ddof=1))
    if power_at(effect, MAX_SEEDS_SEARCHED, alpha) < power:
        return None
    low, high = 2, MAX_SEEDS_SEARCHED  # power is not monotone across the t -> Wilcoxon switch: search each side
    if power_at(effect, low, alpha) >= power:
        return low
    for lo, hi in ((2, MIN_PAIRS_WILCOXON - 1), (MIN_PAIRS_WILCOXON, high)):
        if power_at(effect, hi, alpha) >= power:
            while lo < hi:  # smallest n in [lo, hi] with enough power (monotone within one test)
                mid = (lo + hi) // 2
                lo, hi = (mid + 1, hi) if power_at(effect, mid, alpha) < power else (lo, mid)
            return lo
    return None


# -- verdicts ----------------------------------------------------------------------------------


def decide(
    mean_diff: float,
    p_holm: float,
    tost: float,
    higher: bool,
    same_on_every_seed: bool = False,
    alpha: float = ALPHA,
) -> str:
    """The verdict rule (module docstring): better/worse when the Holm-adjusted p < alpha (direction
    from ``higher``: is a larger metric better), else equivalent when identical or TOST p < alpha, else
    inconclusive."""
    if same_on_every_seed:
        return "equivalent"
    if not np.isnan(p_holm) and p_holm < alpha and mean_diff != 0:
        return "better" if (mean_diff > 0) == higher else "worse"
    if not np.isnan(tost) and tost < alpha:
        return "equivalent"
    return "inconclusive"


@dataclass(frozen=True)
class Comparison:
    """One variant against the reference on one metric, over the seeds both have (plain data)."""

    variant: str
    reference: str
    metric: str
    n_pairs: int
    mean_diff: float  # mean of variant − reference
    ci_low: float  # 95 % t-interval of the mean difference
    ci_high: float
    test: str
    p: float
    p_holm: float
    tost_p: float
    margin: float
    verdict: str
    mde: float
    seeds_needed: int | None

    @property
    def significant(self) -> bool:
        return self.verdict in ("better", "worse")


def compare_family(
    pairs: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    metric: str,
    reference: str,
    margin: float = DEFAULT_EQUIVALENCE_MARGIN,
    alpha: float = ALPHA,
) -> list[Comparison]:
    """Verdicts of one family: ``pairs`` maps each variant to (its values, the reference's values) on
    the seeds both have, in the same seed order; Holm runs across the family's p-values."""
    check_margin(margin)
    higher = higher_is_better(metric)
    rows = []
    for variant, (values, base) in pairs.items():
        a, b = _pair(values, base)
        test, p = paired_test(a, b)
        low, high = mean_ci(a - b)
        rows.append((variant, a, b, test, p, low, high))
    adjusted = holm([r[4] for r in rows])
    out = []
    for (variant, a, b, test, p, low, high), p_holm in zip(rows, adjusted):
        diff = a - b
        mean = float(np.mean(diff)) if len(diff) else float("nan")
        tost = tost_p(a, b, margin)
        same = len(diff) >= 2 and identical(a, b)
        out.append(
            Comparison(
                variant=variant,
                reference=reference,
                metric=metric,
                n_pairs=len(diff),
                mean_diff=mean,
                ci_low=low,
                ci_high=high,
                test=test,
                p=p,
                p_holm=float(p_holm),
                tost_p=tost,
                margin=margin,
                verdict=decide(mean, float(p_holm), tost, higher, same, alpha) if len(diff) >= 2 else "inconclusive",
                mde=mde(diff, alpha),
                seeds_needed=seeds_needed(diff, alpha),
            )
        )
    return out


def compare_seeds(
    values: Mapping[str, Mapping[int, float]],
    metric: str,
    reference: str | None = None,
    margin: float = DEFAULT_EQUIVALENCE_MARGIN,
    alpha: float = ALPHA,
) -> list[Comparison]:
    """Every variant against the reference on one metric, from ``{variant: {seed: value}}`` (the study
    runner's finished runs): paired on the seeds both have; ``reference`` defaults to
    ``default_reference``. One that names no variant is refused with a line naming the field."""
    names = list(values)
    reference = default_reference(names) if reference is None else reference
    if reference not in values:
        raise ValueError(f"reference: {reference!r} is not a variant of the study ({', '.join(names)})")
    base = values[reference]
    pairs = {}
    for variant, by_seed in values.items():
        if variant == reference:
            continue
        seeds = sorted(set(by_seed) & set(base))
        pairs[variant] = ([by_seed[s] for s in seeds], [base[s] for s in seeds])
    return compare_family(pairs, metric, reference, margin, alpha)


def verdict_line(c: Comparison, metric_title: str | None = None) -> str:
    """The CLI's one line, e.g. ``no_shuffle vs carat, micro-F1: +0.017 [-0.017, +0.052] inconclusive
    (5 seeds detect |Δ| >= 0.050; about 40 would detect +0.017)``."""
    name = metric_title or c.metric
    interval = (
        "" if np.isnan(c.ci_low) or c.ci_high - c.ci_low < CONSTANT_ATOL else f" [{c.ci_low:+.3f}, {c.ci_high:+.3f}]"
    )
    head = f"{c.variant} vs {c.reference}, {name}: {c.mean_diff:+.3f}{interval} {c.verdict}"
    seeds = f"{c.n_pairs} seed{'s' if c.n_pairs != 1 else ''}"
    if c.n_pairs < 2:
        return f"{head} ({seeds}: at least 2 paired seeds are needed to test)"
    if np.isnan(c.mde):
        why = "identical on every seed" if c.verdict == "equivalent" else "the same difference on every seed"
        return f"{head} ({seeds}, {why}: no spread to test)"
    detect = f"{seeds} detect |Δ| >= {c.mde:.3f}"
    if c.seeds_needed is None:
        return f"{head} ({detect})"
    if c.seeds_needed <= c.n_pairs:
        return f"{head} ({detect}; {c.n_pairs} were enough to detect {c.mean_diff:+.3f} with 80 % power)"
    return f"{head} ({detect}; about {c.seeds_needed} would detect {c.mean_diff:+.3f})"


# -- checks ------------------------------------------------------------------------------------


def _pair(variant, reference) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(variant, float).ravel()
    b = np.asarray(reference, float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired values must have the same length, got {len(a)} and {len(b)}")
    return a, b


def check_margin(margin: float) -> None:
    if not (isinstance(margin, int | float) and math.isfinite(margin) and margin > 0):
        raise ValueError(f"equivalence_margin must be a positive number, got {margin!r}")
