"""The report judges a study as its last command said (experiment tags, not the study file): against
its ``reference`` with its ``equivalence_margin``, naming the reference on the page, and saying when
the seeds were added sequentially by ``--until-settled``. Real runs in a temporary MLflow store."""

import numpy as np
import pandas as pd
import pytest

import reports
from harness import keys
from harness.tracking import client_for, ensure_experiment
from tests.reports.test_reports import _log

SEEDS = [1, 2, 3, 4, 5]


def _reference_base(seed):
    return 0.5 + 0.02 * ((seed * 3) % 5)


def _degraded_base(seed):
    return _reference_base(seed) - 0.1 + 0.003 * ((seed * 7) % 5 - 2)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("verdicts")
    uri = f"sqlite:///{root}/mlflow.db"
    client = client_for(uri)
    judged = {keys.REFERENCE: "no_maxpool", keys.EQUIVALENCE_MARGIN: "0.02"}
    sequential = {keys.SEQUENTIAL_LOOKS: "5", keys.SEQUENTIAL_MAX_SEEDS: "10"}
    ensure_experiment(client, uri, "judged", tags={**judged, **sequential})
    ensure_experiment(client, uri, "plain")  # no tags: the first variant is the reference
    for seed in SEEDS:
        _log(client, uri, "judged", "no_shuffle", seed, _degraded_base(seed))  # listed first, not the reference
        _log(client, uri, "judged", "no_maxpool", seed, _reference_base(seed))
        _log(client, uri, "judged", "no_contrastive", seed, _reference_base(seed))  # an exact copy
        _log(client, uri, "plain", "no_sample_shuffle", seed, _reference_base(seed))
        _log(client, uri, "plain", "no_shuffle", seed, _degraded_base(seed))
    out = root / "build"
    reports.generate(["judged", "plain"], tracking_uri=uri, out_dir=out)
    return out


def test_the_tagged_reference_and_margin_judge_the_comparisons(report):
    result = pd.read_csv(report / "judged" / "significance.csv")
    assert set(result["reference"]) == {"no_maxpool"} and set(result["equivalence_margin"]) == {0.02}
    f1 = result[result["metric"] == keys.MICRO_F1].set_index("variant")
    assert f1.loc["no_contrastive", "verdict"] == "equivalent"
    assert f1.loc["no_shuffle", "verdict"] == "worse" and np.isfinite(f1.loc["no_shuffle", "mde"])
    assert f1.loc["no_shuffle", "mean_diff"] == pytest.approx(-0.1, abs=0.01)


def test_a_study_without_carat_or_a_reference_is_compared_with_its_first_variant(report):
    result = pd.read_csv(report / "plain" / "significance.csv")
    assert set(result["reference"]) == {"no_sample_shuffle"} and set(result["variant"]) == {"no_shuffle"}
    assert set(result["equivalence_margin"]) == {0.01}  # the verdicts' default
    assert (
        (report / "plain" / "significance.md")
        .read_text()
        .startswith("# plain: ablations against no_sample_shuffle, the reference")
    )


def test_the_page_names_the_reference_colours_the_verdicts_and_says_the_seeds_were_sequential(report):
    page = (report / "index.html").read_text()
    assert "Reference: <b>no_maxpool</b>" in page and "Reference: <b>no_sample_shuffle</b>" in page
    assert "Ablations against no_maxpool, the reference (paired over seeds)" in page
    assert '<td class="verdict-equivalent">equivalent</td>' in page
    assert '<td class="verdict-worse"><b>worse</b></td>' in page
    assert "Seeds added sequentially (--until-settled: looks at 5 of at most 10 seeds" in page
    assert "no_shuffle worse (settled at 5 seeds)" in page and "no_contrastive equivalent (settled at 5 seeds)" in page
    assert page.count("Seeds added sequentially") == 1  # the plain study has no such claim
