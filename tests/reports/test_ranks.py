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
