"""The cross-data-set verdict: ranks and tests checked by hand and against scipy, odd inputs, the files."""

import math

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from reports import rank_tables, ranks
from reports.significance import holm

# 3 variants x 4 data sets, higher is better. Ranks per data set (1 = best):
#   d1: a 1, b 2, c 3   d2: a 2, b 1, c 3   d3: a 1, b 3, c 2   d4: a 1, b 2.5, c 2.5 (b and c tie)
# so the average ranks are a 1.25, b 2.125, c 2.625.
HAND = {
    "d1": {"a": 0.9, "b": 0.8, "c": 0.7},
    "d2": {"a": 0.8, "b": 0.9, "c": 0.7},
    "d3": {"a": 0.9, "b": 0.7, "c": 0.8},
    "d4": {"a": 0.9, "b": 0.8, "c": 0.8},
}


def frame(table: dict, metric: str = "micro_f1") -> pd.DataFrame:
    return pd.DataFrame(
        [{"dataset": d, "variant": v, metric: score} for d, row in table.items() for v, score in row.items()]
    )


def random_frame(n_datasets: int, variants, seed: int = 0, metric: str = "micro_f1") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return frame(
        {f"d{i}": {v: 0.5 + 0.05 * j + rng.normal(0, 0.04) for j, v in enumerate(variants)} for i in range(n_datasets)},
        metric,
    )


def test_average_ranks_by_hand_with_ties():
    result = ranks.verdict(frame(HAND), "micro_f1")
    assert result.ranks.loc["d4"].tolist() == [1.0, 2.5, 2.5]
    assert result.average_ranks.to_dict() == {"a": 1.25, "b": 2.125, "c": 2.625}
    assert result.variants == ["a", "b", "c"]  # best first
    assert result.n_datasets == 4


def test_lower_is_better_reverses_the_ranks():
    higher = ranks.verdict(frame(HAND), "micro_f1", higher_is_better=True)
    lower = ranks.verdict(frame(HAND), "micro_f1", higher_is_better=False)
    pd.testing.assert_frame_equal(lower.ranks, 4 - higher.ranks)  # k + 1 - rank
    assert lower.variants == ["c", "b", "a"]
    assert lower.friedman_chi2 == pytest.approx(higher.friedman_chi2)


def test_friedman_matches_scipy_and_demsar_formula_without_ties():
    scores = random_frame(7, ["a", "b", "c", "d"], seed=3)
    result = ranks.verdict(scores, "micro_f1")
    table = scores.pivot(index="dataset", columns="variant", values="micro_f1")
    expected = stats.friedmanchisquare(*(table[c] for c in table.columns))
    assert result.friedman_chi2 == pytest.approx(expected.statistic)
    assert result.friedman_p == pytest.approx(expected.pvalue)
    n, k = 7, 4
    r = result.average_ranks
    demsar = 12 * n / (k * (k + 1)) * ((r**2).sum() - k * (k + 1) ** 2 / 4)  # no ties: the same statistic
    assert result.friedman_chi2 == pytest.approx(demsar)
    f = (n - 1) * demsar / (n * (k - 1) - demsar)
    assert result.iman_davenport_f == pytest.approx(f)
    assert result.iman_davenport_p == pytest.approx(stats.f.sf(f, k - 1, (k - 1) * (n - 1)))


def test_friedman_with_ties_matches_scipy():
    result = ranks.verdict(frame(HAND), "micro_f1")
    expected = stats.friedmanchisquare([0.9, 0.8, 0.9, 0.9], [0.8, 0.9, 0.7, 0.8], [0.7, 0.7, 0.8, 0.8])
    assert result.friedman_chi2 == pytest.approx(expected.statistic)
    assert result.friedman_p == pytest.approx(expected.pvalue)


def test_demsar_iman_davenport_example():
    # Demšar 2006, section 3.2.4: 4 classifiers on 14 data sets, chi2_F = 9.28 gives F_F = 3.69.
    f, _ = ranks._iman_davenport(9.28, 14, 4)
    assert f == pytest.approx(3.69, abs=0.005)


