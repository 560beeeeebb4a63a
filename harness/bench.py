"""Micro-benchmarks: training-step time and peak memory of CARAT, its variants and the neural
baselines, and CARAT's inference throughput, on random data of the aligned CMU-MOSEI shape.

    >>> from harness.bench import run_case, case_names
    >>> run_case("carat-step", preset="paper", batch=64, steps=5, threads=2)
    {'case': 'carat-step', 'median_step_ms': ..., 'peak_rss_mb': ..., ...}

A step is forward, backward and an Adam step; one warm-up step (or forward) is not
counted. Each case runs by default in a fresh process, so that its peak resident memory
(``peak_rss_mb``, from getrusage) is its own and not that of earlier cases.
"""
from __future__ import annotations

import multiprocessing
import resource
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch

# Aligned CMU-MOSEI (CARAT.md section 8): GloVe text, FACET visual, COVAREP audio, 6 emotions.
MOSEI_ALIGNED_SHAPES = {"text": (60, 300), "visual": (60, 35), "audio": (60, 74)}
MOSEI_LABELS = ("happy", "sad", "anger", "surprise", "disgust", "fear")
BASELINES = ("early_fusion", "late_fusion", "mult")  # registered by models.baselines when present


@dataclass(frozen=True)
class BenchCase:
    model: str  # registry name
    kind: str  # "step" (training step) or "inference" (forward in eval mode)
    overrides: dict = field(default_factory=dict)


def _carat_cases() -> dict[str, BenchCase]:
    from models.carat import VARIANTS

    cases = {
        "carat-step": BenchCase("carat", "step", {"contrastive_mode": "reference"}),
        "carat-step-fast": BenchCase("carat", "step", {"contrastive_mode": "fast"}),
    }
    cases.update({f"variant-{name}": BenchCase(name, "step") for name in VARIANTS if name != "carat"})
    cases["inference"] = BenchCase("carat", "inference")
    return cases


CASES: dict[str, BenchCase] = _carat_cases()


def available_cases() -> dict[str, BenchCase]:
    """CASES plus ``baseline-<name>`` for each neural baseline registered at run time."""
    import models

    registered = set(models.list())
    return {**CASES, **{f"baseline-{name}": BenchCase(name, "step") for name in BASELINES if name in registered}}


def case_names() -> list[str]:
    return list(available_cases())


def run_case(
    name: str, preset: str = "paper", batch: int = 64, steps: int = 5, threads: int = 2, isolate: bool = True
) -> dict:
    """Run one benchmark case; returns plain data (times in ms, memory in MB)."""
    cases = available_cases()
    if name not in cases:
        raise ValueError(f"unknown bench case {name!r}; valid: {', '.join(cases)}")
    if batch < 1 or steps < 1 or threads < 1:
        raise ValueError(f"batch, steps and threads must be >= 1, got {batch}, {steps}, {threads}")
    if not isolate:
        return _run_here(name, cases[name], preset, batch, steps, threads)
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: its own peak RSS
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(_run_here, name, cases[name], preset, batch, steps, threads).result()


def _run_here(name: str, case: BenchCase, preset: str, batch: int, steps: int, threads: int) -> dict:
    import models
    from harness.data.dataset import DataSpec
    from models.base import NeuralModel

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        spec = DataSpec(dict(MOSEI_ALIGNED_SHAPES), MOSEI_LABELS, aligned=True)
        model = models.create(case.model, spec, preset=preset, **case.overrides)
        if not isinstance(model, NeuralModel):
            raise ValueError(f"bench case {name!r}: {case.model!r} is not a neural model")
        inputs, masks, labels = _random_batch(spec, batch)
        timed = _time_steps if case.kind == "step" else _time_inference
        times = timed(model, inputs, masks, labels, steps)
    finally:
        torch.set_num_threads(previous_threads)
    median = statistics.median(times)
    config = getattr(model, "config", None)
    uses_supcon = getattr(config, "contrastive", False)
    return {
        "case": name,
        "model": case.model,
        "kind": case.kind,
        "preset": preset,
        "batch": batch,
        "steps": steps,
        "threads": threads,
        "median_step_ms": round(median * 1e3, 1),
        "min_step_ms": round(min(times) * 1e3, 1),
        "samples_per_s": round(batch / median, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),  # Linux: KiB
        "contrastive_mode": getattr(config, "contrastive_mode", None) if uses_supcon else None,
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "torch": torch.__version__,
    }


def _random_batch(spec, batch: int):
    g = torch.Generator().manual_seed(0)
    inputs = {m: torch.randn(batch, t, d, generator=g) for m, (t, d) in spec.modalities.items()}
    masks = {m: torch.ones(batch, t, dtype=torch.bool) for m, (t, d) in spec.modalities.items()}
    labels = (torch.rand(batch, spec.n_labels, generator=g) < 0.3).float()
    return inputs, masks, labels


def _time_steps(model, inputs, masks, labels, steps: int) -> list[float]:
    """Seconds per training step (forward, backward, Adam), after one uncounted warm-up step."""
    optimiser = torch.optim.Adam(model.parameters(), lr=5e-5)
    model.train()
    times = []
    for i in range(steps + 1):
        start = time.perf_counter()
        optimiser.zero_grad(set_to_none=True)
        model.training_loss(inputs, masks, labels).total.backward()
        optimiser.step()
        if i:
            times.append(time.perf_counter() - start)
    return times


def _time_inference(model, inputs, masks, labels, steps: int) -> list[float]:
    """Seconds per forward pass in eval mode without autograd, after one uncounted warm-up."""
    model.eval()
    times = []
    with torch.inference_mode():
        for i in range(steps + 1):
            start = time.perf_counter()
            model(inputs, masks)
            if i:
                times.append(time.perf_counter() - start)
    return times


def time_study(study: str = "no_shuffle", workers: int = 1) -> dict:
    """Wall time of a whole study as a user runs it (``invoke ablate``), in a fresh temporary store."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        command = [
            sys.executable, "-m", "invoke", "ablate", "--study", study, "--workers", str(workers),
            "--storage", f"{tmp}/optuna.journal", "--tracking-uri", f"sqlite:///{tmp}/mlflow.db",
        ]  # fmt: skip
        start = time.perf_counter()
        repo = Path(__file__).resolve().parents[1]  # where tasks.py is
        done = subprocess.run(command, capture_output=True, text=True, cwd=repo)
        seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"study {study!r} with {workers} worker(s) failed:\n{done.stderr[-2000:]}")
    return {"case": f"study-{study}-w{workers}", "kind": "study", "workers": workers, "wall_s": round(seconds, 1)}
