"""Typed configuration: training settings and their presets.

Model settings live in each model's own config dataclass (see ``models``); a preset
name (``harness.presets``) selects both the model's preset values and the training
values below.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from models.presets import preset_values

# What ``optimizer`` may name (see ``harness.optim``): the reference's BertAdam with warmup_linear
# and per-tensor clipping, or torch's AdamW with linear warm-up/decay and one global clip.
OPTIMIZERS = ("reference", "adamw")

# What ``precision`` may name; ``harness.precision`` says what each means on a device.
PRECISIONS = ("fp32", "bf16", "auto")


def precision_problem(precision) -> str | None:
    """What is wrong with ``precision`` (None: nothing): the one check, for study files, options and configs."""
    if precision not in PRECISIONS:
        return f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}"
    return None


def epochs_problem(epochs) -> str | None:
    """What is wrong with an epoch count (None: nothing): the one check, for study files, options and configs."""
    if epochs < 1:
        return f"must be >= 1, got {epochs}"
    return None


# The paper / reference protocol (CARAT.md section 5).
_PAPER_TRAINING = dict(
    lr=5e-5,
    weight_decay=0.01,
    batch_size=64,
    epochs=20,
    warmup_ratio=0.1,
    clip_norm=1.0,
    threshold=0.25,
    optimizer="reference",
    drop_last=True,
)
TRAIN_PRESETS: dict[str, dict] = {
    "paper": _PAPER_TRAINING,
    # Scaled so a run on the default synthetic data takes seconds on a CPU; still AdamW and every
    # sample in every epoch (the small preset's settings are under review separately). What differs:
    "small": {**_PAPER_TRAINING, "lr": 3e-3, "epochs": 12, "optimizer": "adamw", "drop_last": False},
}


@dataclass(frozen=True)
class TrainConfig:
    lr: float = 5e-5
    weight_decay: float = 0.01  # reference: not on biases and LayerNorms (harness.optim); adamw: every tensor
    batch_size: int = 64
    epochs: int = 20
    warmup_ratio: float = 0.1  # linear warm-up over this share of all steps, then linear decay
    clip_norm: float = 1.0  # reference: each tensor's gradient on its own; adamw: one global norm
    # "reference": the CARAT reference's BertAdam + warmup_linear (harness.optim); "adamw": torch AdamW.
    optimizer: str = "reference"
    # Drop the last partial training batch of each epoch, as the reference's loader does (255 steps
    # per epoch on aligned CMU-MOSEI). A training split smaller than one batch still gives its one
    # partial batch (the reference would train nothing).
    drop_last: bool = True
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
        if problem := epochs_problem(self.epochs):
            problems.append(f"epochs {problem}")
        if self.batch_size < 1:
            problems.append(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            problems.append(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            problems.append(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if not isinstance(self.drop_last, bool):
            problems.append(f"drop_last must be true or false, got {self.drop_last!r}")
        if precision_problem(self.precision):  # worded as the other fields here
            problems.append(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if not 0.0 < self.threshold < 1.0:
            problems.append(f"threshold must be in (0, 1), got {self.threshold}")
        if problems:
            raise ValueError("; ".join(problems))

    @classmethod
    def from_preset(cls, preset: str, **overrides) -> TrainConfig:
        values = preset_values(TRAIN_PRESETS, preset, "training")
        unknown = sorted(set(overrides) - set(cls.field_names()))
        if unknown:
            raise ValueError(f"unknown training field(s) {unknown}; valid: {', '.join(cls.field_names())}")
        return cls(**{**values, **overrides})

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def to_dict(self) -> dict:
        return asdict(self)