@pytest.mark.parametrize(
    "k, q",
    [(2, 1.960), (3, 2.343), (4, 2.569), (5, 2.728), (6, 2.850), (7, 2.949), (8, 3.031), (9, 3.102), (10, 3.164)],
)
def test_q_alpha_and_cd_match_demsar_table_5(k, q):
    scores = random_frame(6, [f"v{i}" for i in range(k)], seed=k)
    result = ranks.verdict(scores, "micro_f1")
    assert result.q_alpha == pytest.approx(q, abs=1e-3)
    assert result.cd == pytest.approx(result.q_alpha * math.sqrt(k * (k + 1) / (6 * 6)))


def test_nemenyi_p_values_by_formula():
    result = ranks.verdict(frame(HAND), "micro_f1")
    k, n = 3, 4
    z = (2.625 - 1.25) / math.sqrt(k * (k + 1) / (6 * n))
    assert result.nemenyi.loc["a", "c"] == pytest.approx(stats.studentized_range.sf(z * math.sqrt(2), k, np.inf))
    assert result.nemenyi.loc["c", "a"] == result.nemenyi.loc["a", "c"]
    assert np.diag(result.nemenyi).tolist() == [1.0, 1.0, 1.0]
    assert result.cd == pytest.approx(2.343 * math.sqrt(12 / 24), abs=1e-3)


def test_pairwise_wilcoxon_holm_and_wins():
    scores = random_frame(8, ["a", "b", "c"], seed=5)
    result = ranks.verdict(scores, "micro_f1")
    table = scores.pivot(index="dataset", columns="variant", values="micro_f1")
    pairs = result.pairwise.set_index(["variant_a", "variant_b"])
    assert len(pairs) == 3 and (pairs["n_datasets"] == 8).all()
    raw = []
    for (a, b), row in pairs.iterrows():
        expected = stats.wilcoxon(table[a], table[b], zero_method="zsplit")
        assert row["wilcoxon_p"] == pytest.approx(expected.pvalue)
        assert row["mean_diff"] == pytest.approx((table[a] - table[b]).mean())
        assert row["a_wins"] == (table[a] > table[b]).sum() and row["ties"] == 0
        assert row["a_wins"] + row["b_wins"] == 8
        assert row["rank_diff"] <= 0  # the better-ranked variant comes first
        raw.append(row["wilcoxon_p"])
    np.testing.assert_allclose(pairs["wilcoxon_p_holm"], holm(raw))
    # and against statsmodels, so that a Holm that does not multiply (or does not step down) fails here
    np.testing.assert_allclose(pairs["wilcoxon_p_holm"], multipletests(raw, alpha=0.05, method="holm")[1])
    assert (pairs["wilcoxon_p_holm"] > pairs["wilcoxon_p"]).any()  # the family is corrected at all
    assert (pairs["wilcoxon_significant"] == (pairs["wilcoxon_p_holm"] < 0.05)).all()


def test_holm_against_statsmodels_and_hand_values():
    rng = np.random.default_rng(12)
    for size in (2, 3, 6, 10):
        p = rng.uniform(0.001, 0.1, size)
        np.testing.assert_allclose(holm(p), multipletests(p, method="holm")[1], rtol=1e-12)
    assert holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])


@pytest.mark.parametrize("n, k", [(2, 3), (3, 3), (4, 3), (5, 2), (6, 2), (6, 4), (7, 3), (3, 6)])
def test_undetectable_is_flagged_exactly_when_even_a_perfect_ordering_cannot_differ(n, k):
    """With every data set ranking the variants the same way (the largest possible rank difference and the
    smallest possible Wilcoxon p), the best-vs-worst pair is significant exactly when the test is not
    flagged undetectable."""
    names = [f"v{j}" for j in range(k)]
    table = {f"d{i}": {v: 0.9 - 0.1 * j - 0.001 * i * j for j, v in enumerate(names)} for i in range(n)}
    result = ranks.verdict(frame(table), "micro_f1")
    pair = result.pairwise.set_index(["variant_a", "variant_b"]).loc[(names[0], names[-1])]
    assert pair["rank_diff"] == pytest.approx(-(k - 1))
    assert bool(pair["nemenyi_significant"]) == ("nemenyi" not in result.undetectable)
    assert bool(pair["wilcoxon_significant"]) == ("wilcoxon-holm" not in result.undetectable)
    if "nemenyi" in result.undetectable:
        assert any("no pair can differ under Nemenyi" in note for note in result.notes)
    if "wilcoxon-holm" in result.undetectable:
        assert any("no pair can be significant under Wilcoxon-Holm" in note for note in result.notes)
    assert rank_tables.rank_frame([result])["undetectable"].iloc[0] == " ".join(result.undetectable)


