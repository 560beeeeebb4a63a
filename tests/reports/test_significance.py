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
