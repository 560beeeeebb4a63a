"""Typed configuration: training settings and their presets.

Model settings live in each model's own config dataclass (see ``models``); a preset
name selects both the model's preset values and the training values below.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

# What ``precision`` may name; ``harness.precision`` says what each means on a device.
PRECISIONS = ("fp32", "bf16", "auto")

TRAIN_PRESETS: dict[str, dict] = {
    # The paper / reference protocol (CARAT.md section 5).
    "paper": dict(lr=5e-5, weight_decay=0.01, batch_size=64, epochs=20, warmup_ratio=0.1, clip_norm=1.0, threshold=0.25),
    # Same protocol, scaled so a run on the default synthetic data takes seconds on a CPU.
    "small": dict(lr=3e-3, weight_decay=0.01, batch_size=64, epochs=12, warmup_ratio=0.1, clip_norm=1.0, threshold=0.25),
}


@dataclass(frozen=True)
class TrainConfig:
    lr: float = 5e-5
    weight_decay: float = 0.01
    batch_size: int = 64
    epochs: int = 20
    warmup_ratio: float = 0.1  # linear warm-up over this share of all steps, then linear decay
    clip_norm: float = 1.0
    threshold: float = 0.25  # decision threshold on scores
    tune_threshold: bool = False  # per-label threshold chosen on the validation split (never test)
    seed: int = 1
    device: str = "cpu"  # "cpu", "cuda", "cuda:1", or "auto"
    # "fp32" (reproducible on CPU), "bf16" (autocast; losses, prototypes, queue stay fp32), or "auto"
    # (bf16 on CUDA and on CPUs with native bf16, else fp32); see harness.precision.
    precision: str = "fp32"
    progress: bool = True

    def __post_init__(self):
        problems = []
        if self.epochs < 1:
            problems.append(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            problems.append(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            problems.append(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            problems.append(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.precision not in PRECISIONS:
            problems.append(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if not 0.0 < self.threshold < 1.0:
            problems.append(f"threshold must be in (0, 1), got {self.threshold}")
        if problems:
            raise ValueError("; ".join(problems))

    @classmethod
    def from_preset(cls, preset: str, **overrides) -> "TrainConfig":
        if preset not in TRAIN_PRESETS:
            raise ValueError(f"unknown preset {preset!r}; valid: {', '.join(TRAIN_PRESETS)}")
        unknown = sorted(set(overrides) - set(cls.field_names()))
        if unknown:
            raise ValueError(f"unknown training field(s) {unknown}; valid: {', '.join(cls.field_names())}")
        return cls(**{**TRAIN_PRESETS[preset], **overrides})

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def to_dict(self) -> dict:
        return asdict(self)
