"""Numeric precision of a run: float32 throughout, or bfloat16 autocast.

``TrainConfig.precision`` names one of ``PRECISIONS``:

* ``"fp32"`` (the default): no autocast on any device. On CPU, with the deterministic
  kernels the trainer turns on, the same seed gives bit-identical runs.
* ``"bf16"``: matmul-heavy ops (linear layers, batched matmuls) run under
  ``torch.autocast(dtype=torch.bfloat16)``; parameters, gradients and optimiser state
  stay float32, and the models keep in float32 what needs range or accumulation (losses,
  SupCon's log-sum-exp, CARAT's prototypes and queue). Honoured on every device, but a
  CPU without native bf16 dot products (AVX512-BF16 or AMX) emulates them, tens to
  hundreds of times slower than float32: ``auto`` never picks it there.
* ``"auto"``: bf16 where it pays off -- on CUDA (what GPU runs always used before this
  option existed) and on CPUs with native bf16 -- otherwise fp32.

Why fp32 stays the default rather than ``auto``: ``auto`` resolves per machine, so one
study spread over machines with and without bf16 hardware would mix precisions; and a
bf16 run, though repeatable on one machine, is not the fp32 computation the tests check
against the reference. Ask for bf16 explicitly.
"""

from __future__ import annotations

import torch

from harness.config import PRECISIONS


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` computes bf16 matmuls natively (so that bf16 is faster than fp32 there)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        # Private helpers of torch.cpu (present since 2.1); missing ones mean "not known to be supported".
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)
    return False


def resolve_precision(precision: str, device: torch.device | str) -> torch.dtype:
    """The compute dtype that ``precision`` means on ``device``: torch.float32 or torch.bfloat16."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    return torch.bfloat16 if native_bf16(device) else torch.float32


def precision_name(dtype: torch.dtype) -> str:
    """``"fp32"`` or ``"bf16"``: how results and logs name a resolved compute dtype."""
    return {torch.float32: "fp32", torch.bfloat16: "bf16"}[dtype]


def autocast(device: torch.device | str, dtype: torch.dtype) -> torch.autocast:
    """The context a forward pass (and its loss) runs in: bf16 autocast, or autocast off for float32."""
    device = torch.device(device)
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16)
