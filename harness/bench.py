"""Micro-benchmarks: training-step time and peak memory of CARAT, its variants and the neural
baselines, and CARAT's inference throughput, on random data of the aligned CMU-MOSEI shape,
each with its distance to what the machine's matmuls can do.

    >>> from harness.bench import run_case, case_names, matmul_peaks
    >>> peaks = matmul_peaks(threads=2)
    >>> run_case("carat-step", preset="paper", batch=64, steps=5, threads=2, peaks=peaks)
    {'case': 'carat-step', 'median_step_ms': ..., 'peak_rss_mb': ..., 'gflop_per_step': ..., ...}

A step is forward, backward and an Adam step; one warm-up step (or forward) is not
timed. Each case runs by default in a fresh process, so that its peak resident memory
(``peak_rss_mb``, from getrusage) is its own and not that of earlier cases.

Distance to the limit: one more step, after the timed ones, runs under torch's
``FlopCounterMode``, which counts the floating-point operations of every matmul-like op it dispatches (linear,
(b)mm, attention; elementwise ops, softmax and normalisation are not counted), forward
and backward, checkpoint recomputation included. ``matmul_peaks`` times large square
matmuls at the bench's thread count in fp32 and bf16; a case reports its achieved
GFLOP/s (counted FLOPs / median step time) and that as a fraction of the peak of its
precision. A fraction near 1 means only fewer FLOPs or faster arithmetic can help.
"""

from __future__ import annotations

