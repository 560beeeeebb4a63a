"""The statistics behind a verdict: paired tests against scipy, Holm against statsmodels, the verdict
rules (direction of every metric), power, the CLI line and the group-sequential stopping rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.weightstats import ttost_paired

from harness import sequential, verdicts
from harness.metrics import LOWER_IS_BETTER, METRIC_NAMES, higher_is_better
from harness.verdicts import Comparison

# Skewed, asymmetric differences: Wilcoxon's p and the t-test's differ clearly on them.
SKEWED = np.array([0.031, 0.004, 0.052, -0.006, 0.019, 0.087, 0.011, -0.014, 0.026, 0.002, 0.044, 0.008])


# -- the paired test -----------------------------------------------------------------------------


def test_t_branch_matches_scipy_below_six_pairs():
    rng = np.random.default_rng(0)
    base = 0.5 + 0.02 * rng.standard_normal(5)
    variant = base + SKEWED[:5]
    name, p = verdicts.paired_test(variant, base)
    assert name == "paired t-test"
    assert p == pytest.approx(stats.ttest_rel(variant, base).pvalue, rel=1e-12)


@pytest.mark.parametrize("n", [6, 8, 12])
def test_wilcoxon_branch_matches_scipy_from_six_pairs(n):
    rng = np.random.default_rng(n)
    base = 0.5 + 0.02 * rng.standard_normal(n)
    variant = base + SKEWED[:n]
    name, p = verdicts.paired_test(variant, base)
    assert name == "Wilcoxon signed-rank"
    expected = stats.wilcoxon(variant - base).pvalue
    assert p == pytest.approx(expected, rel=1e-12)
    assert p != pytest.approx(stats.ttest_rel(variant, base).pvalue, rel=1e-3)  # the data tell the tests apart


def test_identical_results_are_no_evidence_and_a_constant_shift_is_not_tested():
    assert verdicts.paired_test([0.5, 0.6, 0.7], [0.5, 0.6, 0.7]) == ("paired t-test", 1.0)
    name, p = verdicts.paired_test([0.6, 0.7, 0.8], [0.5, 0.6, 0.7])
    assert name == verdicts.NO_TEST_CONSTANT and math.isnan(p)  # scipy's t would say p = 0
    assert math.isnan(verdicts.paired_test([0.6], [0.5])[1])


def test_holm_matches_statsmodels():
    rng = np.random.default_rng(3)
    for size in (1, 2, 3, 5, 9):
        p = rng.uniform(0, 0.2, size)
        p[rng.integers(size)] = p[0]  # a tie
        expected = multipletests(p, alpha=0.05, method="holm")[1]
        np.testing.assert_allclose(verdicts.holm(p), expected, rtol=1e-12)
    with_nan = np.array([0.01, np.nan, 0.04, 0.03])
    adjusted = verdicts.holm(with_nan)
    assert np.isnan(adjusted[1])
    np.testing.assert_allclose(adjusted[[0, 2, 3]], multipletests([0.01, 0.04, 0.03], method="holm")[1])


def test_holm_multiplies_hand_values():
    assert verdicts.holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])


# -- verdicts ------------------------------------------------------------------------------------


def _family(values: dict[str, np.ndarray], reference: np.ndarray, metric: str = "micro_f1", **kw):
    out = verdicts.compare_family({v: (x, reference) for v, x in values.items()}, metric, "carat", **kw)
    return {c.variant: c for c in out}


def test_a_copy_is_equivalent_and_a_degraded_model_worse_with_finite_mde():
    rng = np.random.default_rng(7)
    reference = 0.5 + 0.03 * rng.standard_normal(5)
    degraded = reference - 0.1 + 0.01 * rng.standard_normal(5)
    result = _family({"copy": reference.copy(), "degraded": degraded}, reference)
    assert result["copy"].verdict == "equivalent"
    assert result["degraded"].verdict == "worse" and result["degraded"].significant
    assert math.isfinite(result["degraded"].mde) and 0 < result["degraded"].mde < 0.1
    assert result["copy"].seeds_needed is None  # Δ = 0


def test_direction_of_every_metric():
    assert LOWER_IS_BETTER and LOWER_IS_BETTER <= set(METRIC_NAMES)
    assert not higher_is_better("hamming_loss") and not higher_is_better("test_hamming_loss")
    rng = np.random.default_rng(11)
    reference = 0.5 + 0.02 * rng.standard_normal(5)
    lower = reference - 0.1 + 0.005 * rng.standard_normal(5)  # the variant's metric is clearly lower
    for metric in METRIC_NAMES:
        c = _family({"v": lower}, reference, metric)["v"]
        expected = "better" if metric in LOWER_IS_BETTER else "worse"
        assert c.verdict == expected, metric
        higher = _family({"v": 2 * reference - lower}, reference, metric)["v"]  # mirrored: clearly higher
        assert higher.verdict == ("worse" if metric in LOWER_IS_BETTER else "better"), metric
    with pytest.raises(ValueError, match="unknown metric"):
        higher_is_better("loss_of_something")


def test_small_noise_inside_the_margin_is_equivalent_and_wide_noise_inconclusive():
    rng = np.random.default_rng(5)
    reference = 0.5 + 0.03 * rng.standard_normal(8)
    close = _family({"close": reference + 0.001 * rng.standard_normal(8)}, reference)["close"]
    assert close.verdict == "equivalent" and close.tost_p < 0.05
    noisy = _family({"noisy": reference + 0.05 * rng.standard_normal(8)}, reference)["noisy"]
    assert noisy.verdict == "inconclusive"
    assert noisy.seeds_needed is None or noisy.seeds_needed > 8


def test_tost_is_the_ninety_percent_interval_inside_the_margin():
    rng = np.random.default_rng(9)
    for _ in range(40):
        n = int(rng.integers(3, 12))
        diff = rng.normal(rng.uniform(-0.01, 0.01), rng.uniform(0.001, 0.01), n)
        low, high = verdicts.mean_ci(diff, confidence=0.90)
        inside = -0.01 < low and high < 0.01
        assert (verdicts.tost_p(diff, np.zeros(n), 0.01) < 0.05) == inside
        # by hand: the larger of the two one-sided t p-values
        se = diff.std(ddof=1) / math.sqrt(n)
        lower = stats.t.sf((diff.mean() + 0.01) / se, n - 1)
        upper = stats.t.cdf((diff.mean() - 0.01) / se, n - 1)
        assert verdicts.tost_p(diff, np.zeros(n), 0.01) == pytest.approx(max(lower, upper), rel=1e-9)
        base = rng.uniform(0.3, 0.6, n)
        expected = ttost_paired(base + diff, base, -0.01, 0.01)[0]
        assert verdicts.tost_p(base + diff, base, 0.01) == pytest.approx(expected, rel=1e-7)


def test_decide_rules():
    assert verdicts.decide(0.02, 0.01, 0.9, higher=True) == "better"
    assert verdicts.decide(0.02, 0.01, 0.9, higher=False) == "worse"
    assert verdicts.decide(-0.02, 0.01, 0.9, higher=True) == "worse"
    assert verdicts.decide(0.002, 0.6, 0.01, higher=True) == "equivalent"
    assert verdicts.decide(0.002, 0.6, 0.2, higher=True) == "inconclusive"
    assert verdicts.decide(0.0, float("nan"), float("nan"), higher=True, same_on_every_seed=True) == "equivalent"
    assert verdicts.decide(0.02, float("nan"), float("nan"), higher=True) == "inconclusive"


def test_one_pair_is_inconclusive():
    c = _family({"v": np.array([0.4])}, np.array([0.5]))["v"]
    assert c.verdict == "inconclusive" and c.seeds_needed is None and math.isnan(c.mde)


# -- power -----------------------------------------------------------------------------------------


def _t_power(effect: float, nobs: float, alpha: float = 0.05) -> float:
    """Two-sided power of the one-sample t-test, from scipy's noncentral t (independent of statsmodels)."""
    df = nobs - 1
    crit = stats.t.isf(alpha / 2, df)
    nc = effect * math.sqrt(nobs)
    return float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))


