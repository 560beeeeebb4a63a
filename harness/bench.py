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
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import torch
from torch.utils.flop_counter import FlopCounterMode

# Aligned CMU-MOSEI (CARAT.md section 8): GloVe text, FACET visual, COVAREP audio, 6 emotions.
MOSEI_ALIGNED_SHAPES = {"text": (60, 300), "visual": (60, 35), "audio": (60, 74)}
MOSEI_LABELS = ("happy", "sad", "anger", "surprise", "disgust", "fear")
CPU = torch.device("cpu")
BASELINES = ("early_fusion", "late_fusion", "mult")  # registered by models.baselines when present


@dataclass(frozen=True)
class BenchCase:
    model: str  # registry name
    kind: str  # "step" (training step) or "inference" (forward in eval mode)
    overrides: dict = field(default_factory=dict)


def _carat_cases() -> dict[str, BenchCase]:
    import models

    cases = {
        "carat-step": BenchCase("carat", "step", {"contrastive_mode": "reference"}),
        "carat-step-fast": BenchCase("carat", "step", {"contrastive_mode": "fast"}),
        # Layer recomputation in every precision (the paper preset recomputes only in float32).
        "carat-step-recompute": BenchCase("carat", "step", {"checkpoint_layers": True}),
    }
    # CARAT's ablation variants, as the registry lists them (what models.carat registers).
    variants = [name for name in models.list() if models.source(name) == "models.carat" and name != "carat"]
    cases.update({f"variant-{name}": BenchCase(name, "step") for name in variants})
    cases["inference"] = BenchCase("carat", "inference")
    return cases


def available_cases() -> dict[str, BenchCase]:
    """Every case: CARAT's, one per registered CARAT variant, and ``baseline-<name>`` for each neural
    baseline registered at run time."""
    import models

    registered = set(models.list())
    baselines = {f"baseline-{name}": BenchCase(name, "step") for name in BASELINES if name in registered}
    return {**_carat_cases(), **baselines}


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
    device: str = "cpu",
) -> dict:
    """Run one benchmark case; returns plain data (times in ms, memory in MB, FLOPs in GFLOP).

    ``precision`` is a ``TrainConfig.precision`` value, resolved for the device (``harness.precision``).
    ``peaks`` ({"fp32": GFLOP/s, "bf16": GFLOP/s}, from ``matmul_peaks`` on the same device) adds the
    fraction of peak; without it, and not isolated, the peaks are measured here after the case.
    ``device`` "cuda" (or "cuda:1"): the step runs there, memory is torch's peak allocation on it
    (``torch.cuda.max_memory_allocated``), the breakdown is GPU time per op.
    """
    from harness.precision import PRECISIONS

    cases = available_cases()
    if name not in cases:
        raise ValueError(f"unknown bench case {name!r}; valid: {', '.join(cases)}")
    if batch < 1 or steps < 1 or threads < 1:
        raise ValueError(f"batch, steps and threads must be >= 1, got {batch}, {steps}, {threads}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    _check_device(device)
    args = (name, cases[name], preset, batch, steps, threads, precision, peaks, device)
    if not isolate:
        return _run_here(*args)
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: its own peak RSS
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(_run_here, *args).result()


def _check_device(device: str) -> torch.device:
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"device must be cpu, cuda or cuda:N, got {device!r}") from exc
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be cpu, cuda or cuda:N, got {device!r}")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available here; use --device cpu")
    return resolved


def _run_here(
    name: str,
    case: BenchCase,
    preset: str,
    batch: int,
    steps: int,
    threads: int,
    precision: str,
    peaks: dict | None,
    device: str = "cpu",
) -> dict:
    import models
    from harness.data.dataset import DataSpec
    from harness.precision import precision_name, resolve_precision
    from models.base import NeuralModel

    target = _check_device(device)
    dtype = resolve_precision(precision, target)
    on_gpu = target.type == "cuda"
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        spec = DataSpec(dict(MOSEI_ALIGNED_SHAPES), MOSEI_LABELS, aligned=True)
        model = models.create(case.model, spec, preset=preset, **case.overrides)
        if not isinstance(model, NeuralModel):
            raise ValueError(f"bench case {name!r}: {case.model!r} is not a neural model")
        model.to(target)
        inputs, masks, labels = _random_batch(spec, batch, target)
        run = (_training_step if case.kind == "step" else _inference)(model, inputs, masks, labels, dtype, target)
        if on_gpu:
            torch.cuda.reset_peak_memory_stats(target)
        times, cpu_times = _time(run, steps, target)
        # Taken before the counted step and the peaks below: what plain steps need.
        # CPU: peak resident memory of the process (Linux: KiB); GPU: torch's peak allocation there.
        if on_gpu:
            peak_memory = torch.cuda.max_memory_allocated(target) / 2**20
        else:
            peak_memory = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        flops = count_flops(run)
        breakdown = time_breakdown(run, target)
        if peaks is None:
            peaks = matmul_peaks(threads, device=device)
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
        "device": str(target),
        "precision": precision_name(dtype),
        "batch": batch,
        "steps": steps,
        "threads": threads,
        "median_step_ms": round(median * 1e3, 1),
        "min_step_ms": round(min(times) * 1e3, 1),
        # CPU seconds of all the process's threads per step: on a shared machine, less inflated by
        # other processes than wall time (up to threads x wall time when every thread computes).
        "median_cpu_ms": round(statistics.median(cpu_times) * 1e3, 1),
        "samples_per_s": round(batch / median, 1),
        ("peak_gpu_mb" if on_gpu else "peak_rss_mb"): round(peak_memory, 1),
        "gflop_per_step": round(flops / 1e9, 2),
        "achieved_gflops": round(achieved, 1),
        "peak_gflops": peak,
        "fraction_of_peak": round(achieved / peak, 3) if peak else None,
        **{f"ms_{key}": value for key, value in breakdown.items()},
        "contrastive_mode": getattr(config, "contrastive_mode", None) if uses_supcon else None,
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "torch": torch.__version__,
    }


