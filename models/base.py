"""The two kinds of model the trainer knows, behind one contract.

* ``NeuralModel`` (a torch module) is trained by the epoch loop of ``harness.trainer``:
  ``training_loss`` gives the loss of a batch (and may update non-gradient state such as
  CARAT's prototypes and queue), ``forward`` gives prediction scores in [0, 1].
* ``ClassicModel`` (scikit-learn on pooled features) is fitted once on the train split.

Both take the same plain inputs: ``inputs`` maps modality name -> (B, T, D) float
features, ``masks`` maps modality name -> (B, T) bool (True = real step), labels are
(B, C) 0/1 floats, scores are (B, C) in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import nn


@dataclass
class LossOutput:
    total: torch.Tensor  # scalar, what backward() is called on
    parts: dict[str, torch.Tensor]  # named, already-weighted terms (for logging)


class NeuralModel(nn.Module):
    """Base class of every torch model in the registry."""

    config: object  # the model's typed config dataclass

    def forward(self, inputs: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def training_loss(
        self, inputs: dict[str, torch.Tensor], masks: dict[str, torch.Tensor], labels: torch.Tensor
    ) -> LossOutput:
        raise NotImplementedError

    def latents(self, inputs, masks) -> torch.Tensor | None:
        """Label-specific latent features (B, M, C, dz) for visualisation; None if the model has none."""
        return None

    def check_training(self, batch_size: int) -> None:
        """Refuse, before any training, a configuration this model cannot train with.

        ``batch_size`` is the largest training batch it will see (the trainer passes
        ``min(cfg.batch_size, number of training samples)``). Raises ValueError saying what
        to change; the default accepts everything. ``harness.trainer.fit`` calls it first,
        so a bad setting fails in a second rather than after an epoch, or silently.
        """


class ClassicModel:
    """Base class of the scikit-learn baselines (fitted once, no epochs)."""

    config: object

    def fit(self, inputs: dict[str, np.ndarray], masks: dict[str, np.ndarray], labels: np.ndarray) -> ClassicModel:
        raise NotImplementedError

    def predict_scores(self, inputs: dict[str, np.ndarray], masks: dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError


def build_config(config_cls, preset_values: dict, overrides: dict, model_name: str):
    """Typed config from a preset plus overrides; an unknown field is refused with the valid ones."""
    valid = {f.name for f in fields(config_cls)}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise ValueError(f"model {model_name!r}: unknown field(s) {unknown}; valid fields: {', '.join(sorted(valid))}")
    return config_cls(**{**preset_values, **overrides})


def float32_region(device: torch.device | str) -> torch.autocast:
    """Autocast off on ``device``: what needs float32 range or accumulation (losses, log-sum-exp,
    running averages) runs in float32 even inside a bf16 autocast region; outside one it changes nothing."""
    return torch.autocast(device_type=torch.device(device).type, enabled=False)


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """bf16/fp16 (from autocast) up to float32; float32 and float64 tensors are returned as they are."""
    return x.float() if torch.finfo(x.dtype).bits < 32 else x


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over time of (B, T, D) features, counting only real steps; all-padding rows give 0."""
    weights = mask.to(x.dtype).unsqueeze(-1)
    return (x * weights).sum(1) / weights.sum(1).clamp_min(1.0)


def pooled_numpy(inputs: dict[str, np.ndarray], masks: dict[str, np.ndarray], order) -> np.ndarray:
    """Concatenate the masked time-means of every modality: the pooled features of the classic baselines."""
    parts = []
    for m in order:
        w = masks[m].astype(np.float32)[..., None]
        parts.append((inputs[m] * w).sum(1) / np.maximum(w.sum(1), 1.0))
    return np.concatenate(parts, axis=1)