def test_undetectable_cases_by_hand():
    assert ranks.verdict(frame(HAND), "micro_f1").undetectable == ("wilcoxon-holm",)  # 3 x 2/16 >= 0.05
    two = {d: HAND[d] for d in ("d1", "d2")}
    assert ranks.verdict(frame(two), "micro_f1").undetectable == ("nemenyi", "wilcoxon-holm")  # CD 2.34 > 2
    assert ranks.verdict(random_frame(10, ["a", "b", "c"]), "micro_f1").undetectable == ()


def test_clear_winner_is_found():
    rng = np.random.default_rng(1)
    table = {
        f"d{i}": {"good": 0.8 + rng.normal(0, 0.01), "mid": 0.6 + rng.normal(0, 0.01), "bad": 0.4 + rng.normal(0, 0.01)}
        for i in range(12)
    }
    result = ranks.verdict(frame(table), "micro_f1")
    assert result.variants == ["good", "mid", "bad"]
    assert result.differ and result.iman_davenport_f == math.inf and result.iman_davenport_p == 0.0
    pair = result.pairwise.set_index(["variant_a", "variant_b"]).loc[("good", "bad")]
    assert pair["nemenyi_significant"] and pair["wilcoxon_significant"] and pair["a_wins"] == 12


def test_missing_score_drops_the_data_set_with_a_note():
    scores = frame(HAND)
    scores = scores[~((scores["dataset"] == "d2") & (scores["variant"] == "b"))]
    scores.loc[(scores["dataset"] == "d3") & (scores["variant"] == "c"), "micro_f1"] = np.nan
    result = ranks.verdict(scores, "micro_f1")
    assert list(result.ranks.index) == ["d1", "d4"]
    assert result.dropped == {"d2": ["b"], "d3": ["c"]}
    assert any("'d2' is left out: no score for b" in note for note in result.notes)


def test_repeated_rows_are_refused_with_the_fix():
    scores = pd.concat([frame(HAND), frame(HAND).iloc[:1]])
    with pytest.raises(ValueError, match=r"one row per \(dataset, variant\); repeated: \(d1, a\).*groupby"):
        ranks.verdict(scores, "micro_f1")


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="lack column"):
        ranks.verdict(frame(HAND), "macro_f1")
    bad = frame(HAND).astype({"micro_f1": object})
    bad.loc[0, "micro_f1"] = "high"
    with pytest.raises(ValueError, match="non-numeric"):
        ranks.verdict(bad, "micro_f1")
    with pytest.raises(ValueError, match="alpha"):
        ranks.verdict(frame(HAND), "micro_f1", alpha=5)


@pytest.mark.parametrize(
    "table",
    [{"d1": HAND["d1"]}, {d: {"a": r["a"]} for d, r in HAND.items()}, {}],
    ids=["one data set", "one variant", "nothing"],
)
def test_too_little_to_test_gives_nan_and_a_note(table, tmp_path):
    scores = frame(table) if table else pd.DataFrame(columns=["dataset", "variant", "micro_f1"])
    result = ranks.verdict(scores, "micro_f1")
    assert math.isnan(result.friedman_p) and math.isnan(result.cd) and math.isnan(result.iman_davenport_p)
    assert not result.differ
    assert result.pairwise["wilcoxon_p"].isna().all() and result.pairwise["nemenyi_p"].isna().all()
    assert any("need at least 2 variants and 2 complete data sets" in note for note in result.notes)
    paths = rank_tables.write([result], tmp_path)
    assert {p.name for p in paths} == {"ranks.csv", "ranks_pairwise.csv", "ranks.md"}  # no diagram to draw
    assert "need at least 2 variants" in (tmp_path / "ranks.md").read_text()


