"""The micro-benchmark cases run and report plain data (no timing is asserted), and the bench task."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from invoke import Context

import models
from harness import bench
from harness.bench import available_cases, run_case
from harness.data.dataset import DataSpec
from models.carat import VARIANTS

PEAKS = {"fp32": 100.0, "bf16": 400.0}


def test_cases_cover_carat_both_modes_every_variant_and_inference():
    cases = available_cases()
    assert {"carat-step", "carat-step-fast", "inference"} <= set(cases)
    # The bench lists the variants from the registry; models.carat's own table is the independent check.
    assert {name for name in cases if name.startswith("variant-")} == {f"variant-{v}" for v in VARIANTS if v != "carat"}
    assert cases["carat-step"].overrides["contrastive_mode"] == "reference"
    assert cases["carat-step-fast"].overrides["contrastive_mode"] == "fast"


def test_bench_reads_the_variants_from_the_registry_not_from_models_carat():
    source = Path(bench.__file__).read_text()
    assert "VARIANTS" not in source and '"-m", "invoke"' not in source and "subprocess" not in source


def test_baseline_cases_follow_the_registry():
    baselines = {name for name in available_cases() if name.startswith("baseline-")}
    expected = {f"baseline-{m}" for m in ("early_fusion", "late_fusion", "mult") if m in models.list()}
    assert baselines == expected


@pytest.mark.parametrize("name", ["carat-step-fast", "variant-no_shuffle", "inference"])
def test_run_case_reports_plain_numbers(name):
    result = run_case(name, preset="small", batch=3, steps=2, threads=1, isolate=False, peaks=PEAKS)
    assert result["case"] == name and result["batch"] == 3 and result["steps"] == 2 and result["threads"] == 1
    assert result["median_step_ms"] > 0 and result["min_step_ms"] <= result["median_step_ms"]
    assert result["peak_rss_mb"] > 0 and result["samples_per_s"] > 0
    assert result["contrastive_mode"] == ("fast" if name == "carat-step-fast" else "reference")
    assert result["precision"] == "fp32" and result["gflop_per_step"] > 0 and result["peak_gflops"] == 100.0
    assert result["device"] == "cpu" and result["median_cpu_ms"] > 0
    assert set(bench.BREAKDOWN_CATEGORIES) == {key.removeprefix("ms_") for key in result if key.startswith("ms_")}
    assert result["ms_matmul"] > 0 and all(result[f"ms_{key}"] >= 0 for key in bench.BREAKDOWN_CATEGORIES)
    if name != "inference":
        assert result["ms_optimiser"] > 0 and result["ms_random"] > 0  # Adam and dropout run in a step


def test_flops_of_a_known_matmul_and_a_linear_training_step_are_counted_exactly():
    a, b = torch.randn(64, 32), torch.randn(32, 16)
    assert bench.count_flops(lambda: torch.mm(a, b)) == 2 * 64 * 32 * 16
    # A bias-free Linear in -> out on a batch, forward and backward (input and weight gradients): 3 matmuls.
    layer, x = torch.nn.Linear(32, 16, bias=False), torch.randn(64, 32, requires_grad=True)
    assert bench.count_flops(lambda: layer(x).sum().backward()) == 3 * 2 * 64 * 32 * 16


def test_op_categories_and_the_breakdown_of_known_work():
    assert bench.op_category("aten::mm") == "matmul" and bench.op_category("aten::baddbmm") == "matmul"
    assert bench.op_category("aten::_to_copy") == "conversions" and bench.op_category("aten::random_") == "random"
    assert bench.op_category("aten::native_layer_norm") == "elementwise" and bench.op_category("aten::view") == "other"
    big = torch.randn(512, 512)
    matmuls = bench.time_breakdown(lambda: [torch.mm(big, big) for _ in range(5)])
    assert matmuls["matmul"] > 0.5 * sum(matmuls.values())
    draws = bench.time_breakdown(lambda: [torch.rand(1_000_000) for _ in range(5)])
    assert draws["random"] > 0.5 * sum(draws.values())
    weights = [torch.nn.Parameter(torch.randn(1_000_000)) for _ in range(4)]
    for w in weights:
        w.grad = torch.ones_like(w)
    optimiser = torch.optim.Adam(weights)
    steps = bench.time_breakdown(lambda: optimiser.step())
    assert steps["optimiser"] > 0.5 * sum(steps.values())


def test_bf16_case_runs_under_autocast_and_uses_the_bf16_peak():
    result = run_case(
        "variant-no_contrastive",
        preset="small",
        batch=2,
        steps=1,
        threads=1,
        isolate=False,
        precision="bf16",
        peaks=PEAKS,
    )
    assert result["precision"] == "bf16" and result["peak_gflops"] == 400.0


def _tiny_carat(**overrides):
    spec = DataSpec({"text": (5, 4), "audio": (5, 3)}, ("a", "b"))
    torch.manual_seed(0)
    model = models.create(
        "carat", spec, hidden_size=16, latent_size=8, depths=(2,), heads=2, queue_size=64, **overrides
    )
    return model, bench._random_batch(spec, 4)


def test_flops_are_counted_with_backward_and_checkpoint_recomputation():
    counted = {}
    for checkpoint in (False, True):
        model, batch = _tiny_carat(checkpoint_layers=checkpoint)
        counted[checkpoint] = bench.count_flops(bench._training_step(model, *batch, dtype=torch.float32))
    model, batch = _tiny_carat()
    forward = bench.count_flops(bench._inference(model, *batch, dtype=torch.float32))
    # Backward costs about twice the forward; recomputing the layers adds part of a forward.
    assert counted[False] > 2 * forward
    assert forward > counted[True] - counted[False] > 0


def test_matmul_peaks_reports_both_precisions():
    peaks = bench.matmul_peaks(threads=1, max_size=64)
    assert set(peaks) == {"fp32", "bf16"} and all(value > 0 for value in peaks.values())


@pytest.mark.integration  # a subprocess
def test_isolated_run_works_in_a_fresh_process():
    result = run_case("variant-no_contrastive", preset="small", batch=2, steps=1, threads=1)
    assert result["model"] == "no_contrastive" and result["contrastive_mode"] is None


def test_unknown_case_bad_sizes_and_bad_precision_are_refused():
    with pytest.raises(ValueError, match="valid"):
        run_case("carat-walk", isolate=False)
    with pytest.raises(ValueError, match=">= 1"):
        run_case("inference", steps=0, isolate=False)
    with pytest.raises(ValueError, match="precision"):
        run_case("inference", precision="fp16", isolate=False)
    with pytest.raises(ValueError, match="device"):
        run_case("inference", device="tpu", isolate=False)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            run_case("inference", device="cuda", isolate=False)


# --- the task ----------------------------------------------------------------------------------


@pytest.fixture
def bench_task(repo_root, monkeypatch):
    """The task function with every case replaced by an instant fake (the task's plumbing is under test)."""
    spec = importlib.util.spec_from_file_location("project_tasks", repo_root / "tasks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def fake_case(name, preset, batch, steps, threads, isolate=True, precision="fp32", peaks=None, device="cpu"):
        return {
            "case": name,
            "preset": preset,
            "precision": precision,
            "batch": batch,
            "median_step_ms": 1.5,
            "peak_rss_mb": 10.0,
            "gflop_per_step": 1.0,
            "fraction_of_peak": 0.5,
            "torch": "x",
        }

    monkeypatch.setattr(bench, "run_case", fake_case)
    monkeypatch.setattr(bench, "case_names", lambda: ["carat-step", "inference"])
    monkeypatch.setattr(bench, "matmul_peaks", lambda threads, isolate=False, device="cpu": dict(PEAKS))
    return lambda **options: module.bench.body(Context(), **options)


@pytest.mark.parametrize("as_json", [False, True])
def test_task_over_all_cases_writes_its_files_in_both_output_forms(bench_task, tmp_path, capsys, as_json):
    bench_task(json=as_json, studies=False, out=str(tmp_path), batch=8)
    out = capsys.readouterr().out
    written = json.loads((tmp_path / "bench.json").read_text())
    assert [r["case"] for r in written["results"]] == ["carat-step", "carat-step", "inference"]
    assert written["matmul_peak_gflops"] == PEAKS and all(r["batch"] == 8 for r in written["results"])
    assert "fp32 100.0 GFLOP/s" in (tmp_path / "bench.md").read_text()
    if as_json:  # stdout is one JSON object per case and nothing else
        assert [json.loads(line)["case"] for line in out.splitlines()] == ["carat-step", "carat-step", "inference"]


@pytest.mark.integration  # a subprocess
@pytest.mark.parametrize("option", ["batch", "steps", "threads"])
def test_task_refuses_a_non_numeric_count_with_one_message(repo_root, option):
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "invoke", "bench", "--only", "carat-step", f"--{option}", "many"],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and done.stderr.strip() == f"error: --{option} must be a whole number, got 'many'"
