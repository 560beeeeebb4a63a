"""Example plugin: two models of your own, run by the harness beside CARAT.

A study lists this file under ``plugins`` (``examples/my_study.yaml``) and names its models
under ``variants``; ``invoke variants --plugin examples/my_models.py`` lists them. Each
builder is ``fn(spec, preset="small", **overrides)``: ``spec`` gives the modalities
(name -> (T, D)) and the label names, ``preset`` is the study's (``small`` or ``paper``),
and ``overrides`` are the study's model fields, checked against the config dataclass (whose
fields the harness logs as the run's parameters). The first line of the builder's docstring
is the description ``invoke variants`` shows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models import register
from models.base import ClassicModel, LossOutput, NeuralModel, build_config, masked_mean

# -- a neural model: trained by the harness's epoch loop -----------------------------------


@dataclass(frozen=True)
class MeanPoolConfig:
    hidden: int = 64  # width of the MLP's hidden layer
    dropout: float = 0.1

    def __post_init__(self):
        if self.hidden < 1:
            raise ValueError(f"hidden must be >= 1, got {self.hidden}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


MEAN_POOL_PRESETS = {"small": dict(hidden=64, dropout=0.1), "paper": dict(hidden=256, dropout=0.3)}


class MeanPoolMLP(NeuralModel):
    """Masked time-mean of every modality, concatenated, then LayerNorm -> Linear -> GELU -> Linear to logits."""

    def __init__(self, spec, config: MeanPoolConfig):
        super().__init__()
        self.spec, self.config = spec, config
        width = sum(dim for _, dim in spec.modalities.values())
        self.mlp = nn.Sequential(
            nn.LayerNorm(width),
            nn.Linear(width, config.hidden),
            nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, spec.n_labels),
        )

    def logits(self, inputs: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> torch.Tensor:
        # masked_mean ignores padded steps (mask False), so padding never reaches the prediction.
        pooled = [masked_mean(inputs[m], masks[m]) for m in self.spec.modality_names]
        return self.mlp(torch.cat(pooled, dim=-1))

    def forward(self, inputs, masks) -> torch.Tensor:
        """(B, C) scores in [0, 1]."""
        return torch.sigmoid(self.logits(inputs, masks))

    def training_loss(self, inputs, masks, labels) -> LossOutput:
        bce = F.binary_cross_entropy_with_logits(self.logits(inputs, masks), labels.float())
        return LossOutput(total=bce, parts={"bce": bce})


@register
def mean_pool_mlp(spec, preset: str = "small", **overrides) -> MeanPoolMLP:
    """Mean-pool MLP: masked time-mean per modality, concatenated, one hidden layer, BCE."""
    if preset not in MEAN_POOL_PRESETS:
        raise ValueError(f"mean_pool_mlp: unknown preset {preset!r}; valid presets: {', '.join(MEAN_POOL_PRESETS)}")
    return MeanPoolMLP(spec, build_config(MeanPoolConfig, MEAN_POOL_PRESETS[preset], overrides, "mean_pool_mlp"))


# -- a classic model: fitted once on the training split --------------------------------------


@dataclass(frozen=True)
class PriorConfig:
    smoothing: float = 1.0  # Laplace smoothing of the label frequencies

    def __post_init__(self):
        if self.smoothing < 0:
            raise ValueError(f"smoothing must be >= 0, got {self.smoothing}")


class LabelPrior(ClassicModel):
    """Every sample gets each label's training frequency as its score: the floor any model must beat."""

    def __init__(self, spec, config: PriorConfig):
        self.spec, self.config = spec, config
        self.prior_: np.ndarray | None = None

    def fit(self, inputs, masks, labels) -> LabelPrior:
        labels = np.asarray(labels, dtype=np.float64)
        s = self.config.smoothing
        self.prior_ = (labels.sum(axis=0) + s) / (len(labels) + 2 * s)
        return self

    def predict_scores(self, inputs, masks) -> np.ndarray:
        if self.prior_ is None:
            raise RuntimeError("LabelPrior is not fitted; call fit() first")
        n = len(inputs[self.spec.modality_names[0]])
        return np.tile(self.prior_, (n, 1)).astype(np.float32)


@register
def label_prior(spec, preset: str = "small", **overrides) -> LabelPrior:
    """Label prior: each label's (smoothed) training frequency as every sample's score."""
    return LabelPrior(spec, build_config(PriorConfig, {}, overrides, "label_prior"))