def test_two_variants_skip_friedman_but_test_the_pair():
    scores = random_frame(7, ["a", "b"], seed=2)
    result = ranks.verdict(scores, "micro_f1")
    assert math.isnan(result.friedman_p)
    assert result.cd == pytest.approx(1.960 / math.sqrt(7), abs=1e-3)
    assert len(result.pairwise) == 1 and not math.isnan(result.pairwise["wilcoxon_p"].iloc[0])
    assert any("Two variants" in note for note in result.notes)


def test_few_data_sets_are_flagged_as_weak():
    result = ranks.verdict(frame(HAND), "micro_f1")
    assert any("Only 4 data sets" in note for note in result.notes)
    assert any("smallest possible adjusted p is 3 x 2/2^4" in note for note in result.notes)
    many = ranks.verdict(random_frame(10, ["a", "b", "c"]), "micro_f1")
    assert many.notes == ()


def test_all_ties_is_undefined_not_a_crash():
    table = {d: {"a": 0.5, "b": 0.5, "c": 0.5} for d in ("d1", "d2", "d3")}
    result = ranks.verdict(frame(table), "micro_f1")
    assert math.isnan(result.friedman_chi2) and math.isnan(result.friedman_p)
    assert (result.average_ranks == 2.0).all()
    assert result.pairwise["wilcoxon_p"].tolist() == [1.0, 1.0, 1.0]
    assert any("ties on every data set" in note for note in result.notes)


def test_write_tables_and_diagrams(tmp_path):
    scores = random_frame(8, ["carat", "mean_pool_mlp", "br", "late_fusion"], seed=4)
    scores["hamming_loss"] = 1 - scores["micro_f1"]
    results = ranks.verdicts(scores, [("micro_f1", True), ("hamming_loss", False)])
    paths = rank_tables.write(results, tmp_path)
    assert {p.name for p in paths} == {
        "ranks.csv",
        "ranks_pairwise.csv",
        "ranks.md",
        "critical_difference.png",
        "critical_difference_wilcoxon.png",
    }
    table = pd.read_csv(tmp_path / "ranks.csv")
    assert list(table.columns) == rank_tables.RANK_COLUMNS
    assert len(table) == 8 and set(table["metric"]) == {"micro_f1", "hamming_loss"}
    f1 = table[table["metric"] == "micro_f1"].set_index("variant")
    assert f1["average_rank"].to_dict() == pytest.approx(results[0].average_ranks.to_dict())
    assert (f1["n_datasets"] == 8).all() and f1["cd"].nunique() == 1
    # HL = 1 - micro-F1 with lower better: the same ranks and verdict
    hl = table[table["metric"] == "hamming_loss"].set_index("variant")
    assert hl["average_rank"].to_dict() == pytest.approx(f1["average_rank"].to_dict())
    pairwise = pd.read_csv(tmp_path / "ranks_pairwise.csv")
    assert list(pairwise.columns) == rank_tables.PAIRWISE_COLUMNS and len(pairwise) == 12
    by_metric = {m: rows.set_index(["variant_a", "variant_b"]) for m, rows in pairwise.groupby("metric")}
    for column in ("a_wins", "b_wins", "wilcoxon_p", "nemenyi_p"):  # wins follow each metric's direction
        np.testing.assert_allclose(by_metric["hamming_loss"][column], by_metric["micro_f1"][column])
    text = (tmp_path / "ranks.md").read_text()
    assert "## micro-F1" in text and "## HL" in text and "Iman-Davenport" in text and "Benavoli" in text
    for name in ("critical_difference.png", "critical_difference_wilcoxon.png"):
        image = matplotlib.image.imread(tmp_path / name)
        assert image.shape[0] > 300 and image.shape[1] > 500
        assert image[..., :3].std() > 0.05  # something is drawn, not a blank canvas


# -- found by mutation testing (README, "Development"): boundaries, directions and exact texts ----


@pytest.mark.parametrize("alpha", [0.0, 1.0, 1.5, -0.1])
def test_alpha_outside_the_open_unit_interval_is_refused(alpha):
    with pytest.raises(ValueError, match=rf"alpha must be in \(0, 1\), got {alpha}"):
        ranks.verdict(frame(HAND), "micro_f1", alpha=alpha)
    with pytest.raises(ValueError, match="alpha must be in"):
        ranks.verdicts(frame(HAND), [("micro_f1", True)], alpha=alpha)