@pytest.mark.parametrize("n", [3, 5, 6, 10, 20])
def test_mde_has_eighty_percent_power_for_the_test_used(n):
    diff = SKEWED[: min(n, len(SKEWED))]
    diff = np.resize(diff, n) + np.linspace(0, 0.001, n)
    s = diff.std(ddof=1)
    nobs = n * 3 / math.pi if n >= 6 else n
    assert _t_power(verdicts.mde(diff) / s, nobs) == pytest.approx(0.8, abs=1e-4)


def test_wilcoxon_mde_is_detected_about_eighty_percent_of_the_time():
    rng = np.random.default_rng(13)
    n, s = 10, 0.02
    diff = rng.normal(0, s, n)
    shift = verdicts.mde(diff) * s / diff.std(ddof=1)  # the mde at exactly spread s
    hits = [stats.wilcoxon(rng.normal(shift, s, n)).pvalue < 0.05 for _ in range(600)]
    assert np.mean(hits) == pytest.approx(0.8, abs=0.06)  # ARE 3/pi is asymptotic; 600 draws: SE 0.016


def test_seeds_needed_is_the_smallest_n_with_eighty_percent_power():
    rng = np.random.default_rng(17)
    diff = rng.normal(0.01, 0.03, 5)
    needed = verdicts.seeds_needed(diff)
    effect = abs(diff.mean()) / diff.std(ddof=1)
    assert needed is not None and needed > 5
    assert verdicts.power_at(effect, needed) >= 0.8 > verdicts.power_at(effect, needed - 1)
    assert verdicts.power_at(effect, needed) == pytest.approx(_t_power(effect, needed * 3 / math.pi), rel=1e-6)