def matmul_peaks(
    threads: int = 2, isolate: bool = False, max_size: int = 4096, device: str = "cpu"
) -> dict[str, float]:
    """The device's matmul rate in GFLOP/s (at ``threads`` threads on CPU), for fp32 and bf16.

    Best of a few square matmuls, the size doubled from 64 until one takes at least
    0.1 s (or ``max_size`` is reached): large enough to run at full speed, small enough
    that an emulated bf16 (a CPU without native bf16) costs seconds, not minutes. On a GPU
    the size goes up to 4 x ``max_size`` (a GPU needs larger matrices to be busy); fp32 is
    what torch's current matmul precision setting gives (TF32 only if allowed).
    """
    if isolate:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            return pool.submit(matmul_peaks, threads, False, max_size, device).result()
    target = _check_device(device)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        dtypes = (("fp32", torch.float32), ("bf16", torch.bfloat16))
        largest = max_size * 4 if target.type == "cuda" else max_size
        return {name: _matmul_rate(dtype, largest, target) for name, dtype in dtypes}
    finally:
        torch.set_num_threads(previous_threads)


def _matmul_rate(dtype: torch.dtype, max_size: int, device: torch.device, repeats: int = 5) -> float:
    g = torch.Generator().manual_seed(0)
    size = 64
    while True:
        a, b = (torch.randn(size, size, generator=g).to(device, dtype) for _ in range(2))
        seconds = min(_seconds(torch.mm, a, b, device=device) for _ in range(2))  # the first may pay set-up
        if seconds >= 0.1 or size >= max_size:
            break
        size *= 2
    seconds = min([seconds] + [_seconds(torch.mm, a, b, device=device) for _ in range(repeats - 2)])
    return round(2 * size**3 / seconds / 1e9, 1)


def _seconds(fn, *args, device: torch.device = CPU) -> float:
    _synchronise(device)
    start = time.perf_counter()
    fn(*args)
    _synchronise(device)
    return time.perf_counter() - start


