"""Which device and how many CPU threads each study worker gets.

``--device`` and ``--workers`` of ``invoke ablate`` / ``invoke tune`` name the devices; this module
turns them into one ``WorkerPlacement`` per worker, as a pure function of the counts it is given
(no GPU is touched, so it is testable anywhere):

* ``cpu``: every worker on the CPU, the cores shared out between them.
* ``cuda``: every visible GPU, workers dealt round-robin: one per GPU when the workers equal the
  GPUs, several per GPU when there are more workers (worker i on GPU i mod G), the first N GPUs
  when there are fewer.
* ``cuda:0,cuda:2`` (or ``cuda:1``): only those GPUs, dealt the same way.
* ``auto``: ``cuda`` where a GPU is visible, else ``cpu``.

CPU threads: the cores divided by the workers (at least 1), so that workers do not oversubscribe
the CPU; a GPU worker needs few of them (launching kernels, preparing batches), so they are capped
at ``GPU_WORKER_THREADS``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

GPU_WORKER_THREADS = 4


@dataclass(frozen=True)
class WorkerPlacement:
    worker: int  # 0-based worker index
    device: str  # "cpu" or "cuda:N", what TrainConfig.device takes
    threads: int  # torch CPU threads (torch.set_num_threads)


def plan_devices(device: str, workers: int, gpu_count: int, cpu_count: int) -> list[WorkerPlacement]:
    """One placement per worker for ``--device device --workers workers`` on a machine with
    ``gpu_count`` visible GPUs (``torch.cuda.device_count()``) and ``cpu_count`` cores."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if gpu_count < 0 or cpu_count < 1:
        raise ValueError(f"gpu_count must be >= 0 and cpu_count >= 1, got {gpu_count} and {cpu_count}")
    devices = _devices(device.strip().lower(), gpu_count)
    threads = max(1, cpu_count // workers)
    if devices != ["cpu"]:
        threads = min(threads, GPU_WORKER_THREADS)
    return [WorkerPlacement(i, devices[i % len(devices)], threads) for i in range(workers)]


def _devices(device: str, gpu_count: int) -> list[str]:
    if device == "auto":
        device = "cuda" if gpu_count else "cpu"
    if device == "cpu":
        return ["cpu"]
    if device == "cuda":
        if not gpu_count:
            raise ValueError("--device cuda: no GPU is visible here (torch.cuda.device_count() is 0); use cpu")
        return [f"cuda:{i}" for i in range(gpu_count)]
    names = [name.strip() for name in device.split(",")]
    indices = []
    for name in names:
        kind, _, index = name.partition(":")
        if kind != "cuda" or not index.isdigit():
            raise ValueError(f"device must be cpu, auto, cuda or a list like cuda:0,cuda:2; got {device!r}")
        if int(index) >= gpu_count:
            raise ValueError(f"device {name!r}: only {gpu_count} GPU(s) visible (cuda:0 to cuda:{gpu_count - 1})")
        indices.append(int(index))
    if len(set(indices)) != len(indices):
        raise ValueError(f"device list {device!r} names a GPU twice")
    return [f"cuda:{i}" for i in indices]


def available_cpus() -> int:
    """The CPUs this process may run on (a SLURM task's allocation, a container's cgroup), not the
    machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity on this platform
        return os.cpu_count() or 1


def placements_here(device: str, workers: int) -> list[WorkerPlacement]:
    """``plan_devices`` for this machine: its visible GPUs and the CPUs this process may use."""
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return plan_devices(device, workers, gpus, available_cpus())


def device_name(device: str) -> str:
    """What a run's ``gpu_name`` tag says: the GPU's model name, or "none" on the CPU."""
    if not device.startswith("cuda"):
        return "none"
    import torch

    return torch.cuda.get_device_name(torch.device(device))
