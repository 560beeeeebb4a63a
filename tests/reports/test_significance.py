"""significance.csv / .md and the page: verdict, mde and seeds_needed per comparison, any reference variant."""

import numpy as np
import pandas as pd
import pytest

from harness.metrics import LOWER_IS_BETTER
from harness.tracking import FINAL_METRICS
from reports import html, significance, tables


def _runs(values: dict[str, np.ndarray]) -> pd.DataFrame:
    """Runs whose every metric holds the same value per seed (so the direction of each metric shows)."""
    return pd.DataFrame(
        [
            {"variant": v, "setting": "default", "seed": i + 1, **{f"test_{m}": float(x) for m in FINAL_METRICS}}
            for v, xs in values.items()
            for i, x in enumerate(xs)
        ]
    )


@pytest.fixture
def own_model_study():
    """A plugin model, an exact copy of it under another name and a clearly degraded one: no carat at all."""
    rng = np.random.default_rng(42)
    mine = 0.55 + 0.03 * rng.standard_normal(5)
    return _runs({"mine": mine, "mine_copy": mine.copy(), "mine_degraded": mine - 0.08 + 0.01 * rng.standard_normal(5)})


def test_copy_equivalent_degraded_worse_against_the_first_variant(own_model_study, tmp_path):
    result = significance.compare(own_model_study, ["mine_copy", "mine_degraded"])
    assert set(result["reference"]) == {"mine"}  # no carat: the first variant listed
    micro = result[result["metric"] == "micro_f1"].set_index("variant")
    assert micro.loc["mine_copy", "verdict"] == "equivalent"
    assert micro.loc["mine_degraded", "verdict"] == "worse"
    assert np.isfinite(micro.loc["mine_degraded", "mde"]) and micro.loc["mine_degraded", "mde"] > 0
    assert pd.isna(micro.loc["mine_copy", "seeds_needed"])  # Δ = 0: nothing to detect
    # lower-case columns a script reads back from the CSV
    result.to_csv(tmp_path / "significance.csv", index=False)
    back = pd.read_csv(tmp_path / "significance.csv")
    assert {"verdict", "mde", "seeds_needed"} <= set(back.columns)
    row = back[(back["metric"] == "micro_f1") & (back["variant"] == "mine_copy")].iloc[0]
    assert row["verdict"] == "equivalent" and pd.isna(row["seeds_needed"])


def test_every_lower_is_better_metric_turns_the_verdict(own_model_study):
    result = significance.compare(own_model_study, ["mine_degraded"], reference="mine")
    by_metric = result.set_index("metric")["verdict"]
    for metric in by_metric.index:  # the degraded model's values are lower on every metric
        assert by_metric[metric] == ("better" if metric in LOWER_IS_BETTER else "worse"), metric
    assert LOWER_IS_BETTER & set(by_metric.index)  # at least one lower-is-better metric was compared


def test_carat_is_the_default_reference_when_present():
    rng = np.random.default_rng(1)
    carat = 0.5 + 0.02 * rng.standard_normal(4)
    runs = _runs({"no_shuffle": carat + 0.001, "carat": carat})
    result = significance.compare(runs, ["no_shuffle"])
    assert set(result["reference"]) == {"carat"} and set(result["variant"]) == {"no_shuffle"}
    other = significance.compare(runs, ["carat"], reference="no_shuffle")
    assert set(other["variant"]) == {"carat"} and set(other["reference"]) == {"no_shuffle"}


def test_a_reference_that_names_no_variant_is_refused(own_model_study):
    with pytest.raises(ValueError, match=r"^reference: 'carat' is not a variant of the study"):
        significance.compare(own_model_study, ["mine_copy"], reference="carat")