def test_verdicts_pass_alpha_and_direction_on():
    scores = frame(HAND)
    scores["hamming_loss"] = 1 - scores["micro_f1"]
    f1, hl = ranks.verdicts(scores, [("micro_f1", True), ("hamming_loss", False)], alpha=0.2)
    assert (f1.alpha, hl.alpha) == (0.2, 0.2)
    assert (f1.higher_is_better, hl.higher_is_better) is not None
    assert f1.higher_is_better is True and hl.higher_is_better is False
    assert hl.variants == f1.variants == ["a", "b", "c"]


def test_a_non_frame_is_refused_naming_its_type():
    with pytest.raises(TypeError, match="scores must be a pandas DataFrame, got list"):
        ranks.verdict([{"dataset": "d1", "variant": "a", "micro_f1": 0.5}], "micro_f1")


def test_repeated_pairs_with_different_scores_are_refused_all_named_in_first_seen_order():
    scores = pd.concat([frame(HAND), frame({"d1": {"b": 0.1}}), frame({"d1": {"a": 0.2}})], ignore_index=True)
    scores = scores.iloc[[0, 1, 12, 13, *range(2, 12)]]  # (d1, a), (d1, b), (d1, b) again, (d1, a) again, ...
    with pytest.raises(ValueError) as error:
        ranks.verdict(scores, "micro_f1")
    assert "repeated: (d1, a), (d1, b). Average" in str(error.value)


def test_data_sets_and_variants_keep_their_first_seen_order():
    table = {"zeta": {"m": 0.5, "b": 0.5, "a": 0.4}, "alpha": {"m": 0.6, "b": 0.6, "a": 0.3}}
    result = ranks.verdict(frame(table), "micro_f1")
    assert list(result.scores.index) == list(result.ranks.index) == ["zeta", "alpha"]  # not sorted by name
    assert list(result.scores.columns) == ["m", "b", "a"]
    assert result.variants == ["m", "b", "a"]  # m and b tie: first seen first
    assert (result.scores.index.name, result.scores.columns.name) == ("dataset", "variant")
    assert result.scores.dtypes.eq(float).all()


def test_tied_average_ranks_keep_the_first_seen_order_with_many_variants():
    # numpy's default sort is not stable above 16 elements: 24 variants in two tied groups.
    names = [f"v{i:02d}" for i in range(24)]
    row = {v: (0.9 if i % 2 else 0.8) for i, v in enumerate(names)}
    result = ranks.verdict(frame({"d1": row, "d2": row}), "micro_f1")
    assert result.variants == names[1::2] + names[0::2]


def test_no_complete_data_set_gives_nan_ranks_for_every_variant():
    scores = frame({"d1": {"a": 0.5, "b": 0.4}, "d2": {"b": 0.3, "c": 0.2}})
    result = ranks.verdict(scores, "micro_f1")
    assert result.n_datasets == 0 and result.average_ranks.dtype == float
    assert result.average_ranks.isna().all() and sorted(result.variants) == ["a", "b", "c"]
    assert result.pairwise["mean_diff"].isna().all() and len(result.pairwise) == 3
    assert result.dropped == {"d1": ["c"], "d2": ["a"]}


def test_untestable_nemenyi_matrix_is_one_on_the_diagonal_and_nan_elsewhere():
    result = ranks.verdict(frame({"d1": HAND["d1"]}), "micro_f1")
    matrix = result.nemenyi.to_numpy()
    assert np.diag(matrix).tolist() == [1.0, 1.0, 1.0]
    assert np.isnan(matrix[~np.eye(3, dtype=bool)]).all()
    assert list(result.nemenyi.index) == list(result.nemenyi.columns) == result.variants


