"""Early and late fusion baselines (torch).

* ``early_fusion`` fuses at the input: every modality is projected to width d and all
  modalities' steps are concatenated along time into one token sequence (each token
  tagged with a learned modality embedding and its position within its modality); one
  Transformer encoder attends over all of them with padding masked; the masked mean of
  the tokens goes to an MLP. Concatenating along time rather than along features is what
  lets the same model read aligned, unaligned (a different T per modality) and vector
  (T = 1) modalities alike.
* ``late_fusion`` fuses at the decision: each modality has its own encoder and
  classifier; the score is the mean of the per-modality sigmoid probabilities, and every
  modality's head is trained with BCE against the labels.

The Transformer layers are torch's, computed leanly with the same math and random draws
(``models.baselines.layers``); ``checkpoint_layers`` (on in the paper preset) recomputes
each layer in backward, which changes no result.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.base import LossOutput, at_least_float32, build_config, masked_mean
from models.baselines.layers import (
    LogitModel,
    ModalityEmbedding,
    check_transformer_sizes,
    classifier_head,
    keys_to_ignore,
    self_attention_encoder,
)
from models.presets import preset_values
from models.registry import register


@dataclass(frozen=True)
class FusionConfig:
    d_model: int = 256
    n_heads: int = 8
    n_layers: int = 4  # Transformer layers (early: over all tokens; late: per modality)
    ff_mult: int = 4  # feed-forward width = ff_mult * d_model
    dropout: float = 0.1  # attention, feed-forward and head
    embed_dropout: float = 0.1  # on the projected inputs
    # Recompute each layer's activations in backward instead of keeping them: identical results,
    # a fraction of the memory, for one more forward of the layers.
    checkpoint_layers: bool = False

    def __post_init__(self):
        check_transformer_sizes(self.d_model, self.n_heads, self.ff_mult, self.dropout, self.embed_dropout)
        if self.n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {self.n_layers}")


FUSION_PRESETS = {
    "paper": dict(
        d_model=256, n_heads=8, n_layers=4, ff_mult=4, dropout=0.1, embed_dropout=0.1, checkpoint_layers=True
    ),
    "small": dict(d_model=64, n_heads=4, n_layers=1, ff_mult=2, dropout=0.1, embed_dropout=0.0),
}


def _embeddings(spec, config: FusionConfig) -> nn.ModuleDict:
    return nn.ModuleDict(
        {m: ModalityEmbedding(dim, config.d_model, config.embed_dropout) for m, (_, dim) in spec.modalities.items()}
    )


def _encoder(config: FusionConfig) -> nn.Module:
    c = config
    return self_attention_encoder(c.d_model, c.n_heads, c.n_layers, c.ff_mult, c.dropout, c.checkpoint_layers)


class EarlyFusion(LogitModel):
    """One Transformer over the time-concatenated tokens of every modality; masked mean; MLP to logits."""

    def __init__(self, spec, config: FusionConfig):
        super().__init__(spec, config)
        d = config.d_model
        self.embed = _embeddings(spec, config)
        self.modality_embedding = nn.Parameter(torch.randn(len(spec.modalities), d) * 0.02)
        self.encoder = _encoder(config)
        self.head = classifier_head(d, d, spec.n_labels, config.dropout)

    def logits(self, inputs, masks):
        names = self.spec.modality_names
        tokens = torch.cat([self.embed[m](inputs[m]) + self.modality_embedding[i] for i, m in enumerate(names)], dim=1)
        mask = torch.cat([masks[m] for m in names], dim=1)
        h = self.encoder(tokens, src_key_padding_mask=keys_to_ignore(mask))
        return self.head(masked_mean(h, mask))


class LateFusion(LogitModel):
    """Per modality: embedding, Transformer, masked mean, MLP head. Score = mean of the per-modality sigmoids."""

    def __init__(self, spec, config: FusionConfig):
        super().__init__(spec, config)
        d = config.d_model
        self.embed = _embeddings(spec, config)
        self.encoders = nn.ModuleDict({m: _encoder(config) for m in spec.modality_names})
        self.heads = nn.ModuleDict(
            {m: classifier_head(d, d, spec.n_labels, config.dropout) for m in spec.modality_names}
        )

    def modality_logits(self, inputs, masks) -> torch.Tensor:
        """(B, M, C) float32 logits of every modality's own classifier, in spec order."""
        per_modality = []
        for m in self.spec.modality_names:
            h = self.encoders[m](self.embed[m](inputs[m]), src_key_padding_mask=keys_to_ignore(masks[m]))
            per_modality.append(self.heads[m](masked_mean(h, masks[m])))
        return at_least_float32(torch.stack(per_modality, dim=1))

    def scores(self, inputs, masks):
        return torch.sigmoid(self.modality_logits(inputs, masks)).mean(dim=1)

    def loss(self, inputs, masks, labels):
        logits = self.modality_logits(inputs, masks)
        targets = labels.to(logits.dtype)[:, None, :].expand_as(logits)
        # Mean over modalities and labels: every head gets the same weight as one BCE.
        bce = F.binary_cross_entropy_with_logits(logits, targets)
        return LossOutput(bce, {"bce": bce})


@register
def early_fusion(spec, preset="small", **overrides):
    """Early fusion: one Transformer over all modalities' steps concatenated in time, masked mean, MLP."""
    name = "early_fusion"
    config = build_config(FusionConfig, preset_values(FUSION_PRESETS, preset, name), overrides, name)
    return EarlyFusion(spec, config)


@register
def late_fusion(spec, preset="small", **overrides):
    """Late fusion: a Transformer classifier per modality, scores = mean of the per-modality probabilities."""
    name = "late_fusion"
    config = build_config(FusionConfig, preset_values(FUSION_PRESETS, preset, name), overrides, name)
    return LateFusion(spec, config)