def test_seeds_needed_empty_without_a_difference_or_without_spread():
    assert verdicts.seeds_needed(np.array([0.01, -0.01, 0.02, -0.02, 0.0])) is None  # Δ = 0
    assert verdicts.seeds_needed(np.array([0.01, 0.01, 0.01])) is None  # no spread
    assert math.isnan(verdicts.mde(np.array([0.01, 0.01, 0.01])))


# -- the CLI line ----------------------------------------------------------------------------------


def _comparison(**kw) -> Comparison:
    fields = dict(
        variant="no_shuffle",
        reference="carat",
        metric="micro_f1",
        n_pairs=5,
        mean_diff=0.0173,
        ci_low=-0.0171,
        ci_high=0.0518,
        test="paired t-test",
        p=0.235,
        p_holm=0.235,
        tost_p=0.6,
        margin=0.01,
        verdict="inconclusive",
        mde=0.05,
        seeds_needed=40,
    )
    return Comparison(**{**fields, **kw})


def test_verdict_line_reads_as_the_issue_asks():
    line = verdicts.verdict_line(_comparison(), "micro-F1")
    assert line == (
        "no_shuffle vs carat, micro-F1: +0.017 [-0.017, +0.052] inconclusive "
        "(5 seeds detect |Δ| >= 0.050; about 40 would detect +0.017)"
    )
    identical = verdicts.verdict_line(
        _comparison(mean_diff=0.0, ci_low=0.0, ci_high=0.0, verdict="equivalent", mde=float("nan"), seeds_needed=None)
    )
    assert identical.startswith("no_shuffle vs carat, micro_f1: +0.000 equivalent") and "identical" in identical


def test_compare_seeds_pairs_by_seed_and_prints_lines():
    values = {
        "mine": {1: 0.50, 2: 0.55, 3: 0.52, 4: 0.58},
        "copy": {4: 0.58, 3: 0.52, 2: 0.55, 1: 0.50},  # the same results, listed in another order
        "worse": {1: 0.40, 2: 0.46, 3: 0.41, 5: 0.9},  # seed 5 has no partner: left out
    }
    result = {c.variant: c for c in verdicts.compare_seeds(values, "micro_f1")}
    assert result["copy"].reference == "mine" and result["copy"].verdict == "equivalent"
    assert result["worse"].n_pairs == 3 and result["worse"].verdict == "worse"
    assert result["worse"].mean_diff == pytest.approx(np.mean([-0.10, -0.09, -0.11]))
    line = verdicts.verdict_line(result["worse"], "micro-F1")
    assert line.startswith("worse vs mine, micro-F1: -0.100 [") and "worse (3 seeds detect |Δ| >= " in line
    with pytest.raises(ValueError, match=r"^reference: 'carat' is not a variant of the study \(mine, copy, worse\)"):
        verdicts.compare_seeds(values, "micro_f1", reference="carat")


def test_default_reference():
    assert verdicts.default_reference(["no_shuffle", "carat"]) == "carat"
    assert verdicts.default_reference(["mine", "mine_small"]) == "mine"
    assert verdicts.default_reference([]) is None


# -- group-sequential stopping -----------------------------------------------------------------------

LOOKS = (5, 10, 15, 20)


def test_boundary_spends_alpha_as_obrien_fleming_says():
    b = sequential.boundary(LOOKS, 20)
    t = np.array(LOOKS) / 20
    np.testing.assert_allclose(b.spent, 2 - 2 * stats.norm.cdf(1.959964 / np.sqrt(t)), rtol=1e-5)
    assert b.z[0] == pytest.approx(stats.norm.isf(b.spent[0] / 2))
    assert list(b.z) == sorted(b.z, reverse=True) and b.nominal[-1] < 0.05
    # Crossing probabilities of a simulated Brownian motion match what was spent at each look.
    rng = np.random.default_rng(0)
    z = np.cumsum(rng.standard_normal((400_000, len(LOOKS))) * np.sqrt(np.diff(np.r_[0, t])), axis=1) / np.sqrt(t)
    crossed = np.maximum.accumulate(np.abs(z) >= np.array(b.z), axis=1).mean(axis=0)
    np.testing.assert_allclose(crossed, b.spent, atol=0.0015)