def test_table_and_page_show_the_verdict_as_a_coloured_word(own_model_study):
    result = significance.compare(own_model_study, ["mine_copy", "mine_degraded"])
    table = significance.table(result)
    assert {"Verdict", "MDE", "Seeds needed"} <= set(table.header) and "Δ vs mine (95% CI)" in table.header
    text = tables.markdown(table)
    assert "**worse**" in text and "| equivalent |" in text and "TOST" in text
    page = tables.html(table, css_class="significance")
    assert '<td class="verdict-worse"><b>worse</b></td>' in page
    assert '<td class="verdict-equivalent">equivalent</td>' in page
    for verdict, colour in (("better", "#166534"), ("worse", "#991b1b"), ("equivalent", "#1e3a8a")):
        assert f"td.verdict-{verdict}{{color:{colour}" in html.CSS
    assert "td.verdict{color:#4b5563" in html.CSS  # inconclusive: grey


def test_inconclusive_row_says_what_more_seeds_would_do():
    rng = np.random.default_rng(3)
    carat = 0.5 + 0.03 * rng.standard_normal(5)
    result = significance.compare(_runs({"carat": carat, "v": carat + 0.01 + 0.03 * rng.standard_normal(5)}), ["v"])
    row = result[result["metric"] == "micro_f1"].iloc[0]
    assert row["verdict"] == "inconclusive"
    assert row["mde"] > abs(row["mean_diff"]) and row["seeds_needed"] > 5


# -- found by mutation testing (README, "Development"): pairing, order, direction, notes ------------


def _two_settings(rng):
    carat = 0.5 + 0.03 * rng.standard_normal(5)
    rows = []
    for setting, shift in (("zeta", -0.1), ("alpha", 0.0)):  # first seen: zeta
        for name, values in (("carat", carat), ("no_shuffle", carat + shift + 0.005 * rng.standard_normal(5))):
            rows += [
                {"variant": name, "setting": setting, "seed": i + 1, **{f"test_{m}": float(x) for m in FINAL_METRICS}}
                for i, x in enumerate(values)
            ]
    return pd.DataFrame(rows)


def test_nothing_finished_gives_an_empty_table_with_every_column():
    for empty in (pd.DataFrame(), pd.DataFrame(columns=["setting", "variant", "seed"])):
        result = significance.compare(empty, ["no_shuffle"])
        assert result.empty and list(result.columns) == significance.RESULT_COLUMNS


def test_a_refused_reference_lists_every_variant(own_model_study):
    with pytest.raises(ValueError) as error:
        significance.compare(own_model_study, ["mine_copy"], reference="carat")
    assert str(error.value) == "reference: 'carat' is not a variant of the study (mine, mine_copy, mine_degraded)"


def test_settings_keep_their_order_and_one_without_the_reference_is_skipped_not_the_end():
    runs = _two_settings(np.random.default_rng(5))
    lone = runs[(runs["setting"] == "zeta") & (runs["variant"] == "no_shuffle")].assign(setting="lone")
    runs = pd.concat([lone, runs], ignore_index=True)  # "lone" has no carat run and comes first
    result = significance.compare(runs, ["carat", "no_shuffle"])  # the reference listed among the variants
    assert list(dict.fromkeys(result["setting"])) == ["zeta", "alpha"]
    assert set(result["variant"]) == {"no_shuffle"} and len(result) == 2 * len(tables.COLUMNS)
    micro = result[result["metric"] == "micro_f1"].set_index("setting")
    assert micro.loc["zeta", "verdict"] == "worse" and micro.loc["zeta", "better"] == False  # noqa: E712
    assert micro.loc["zeta", "mean_diff"] == pytest.approx(-0.1, abs=0.01)


def test_pairs_are_the_seeds_both_finished_in_seed_order():
    rng = np.random.default_rng(2)
    carat = 0.5 + 0.03 * rng.standard_normal(5)
    runs = _runs({"carat": carat, "v": carat - 0.05 + 0.01 * rng.standard_normal(5)})
    runs = runs[~((runs["variant"] == "v") & (runs["seed"] == 2))]  # v lacks seed 2
    runs = runs[~((runs["variant"] == "carat") & (runs["seed"] == 5))].iloc[::-1]  # carat lacks 5; rows reversed
    row = significance.compare(runs, ["v"]).set_index("metric").loc["micro_f1"]
    assert row["seeds"] == "1 3 4" and row["n_pairs"] == 3
    v, c = runs[runs["variant"] == "v"].set_index("seed"), runs[runs["variant"] == "carat"].set_index("seed")
    diff = v.loc[[1, 3, 4], "test_micro_f1"].to_numpy() - c.loc[[1, 3, 4], "test_micro_f1"].to_numpy()
    assert row["mean_diff"] == pytest.approx(diff.mean())