def test_the_notes_in_full():
    incomplete = frame(HAND)
    incomplete = incomplete[~((incomplete["dataset"] == "d2") & incomplete["variant"].isin(["b", "c"]))]
    assert ranks.verdict(incomplete, "micro_f1").notes == (
        "Data set 'd2' is left out: no score for b, c.",
        "Only 3 data sets: every test here has little power, read the ranks as descriptive.",
        "With 3 data sets and 3 pair(s), no pair can be significant under Wilcoxon-Holm: the smallest possible "
        "adjusted p is 3 x 2/2^3 = 0.75.",
    )
    two = ranks.verdict(frame({d: {"a": HAND[d]["a"], "b": HAND[d]["b"]} for d in ("d1", "d2")}), "micro_f1")
    assert two.notes == (
        "Two variants: Friedman's test is not computed (scipy needs 3); for two methods Demšar (2006) recommends "
        "the Wilcoxon signed-rank test over data sets, given in the pairwise table.",
        "Only 2 data sets: every test here has little power, read the ranks as descriptive.",
        "With 2 data sets and 1 pair(s), no pair can be significant under Wilcoxon-Holm: the smallest possible "
        "adjusted p is 1 x 2/2^2 = 0.5.",
        "With 2 data sets and 2 variants the Nemenyi critical difference CD = 1.39 exceeds the largest possible "
        "difference of average ranks (1): no pair can differ under Nemenyi, whatever the scores.",
    )
    capped = ranks.verdict(frame({d: HAND[d] for d in ("d1", "d2")}), "micro_f1")
    assert capped.notes[1].endswith("the smallest possible adjusted p is 3 x 2/2^2 = 1.")  # 1.5 capped at 1
    assert "difference of average ranks (2)" in capped.notes[2]
    ties = ranks.verdict(frame({d: {"a": 0.5, "b": 0.5, "c": 0.5} for d in ("d1", "d2")}), "micro_f1")
    assert ties.notes[2] == (
        "Every variant ties on every data set: Friedman's statistic is undefined (0/0) and nothing suggests a "
        "difference."
    )


def test_five_data_sets_are_not_called_few():
    notes = ranks.verdict(random_frame(5, ["a", "b"], seed=1), "micro_f1").notes
    assert not any("little power" in note for note in notes)
    assert any("little power" in note for note in ranks.verdict(random_frame(4, ["a", "b"]), "micro_f1").notes)


def test_a_data_set_of_ties_beside_ordered_ones_still_gets_friedman():
    table = {"d1": {"a": 0.5, "b": 0.5, "c": 0.5}, **{d: HAND[d] for d in ("d2", "d3")}}
    result = ranks.verdict(frame(table), "micro_f1")
    expected = stats.friedmanchisquare([0.5, 0.8, 0.9], [0.5, 0.9, 0.7], [0.5, 0.7, 0.8])
    assert result.friedman_chi2 == pytest.approx(expected.statistic)


@pytest.mark.parametrize("n, k", [(1, 3), (3, 1), (0, 0)])
def test_too_little_to_test_is_undetectable_under_both_tests(n, k):
    names = [f"v{j}" for j in range(k)]
    table = {f"d{i}": {v: 0.9 - 0.1 * j for j, v in enumerate(names)} for i in range(n)}
    scores = frame(table) if table else pd.DataFrame(columns=["dataset", "variant", "micro_f1"])
    assert ranks.verdict(scores, "micro_f1").undetectable == ("nemenyi", "wilcoxon-holm")


@pytest.mark.parametrize(
    "n, k, alpha, expected",
    [
        (2, 2, 0.9, ()),  # a lenient alpha: two data sets can separate two variants under both tests
        (4, 2, 0.125, ("wilcoxon-holm",)),  # the smallest p, 2/2^4, equals alpha: p < alpha cannot hold
        (4, 2, 0.1251, ()),
    ],
)
def test_undetectable_at_other_alphas_matches_what_a_perfect_ordering_reaches(n, k, alpha, expected):
    names = [f"v{j}" for j in range(k)]
    table = {f"d{i}": {v: 0.9 - 0.1 * j - 0.001 * i * j for j, v in enumerate(names)} for i in range(n)}
    result = ranks.verdict(frame(table), "micro_f1", alpha=alpha)
    assert result.undetectable == expected
    said = any("no pair can be significant under Wilcoxon-Holm" in note for note in result.notes)
    assert said == ("wilcoxon-holm" in expected)
    pair = result.pairwise.iloc[0]
    assert bool(pair["wilcoxon_significant"]) == ("wilcoxon-holm" not in expected)
    assert bool(pair["nemenyi_significant"]) == ("nemenyi" not in expected)