import multiprocessing
import resource
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

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
        # Under --precision bf16/auto: no layer recomputation (the paper preset recomputes always).
        "carat-step-bf16-no-recompute": BenchCase("carat", "step", {"checkpoint_layers": "fp32"}),
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
    name: str,
    preset: str = "paper",
    batch: int = 64,
    steps: int = 5,
    threads: int = 2,
    isolate: bool = True,
    precision: str = "fp32",
    peaks: dict | None = None,
) -> dict:
    """Run one benchmark case; returns plain data (times in ms, memory in MB, FLOPs in GFLOP).

    ``precision`` is a ``TrainConfig.precision`` value, resolved for the CPU (``harness.precision``).
    ``peaks`` ({"fp32": GFLOP/s, "bf16": GFLOP/s}, from ``matmul_peaks``) adds the fraction of peak;
    without it, and not isolated, the peaks are measured here after the case.
    """
    from harness.precision import PRECISIONS

    cases = available_cases()
    if name not in cases:
        raise ValueError(f"unknown bench case {name!r}; valid: {', '.join(cases)}")
    if batch < 1 or steps < 1 or threads < 1:
        raise ValueError(f"batch, steps and threads must be >= 1, got {batch}, {steps}, {threads}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if not isolate:
        return _run_here(name, cases[name], preset, batch, steps, threads, precision, peaks)
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: its own peak RSS
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(_run_here, name, cases[name], preset, batch, steps, threads, precision, peaks).result()


def _run_here(
    name: str, case: BenchCase, preset: str, batch: int, steps: int, threads: int, precision: str, peaks: dict | None
) -> dict:
    import models
    from harness.data.dataset import DataSpec
    from harness.precision import precision_name, resolve_precision
    from models.base import NeuralModel

    dtype = resolve_precision(precision, "cpu")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        spec = DataSpec(dict(MOSEI_ALIGNED_SHAPES), MOSEI_LABELS, aligned=True)
        model = models.create(case.model, spec, preset=preset, **case.overrides)
        if not isinstance(model, NeuralModel):
            raise ValueError(f"bench case {name!r}: {case.model!r} is not a neural model")
        inputs, masks, labels = _random_batch(spec, batch)
        run = (_training_step if case.kind == "step" else _inference)(model, inputs, masks, labels, dtype)
        times = _time(run, steps)
        # Linux: KiB. Taken before the counted step and the peaks below: what plain steps need.
        peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        flops = count_flops(run)
        if peaks is None:
            peaks = matmul_peaks(threads)
    finally:
        torch.set_num_threads(previous_threads)
    median = statistics.median(times)
    config = getattr(model, "config", None)
    uses_supcon = getattr(config, "contrastive", False)
    achieved = flops / median / 1e9
    peak = peaks.get(precision_name(dtype))
    return {
        "case": name,
        "model": case.model,
        "kind": case.kind,
        "preset": preset,
        "precision": precision_name(dtype),
        "batch": batch,
        "steps": steps,
        "threads": threads,
        "median_step_ms": round(median * 1e3, 1),
        "min_step_ms": round(min(times) * 1e3, 1),
        "samples_per_s": round(batch / median, 1),
        "peak_rss_mb": round(peak_rss, 1),
        "gflop_per_step": round(flops / 1e9, 2),
        "achieved_gflops": round(achieved, 1),
        "peak_gflops": peak,
        "fraction_of_peak": round(achieved / peak, 3) if peak else None,
        "contrastive_mode": getattr(config, "contrastive_mode", None) if uses_supcon else None,
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "torch": torch.__version__,
    }


def matmul_peaks(threads: int = 2, isolate: bool = False, max_size: int = 4096) -> dict[str, float]:
    """The machine's matmul rate in GFLOP/s at ``threads`` threads, for fp32 and bf16.

    Best of a few square matmuls, the size doubled from 64 until one takes at least
    0.1 s (or ``max_size`` is reached): large enough to run at full speed, small enough
    that an emulated bf16 (a CPU without native bf16) costs seconds, not minutes.
    """
    if isolate:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            return pool.submit(matmul_peaks, threads, False, max_size).result()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        dtypes = (("fp32", torch.float32), ("bf16", torch.bfloat16))
        return {name: _matmul_rate(dtype, max_size) for name, dtype in dtypes}
    finally:
        torch.set_num_threads(previous_threads)


def _matmul_rate(dtype: torch.dtype, max_size: int, repeats: int = 5) -> float:
    g = torch.Generator().manual_seed(0)
    size = 64
    while True:
        a, b = (torch.randn(size, size, generator=g).to(dtype) for _ in range(2))
        seconds = min(_seconds(torch.mm, a, b) for _ in range(2))  # the first call may pay one-off set-up
        if seconds >= 0.1 or size >= max_size:
            break
        size *= 2
    seconds = min([seconds] + [_seconds(torch.mm, a, b) for _ in range(repeats - 2)])
    return round(2 * size**3 / seconds / 1e9, 1)


def _seconds(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def _random_batch(spec, batch: int):
    g = torch.Generator().manual_seed(0)
    inputs = {m: torch.randn(batch, t, d, generator=g) for m, (t, d) in spec.modalities.items()}
    masks = {m: torch.ones(batch, t, dtype=torch.bool) for m, (t, d) in spec.modalities.items()}
    labels = (torch.rand(batch, spec.n_labels, generator=g) < 0.3).float()
    return inputs, masks, labels


def _training_step(model, inputs, masks, labels, dtype: torch.dtype) -> Callable[[], None]:
    """One training step (forward, backward, Adam) per call; as the trainer does, only the loss runs
    under autocast."""
    from harness.precision import autocast

    optimiser = torch.optim.Adam(model.parameters(), lr=5e-5)
    model.train()

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        with autocast("cpu", dtype):
            loss = model.training_loss(inputs, masks, labels).total
        loss.backward()
        optimiser.step()

    return step


def _inference(model, inputs, masks, labels, dtype: torch.dtype) -> Callable[[], None]:
    """One forward pass in eval mode without autograd per call."""
    from harness.precision import autocast

    model.eval()

    def forward() -> None:
        with torch.inference_mode(), autocast("cpu", dtype):
            model(inputs, masks)

    return forward


def _time(run: Callable[[], None], steps: int) -> list[float]:
    """Seconds of each of ``steps`` calls of ``run``, after one uncounted warm-up call."""
    run()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def count_flops(run: Callable[[], None]) -> int:
    """Floating-point operations of one call of ``run``, as torch's FlopCounterMode counts them
    (matmul-like ops, forward and backward, checkpoint recomputation included)."""
    with FlopCounterMode(display=False) as counter:
        run()
    return counter.get_total_flops()


def time_study(study: str = "no_shuffle", workers: int = 1) -> dict:
    """Wall time of a whole study as a user runs it (``invoke ablate``), in a fresh temporary store."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        command = [
            sys.executable,
            "-m",
            "invoke",
            "ablate",
            "--study",
            study,
            "--workers",
            str(workers),
            "--storage",
            f"{tmp}/optuna.journal",
            "--tracking-uri",
            f"sqlite:///{tmp}/mlflow.db",
        ]
        start = time.perf_counter()
        repo = Path(__file__).resolve().parents[1]  # where tasks.py is
        done = subprocess.run(command, capture_output=True, text=True, cwd=repo)
        seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"study {study!r} with {workers} worker(s) failed:\n{done.stderr[-2000:]}")
    return {"case": f"study-{study}-w{workers}", "kind": "study", "workers": workers, "wall_s": round(seconds, 1)}