def test_a_variant_with_no_runs_or_no_common_seed_gets_no_row_and_the_others_still_do():
    rng = np.random.default_rng(4)
    carat = 0.5 + 0.03 * rng.standard_normal(4)
    runs = _runs({"carat": carat, "late": carat + 0.01, "v": carat - 0.05})
    runs.loc[runs["variant"] == "late", "seed"] += 10  # seeds 11-14: none in common with carat
    result = significance.compare(runs, ["ghost", "late", "v"])  # ghost has no runs at all
    assert set(result["variant"]) == {"v"}


@pytest.mark.parametrize(
    "mean_diff, metric, expected",
    [
        (0.01, "micro_f1", True),
        (-0.01, "micro_f1", False),
        (0.01, "hamming_loss", False),
        (-0.01, "hamming_loss", True),
        (0.0, "micro_f1", None),
        (float("nan"), "micro_f1", None),
        (1.5, "micro_f1", True),
    ],
)
def test_better_follows_the_sign_and_the_metric_direction(mean_diff, metric, expected):
    assert significance._direction(mean_diff, metric) is expected


def test_the_better_column_of_every_metric():
    rng = np.random.default_rng(6)
    carat = 0.5 + 0.03 * rng.standard_normal(5)
    result = significance.compare(_runs({"carat": carat, "up": carat + 0.02, "same": carat.copy()}), ["up", "same"])
    for row in result.itertuples():
        if row.variant == "same":
            assert pd.isna(row.better)
        else:  # higher on every metric: better exactly where higher is better
            assert row.better == (row.metric not in LOWER_IS_BETTER), row.metric


def test_constancy_notes_name_the_constant_model_and_the_one_whose_spread_is_shown():
    fixed, moving = [0.5, 0.5, 0.5], [0.4, 0.5, 0.6]
    note = significance.constancy_note
    assert note("v", "ref", fixed, fixed) == (
        "both give the same result on every seed: a fixed difference, nothing to test"
    )
    assert note("v", "ref", fixed, moving) == (
        "v gives the same result on every seed: CI and p show only ref's seed-to-seed spread"
    )
    assert note("v", "ref", moving, fixed) == (
        "ref gives the same result on every seed: CI and p show only v's seed-to-seed spread"
    )
    assert note("v", "ref", moving, moving) == ""


def test_every_column_of_a_row_is_the_comparison_of_its_pairs():
    from harness.verdicts import compare_family

    rng = np.random.default_rng(9)
    carat = 0.5 + 0.03 * rng.standard_normal(5)
    runs = _runs({"carat": np.full(5, 0.5), "v": carat})  # carat constant: the row carries a note
    result = significance.compare(runs, ["v"], equivalence_margin=0.05)
    assert str(result["seeds_needed"].dtype) == "Int64"
    row = result.set_index("metric").loc["micro_f1"]
    (c,) = compare_family({"v": (carat, np.full(5, 0.5))}, "micro_f1", "carat", 0.05)
    expected = {
        "setting": "default",
        "variant": "v",
        "n_pairs": 5,
        "seeds": "1 2 3 4 5",
        "mean_diff": c.mean_diff,
        "ci_low": c.ci_low,
        "ci_high": c.ci_high,
        "p": c.p,
        "p_holm": c.p_holm,
        "significant": c.significant,
        "test": c.test,
        "better": c.mean_diff > 0,
        "verdict": c.verdict,
        "mde": c.mde,
        "tost_p": c.tost_p,
        "equivalence_margin": 0.05,
        "reference": "carat",
        "note": "carat gives the same result on every seed: CI and p show only v's seed-to-seed spread",
    }
    assert {k: row[k] for k in expected} == pytest.approx(expected)
    assert (pd.isna(row["seeds_needed"]) and c.seeds_needed is None) or row["seeds_needed"] == c.seeds_needed