def test_iman_davenport_just_below_the_perfect_agreement_limit_is_finite():
    # N(k - 1) = 8: a chi2 of 7.5 leaves the denominator at 0.5, not yet the perfect-agreement limit.
    f, p = ranks._iman_davenport(7.5, 4, 3)
    assert f == pytest.approx(3 * 7.5 / 0.5) and p == pytest.approx(stats.f.sf(45.0, 2, 6))
    assert ranks._iman_davenport(8.0, 4, 3) == (math.inf, 0.0)


@pytest.mark.parametrize("higher", [True, False])
def test_wins_ties_and_losses_follow_the_direction(higher):
    table = {
        "d1": {"a": 0.9, "b": 0.8},
        "d2": {"a": 0.7, "b": 0.7},
        "d3": {"a": 0.7, "b": 0.7},
        "d4": {"a": 0.5, "b": 0.6},
    }
    table.update({"d5": {"a": 0.9, "b": 0.2}})
    pair = ranks.verdict(frame(table), "micro_f1", higher_is_better=higher).pairwise.iloc[0]
    first = "a" if higher else "b"  # the better-ranked variant comes first
    assert (pair["variant_a"], pair["ties"]) == (first, 2)
    assert (pair["a_wins"], pair["b_wins"]) == (2, 1)  # a beats b on d1, d5; b beats a on d4 (or the reverse)


def test_zero_differences_are_split_between_the_signs_as_scipy_zsplit():
    table = {
        "d1": {"a": 0.9, "b": 0.8},
        "d2": {"a": 0.7, "b": 0.7},
        "d3": {"a": 0.8, "b": 0.6},
        "d4": {"a": 0.6, "b": 0.65},
        "d5": {"a": 0.9, "b": 0.5},
        "d6": {"a": 0.5, "b": 0.5},
    }
    pair = ranks.verdict(frame(table), "micro_f1").pairwise.iloc[0]
    a, b = [row["a"] for row in table.values()], [row["b"] for row in table.values()]
    zsplit = stats.wilcoxon(a, b, zero_method="zsplit")
    assert zsplit.statistic != pytest.approx(stats.wilcoxon(a, b).statistic)  # the choice matters on these data
    assert pair["wilcoxon_p"] == pytest.approx(zsplit.pvalue)
    assert pair["wilcoxon_statistic"] == pytest.approx(zsplit.statistic)


def test_pairwise_columns_carry_the_matrix_values_and_significance_is_strict():
    first = ranks.verdict(frame(HAND), "micro_f1", alpha=0.5)
    pairs = first.pairwise.set_index(["variant_a", "variant_b"])
    for (a, b), row in pairs.iterrows():
        assert row["nemenyi_p"] == first.nemenyi.loc[a, b]
        assert first.wilcoxon_matrix().loc[a, b] == first.wilcoxon_matrix().loc[b, a] == row["wilcoxon_p_holm"]
        assert not math.isnan(row["wilcoxon_statistic"])
    assert np.diag(first.wilcoxon_matrix()).tolist() == [1.0, 1.0, 1.0]
    nemenyi_p, holm_p = pairs.loc[("a", "c"), "nemenyi_p"], pairs.loc[("a", "c"), "wilcoxon_p_holm"]
    # alpha exactly at a p-value: p < alpha does not hold, so that pair is not significant
    at_nemenyi = ranks.verdict(frame(HAND), "micro_f1", alpha=nemenyi_p).pairwise.set_index(["variant_a", "variant_b"])
    assert not at_nemenyi.loc[("a", "c"), "nemenyi_significant"]
    at_holm = ranks.verdict(frame(HAND), "micro_f1", alpha=holm_p).pairwise.set_index(["variant_a", "variant_b"])
    assert not at_holm.loc[("a", "c"), "wilcoxon_significant"]
    assert (
        ranks.verdict(frame(HAND), "micro_f1", alpha=min(0.999, holm_p * 1.001))
        .pairwise.set_index(["variant_a", "variant_b"])
        .loc[("a", "c"), "wilcoxon_significant"]
    )


def test_differ_is_strict_in_alpha():
    scores = random_frame(7, ["a", "b", "c", "d"], seed=3)
    p = ranks.verdict(scores, "micro_f1").iman_davenport_p
    assert not ranks.verdict(scores, "micro_f1", alpha=p).differ
    assert ranks.verdict(scores, "micro_f1", alpha=min(0.999, p * 1.01)).differ