def test_boundary_refuses_bad_looks():
    with pytest.raises(ValueError, match="looks"):
        sequential.boundary((10, 5), 20)
    with pytest.raises(ValueError, match="looks"):
        sequential.boundary((5, 25), 20)


def _simulate(shift: float, n_studies: int, seed: int, spread: float = 0.03):
    """Sequential and naive (p < 0.05 at any look) decisions over simulated studies of one comparison."""
    rng = np.random.default_rng(seed)
    decided, naive = [], []
    for _ in range(n_studies):
        diff = rng.normal(shift, spread, LOOKS[-1])
        settled, _ = sequential.settle({"v": diff}, LOOKS, LOOKS[-1], "micro_f1")
        decided.append(settled["v"].verdict)
        naive.append(any(verdicts.paired_test(diff[:n], np.zeros(n))[1] < 0.05 for n in LOOKS))
    return np.array(decided), np.array(naive)


def test_sequential_false_positive_rate_is_at_most_alpha_and_naive_looks_exceed_it():
    n_studies = 300  # about 5 s on a loaded 2-core machine; the slow test below runs 2000
    decided, naive = _simulate(0.0, n_studies, seed=2026)
    error = 2.5 * math.sqrt(0.05 * 0.95 / n_studies)  # 2.5 standard errors of a rate of 0.05
    false_positive = np.isin(decided, ["better", "worse"]).mean()
    assert false_positive <= 0.05 + error
    assert naive.mean() > 0.05 + error  # looking four times without a correction: the test has teeth


@pytest.mark.slow
def test_sequential_family_wise_rate_over_three_comparisons_and_six_looks():
    looks, rng, n_studies, hits = (5, 10, 15, 20, 25, 30), np.random.default_rng(1), 2000, 0
    for _ in range(n_studies):
        diffs = {name: rng.normal(0, 0.03, 30) for name in ("a", "b", "c")}
        settled, _ = sequential.settle(diffs, looks, 30, "micro_f1")
        hits += any(r.verdict in ("better", "worse") for r in settled.values())
    assert hits / n_studies <= 0.05 + 2.5 * math.sqrt(0.05 * 0.95 / n_studies)


def test_sequential_false_equivalence_at_the_margin_is_at_most_alpha():
    rng = np.random.default_rng(4)
    n_studies, hits = 200, 0
    for _ in range(n_studies):
        diff = rng.normal(0.01, 0.005, LOOKS[-1])  # the true difference sits on the margin: not equivalent
        hits += sequential.settle({"v": diff}, LOOKS, LOOKS[-1], "micro_f1")[0]["v"].verdict == "equivalent"
    assert hits / n_studies <= 0.05 + 2.5 * math.sqrt(0.05 * 0.95 / n_studies)


def test_sequential_settles_clear_cases_early_and_reads_resumed_looks_the_same():
    rng = np.random.default_rng(8)
    diffs = {
        "degraded": rng.normal(-0.08, 0.01, 20),
        "copy": np.zeros(20),
        "close": rng.normal(0.0, 0.002, 20),
        "noise": rng.normal(0.0, 0.05, 20),
    }
    settled, used = sequential.settle(diffs, LOOKS, 20, "micro_f1")
    assert settled["degraded"].verdict == "worse" and settled["degraded"].look is not None
    assert settled["degraded"].look < len(LOOKS) - 1  # settled before the last round
    assert settled["copy"].verdict == "equivalent" and settled["copy"].look == 0
    assert settled["close"].verdict == "equivalent"
    assert settled["noise"].verdict == "inconclusive" and not settled["noise"].settled
    assert used.looks == LOOKS and used.max_n == 20
    hl = sequential.settle({"degraded": diffs["degraded"]}, LOOKS, 20, "hamming_loss")[0]["degraded"]
    assert hl.verdict == "better"  # a lower Hamming loss
    # An interrupted run resumed after two looks reaches the same verdicts for what those looks settled.
    early, _ = sequential.settle({k: v[:10] for k, v in diffs.items()}, LOOKS[:2], 20, "micro_f1")
    for name, r in early.items():
        if r.settled:
            assert settled[name] == r
