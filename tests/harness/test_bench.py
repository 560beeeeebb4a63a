"""The micro-benchmark cases run and report plain data (no timing is asserted)."""
import pytest

import models
from harness.bench import CASES, available_cases, run_case
from models.carat import VARIANTS


def test_cases_cover_carat_both_modes_every_variant_and_inference():
    assert {"carat-step", "carat-step-fast", "inference"} <= set(CASES)
    assert {f"variant-{v}" for v in VARIANTS if v != "carat"} <= set(CASES)
    assert CASES["carat-step"].overrides["contrastive_mode"] == "reference"
    assert CASES["carat-step-fast"].overrides["contrastive_mode"] == "fast"


def test_baseline_cases_follow_the_registry():
    baselines = {name for name in available_cases() if name.startswith("baseline-")}
    expected = {f"baseline-{m}" for m in ("early_fusion", "late_fusion", "mult") if m in models.list()}
    assert baselines == expected


@pytest.mark.parametrize("name", ["carat-step-fast", "variant-no_shuffle", "inference"])
def test_run_case_reports_plain_numbers(name):
    result = run_case(name, preset="small", batch=3, steps=2, threads=1, isolate=False)
    assert result["case"] == name and result["batch"] == 3 and result["steps"] == 2 and result["threads"] == 1
    assert result["median_step_ms"] > 0 and result["min_step_ms"] <= result["median_step_ms"]
    assert result["peak_rss_mb"] > 0 and result["samples_per_s"] > 0
    assert result["contrastive_mode"] == ("fast" if name == "carat-step-fast" else "reference")


def test_isolated_run_works_in_a_fresh_process():
    result = run_case("variant-no_contrastive", preset="small", batch=2, steps=1, threads=1)
    assert result["model"] == "no_contrastive" and result["contrastive_mode"] is None


def test_unknown_case_and_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="valid"):
        run_case("carat-walk", isolate=False)
    with pytest.raises(ValueError, match=">= 1"):
        run_case("inference", steps=0, isolate=False)