def _synchronise(device: torch.device) -> None:
    """Wait for the GPU's queued work (a no-op on CPU), so that a timer sees it done."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _random_batch(spec, batch: int, device: torch.device | str = "cpu"):
    g = torch.Generator().manual_seed(0)
    inputs = {m: torch.randn(batch, t, d, generator=g).to(device) for m, (t, d) in spec.modalities.items()}
    masks = {m: torch.ones(batch, t, dtype=torch.bool, device=device) for m, (t, d) in spec.modalities.items()}
    labels = (torch.rand(batch, spec.n_labels, generator=g) < 0.3).float().to(device)
    return inputs, masks, labels


def _training_step(
    model, inputs, masks, labels, dtype: torch.dtype, device: torch.device | str = "cpu"
) -> Callable[[], None]:
    """One training step (forward, backward, Adam) per call; as the trainer does, only the loss runs
    under autocast."""
    from harness.precision import autocast

    optimiser = torch.optim.Adam(model.parameters(), lr=5e-5)
    model.train()

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        with autocast(device, dtype):
            loss = model.training_loss(inputs, masks, labels).total
        loss.backward()
        optimiser.step()

    return step


def _inference(
    model, inputs, masks, labels, dtype: torch.dtype, device: torch.device | str = "cpu"
) -> Callable[[], None]:
    """One forward pass in eval mode without autograd per call."""
    from harness.precision import autocast

    model.eval()

    def forward() -> None:
        with torch.inference_mode(), autocast(device, dtype):
            model(inputs, masks)

    return forward


def _time(run: Callable[[], None], steps: int, device: torch.device = CPU) -> tuple[list[float], list[float]]:
    """Wall seconds and process CPU seconds of each of ``steps`` calls of ``run``, after one uncounted
    warm-up call."""
    run()
    times, cpu_times = [], []
    for _ in range(steps):
        _synchronise(device)
        start, cpu_start = time.perf_counter(), time.process_time()
        run()
        _synchronise(device)
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    return times, cpu_times


def count_flops(run: Callable[[], None]) -> int:
    """Floating-point operations of one call of ``run``, as torch's FlopCounterMode counts them
    (matmul-like ops, forward and backward, checkpoint recomputation included)."""
    with FlopCounterMode(display=False) as counter:
        run()
    return counter.get_total_flops()


# Where a step's time goes: torch profiler's self CPU time of every op, summed by category. An op run
# by the optimiser counts as "optimiser" whatever it is; an op nobody listed counts as elementwise if
# it computes values, "other" if it only reshapes, allocates or fills memory (or is profiler/autograd glue).
BREAKDOWN_CATEGORIES = ("matmul", "conversions", "random", "elementwise", "optimiser", "other")
_MATMUL_OPS = {"aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm", "aten::addbmm", "aten::addmv", "aten::mv"}
_MATMUL_PREFIXES = ("aten::_scaled_dot_product", "aten::mkldnn_rnn", "aten::mkldnn_", "aten::_convolution")
_CONVERSION_OPS = {"aten::copy_", "aten::_to_copy", "aten::to", "aten::_copy_from", "aten::_copy_from_and_resize"}
_CONVERSION_OPS |= {"aten::clone", "aten::contiguous"}
_RANDOM_OPS = {"aten::random_", "aten::uniform_", "aten::normal_", "aten::bernoulli_", "aten::bernoulli"}
_RANDOM_OPS |= {"aten::rand", "aten::randn", "aten::randint", "aten::randperm", "aten::exponential_", "aten::rand_like"}
_MEMORY_OPS = {"aten::empty", "aten::empty_strided", "aten::empty_like", "aten::zeros", "aten::zeros_like"}
_MEMORY_OPS |= {"aten::ones", "aten::fill_", "aten::zero_", "aten::resize_", "aten::set_", "aten::full"}
# Ops that only make a view or read metadata (their self time is dispatcher overhead).
_VIEW_OPS = {"view", "reshape", "_reshape_alias", "transpose", "permute", "expand", "as_strided", "select", "slice"}
_VIEW_OPS |= {"unsqueeze", "squeeze", "t", "unbind", "split", "split_with_sizes", "detach", "alias", "narrow"}
_VIEW_OPS |= {"chunk", "flatten", "unflatten", "expand_as", "view_as", "numpy_T", "lift_fresh", "_unsafe_view"}
_VIEW_OPS |= {"item", "_local_scalar_dense", "is_nonzero", "result_type", "size", "stride"}


def op_category(name: str) -> str:
    """The breakdown category (``BREAKDOWN_CATEGORIES``, all but "optimiser") of one profiled op name."""
    if name in _MATMUL_OPS or name.startswith(_MATMUL_PREFIXES):
        return "matmul"
    if name in _CONVERSION_OPS:
        return "conversions"
    if name in _RANDOM_OPS:
        return "random"
    if not name.startswith("aten::") or name in _MEMORY_OPS or name.removeprefix("aten::") in _VIEW_OPS:
        return "other"
    return "elementwise"


def time_breakdown(run: Callable[[], None], device: torch.device = CPU) -> dict[str, float]:
    """Milliseconds of one call of ``run`` per ``BREAKDOWN_CATEGORIES`` entry, from torch.profiler.

    On CPU: every op's self CPU time (they add up to about the call's wall time, profiler overhead
    included). On a GPU: the GPU time of the kernels each op launched, so the categories add up to
    the time the GPU was busy (what the CPU spends launching is not in it).
    """
    from torch.profiler import ProfilerActivity, profile

    on_gpu = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
    with profile(activities=activities) as prof:
        run()
        _synchronise(device)
    totals = dict.fromkeys(BREAKDOWN_CATEGORIES, 0.0)
    for event in prof.events():
        micros = event.self_device_time_total if on_gpu else event.self_cpu_time_total
        totals[_event_category(event)] += micros / 1e3
    return {key: round(value, 1) for key, value in totals.items()}


def _event_category(event) -> str:
    parent = event
    while parent is not None:
        if parent.name.startswith("Optimizer.step"):  # torch.optim's record_function around step()
            return "optimiser"
        parent = parent.cpu_parent
    return op_category(event.name)


def time_study(study: str = "no_shuffle", workers: int = 1) -> dict:
    """Wall time of a whole study as ``invoke ablate --study <study>`` runs it (the same library calls),
    in a fresh temporary store."""
    import tempfile

    from harness import runner, studies

    with tempfile.TemporaryDirectory() as tmp:
        options = runner.RunOptions(
            workers=workers, storage=f"{tmp}/optuna.journal", tracking_uri=f"sqlite:///{tmp}/mlflow.db"
        )
        start = time.perf_counter()
        outcome = runner.run(studies.load(study), options)
        seconds = time.perf_counter() - start
    if not outcome.ok:
        raise RuntimeError(
            f"study {study!r} with {workers} worker(s): {len(outcome.failed)} run(s) failed, "
            f"{len(outcome.missing)} missing"
        )
    return {"case": f"study-{study}-w{workers}", "kind": "study", "workers": workers, "wall_s": round(seconds, 1)}
