"""Torch building blocks shared by the neural baselines.

Masking convention: ``mask`` is (B, T) bool with True = real step. Padding must never
reach an output: attention ignores padded keys, pooling ignores padded steps. A sample
whose modality has no real step at all is the one case attention cannot mask (a softmax
over no key is NaN), so such a row attends to every key and its result is zeroed by
whoever reads it (pooling gives 0, cross-attention adds nothing).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.base import LossOutput, NeuralModel, at_least_float32, masked_mean
from models.baselines.common import check_inputs

POOLINGS = ("mean", "last")


def sinusoidal_positions(length: int, dim: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(length, dim) fixed sine/cosine position codes (Vaswani et al.), so any sequence length works."""
    position = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    codes = torch.zeros(length, dim, device=device, dtype=torch.float32)
    codes[:, 0::2] = torch.sin(position * frequency)
    codes[:, 1::2] = torch.cos(position * frequency[: dim // 2])
    return codes.to(dtype)


def keys_to_ignore(mask: torch.Tensor) -> torch.Tensor:
    """``key_padding_mask`` (True = ignore) for attention; a row without any real step ignores nothing."""
    return ~mask & mask.any(dim=1, keepdim=True)


def has_real_step(mask: torch.Tensor) -> torch.Tensor:
    """(B, 1, 1) float: 1 where the modality has at least one real step."""
    return mask.any(dim=1).to(torch.float32)[:, None, None]


def last_real_step(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, d) features at the last real step of each row (wherever the padding sits); 0 for an empty row."""
    steps = torch.arange(1, mask.shape[1] + 1, device=mask.device)
    last = (mask.long() * steps).argmax(dim=1)
    picked = h[torch.arange(h.shape[0], device=h.device), last]
    return picked * mask.any(dim=1, keepdim=True).to(h.dtype)


def pool(h: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """Summarise (B, T, d) over real steps: ``"mean"`` (masked mean) or ``"last"`` (last real step)."""
    if how == "mean":
        return masked_mean(h, mask)
    if how == "last":
        return last_real_step(h, mask)
    raise ValueError(f"unknown pooling {how!r}; valid: {', '.join(POOLINGS)}")


def check_transformer_sizes(d_model: int, n_heads: int, ff_mult: int, *dropouts: float) -> None:
    """Refuse sizes torch would reject later with a less helpful message."""
    if d_model < 1 or n_heads < 1 or d_model % n_heads:
        raise ValueError(f"d_model ({d_model}) must be a positive multiple of n_heads ({n_heads})")
    if ff_mult < 1:
        raise ValueError(f"ff_mult must be >= 1, got {ff_mult}")
    if not all(0.0 <= p < 1.0 for p in dropouts):
        raise ValueError(f"dropout rates must be in [0, 1), got {list(dropouts)}")


class ModalityEmbedding(nn.Module):
    """One modality's input to width d: LayerNorm over features, Linear D -> d, sinusoidal positions, dropout."""

    def __init__(self, in_dim: int, d_model: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(in_dim)
        self.project = nn.Linear(in_dim, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.project(self.norm(x))
        return self.dropout(h + sinusoidal_positions(h.shape[1], h.shape[2], h.device, h.dtype))


def self_attention_encoder(d_model: int, n_heads: int, n_layers: int, ff_mult: int, dropout: float) -> nn.Module:
    """Pre-norm Transformer encoder (GELU) with a final LayerNorm; call with ``src_key_padding_mask``."""
    layer = nn.TransformerEncoderLayer(
        d_model, n_heads, dim_feedforward=ff_mult * d_model, dropout=dropout,
        activation="gelu", batch_first=True, norm_first=True,
    )
    # Nested tensors would make eval-mode padding outputs differ from training; masking already suffices.
    return nn.TransformerEncoder(layer, n_layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False)


def classifier_head(in_dim: int, hidden: int, n_labels: int, dropout: float) -> nn.Module:
    """Two-layer MLP to label logits."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, n_labels))


class LogitModel(NeuralModel):
    """Shared contract of the neural baselines: validate inputs, scores = sigmoid(logits), loss = BCE-with-logits.

    Subclasses implement ``logits``; one whose score is not a single sigmoid (late fusion)
    overrides ``scores`` and ``loss`` instead. Scores and losses are float32 even under bf16
    autocast (``harness.precision``).
    """

    def __init__(self, spec, config):
        super().__init__()
        self.spec = spec
        self.config = config

    def forward(self, inputs, masks) -> torch.Tensor:
        check_inputs(self.spec, inputs, masks)
        return self.scores(inputs, {m: k.bool() for m, k in masks.items()})

    def training_loss(self, inputs, masks, labels) -> LossOutput:
        check_inputs(self.spec, inputs, masks, labels)
        return self.loss(inputs, {m: k.bool() for m, k in masks.items()}, labels)

    def logits(self, inputs, masks) -> torch.Tensor:
        raise NotImplementedError

    def scores(self, inputs, masks) -> torch.Tensor:
        return torch.sigmoid(at_least_float32(self.logits(inputs, masks)))

    def loss(self, inputs, masks, labels) -> LossOutput:
        logits = at_least_float32(self.logits(inputs, masks))
        bce = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
        return LossOutput(bce, {"bce": bce})
