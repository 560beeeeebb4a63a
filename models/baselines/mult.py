"""MulT-style crossmodal Transformer (Tsai et al. 2019, "Multimodal Transformer for Unaligned
Multimodal Language Sequences"), generalised to any M >= 2 modalities.

1. Each modality is projected to width d (MulT's kernel-1 Conv1d, i.e. a Linear) after a
   LayerNorm, plus sinusoidal positions.
2. For every target modality t and every other source s, a crossmodal Transformer of
   ``cross_layers`` pre-norm layers lets t's steps (queries) attend to s's steps
   (keys/values, padded source steps masked), giving a (B, T_t, d) sequence "s -> t".
3. Per target, the M-1 crossmodal sequences are concatenated along features
   ((B, T_t, (M-1)d)) and passed through ``self_layers`` self-attention layers over t's
   steps, then summarised by the last real step (MulT) or the masked mean.
4. The M summaries are concatenated ((B, M(M-1)d)) and go through MulT's residual MLP
   to C logits.

The layers keep torch's modules (``nn.MultiheadAttention`` and friends) for their
parameters but compute their forward leanly, with the same math and random draws
(``models.baselines.layers``); ``checkpoint_layers`` (on in the paper preset)
recomputes every crossmodal and self-attention layer in backward: the same losses, and
gradients equal up to the order of float sums (a source feeds several checkpointed layers).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.base import build_config
from models.baselines.layers import (
    POOLINGS,
    LogitModel,
    ModalityEmbedding,
    attention,
    check_transformer_sizes,
    has_real_step,
    key_bias,
    keys_to_ignore,
    lean_dropout,
    pool,
    self_attention_encoder,
)
from models.layers import checkpointed
from models.presets import preset_values
from models.registry import register


@dataclass(frozen=True)
class MulTConfig:
    d_model: int = 128  # width per modality; a target's self-attention works at (M-1) * d_model
    n_heads: int = 8
    cross_layers: int = 4  # crossmodal layers per (source -> target) pair
    self_layers: int = 3  # self-attention layers per target over its concatenated crossmodal outputs
    ff_mult: int = 4
    dropout: float = 0.1  # attention, feed-forward and residual
    embed_dropout: float = 0.25  # on the projected inputs (MulT's embed dropout)
    out_dropout: float = 0.1  # in the output MLP
    pool: str = "last"  # "last" real step (MulT) or masked "mean"
    # Recompute each layer's activations in backward instead of keeping them: the same results (up to
    # the order of float gradient sums), a fraction of the memory, for one more forward of the layers.
    checkpoint_layers: bool = False

    def __post_init__(self):
        check_transformer_sizes(
            self.d_model, self.n_heads, self.ff_mult, self.dropout, self.embed_dropout, self.out_dropout
        )
        if self.cross_layers < 1 or self.self_layers < 1:
            raise ValueError(f"cross_layers and self_layers must be >= 1, got {self.cross_layers}, {self.self_layers}")
        if self.pool not in POOLINGS:
            raise ValueError(f"pool must be one of {POOLINGS}, got {self.pool!r}")


# MulT used 30-40 per modality and 4-5 crossmodal layers; 128 keeps the per-target width
# (M-1) * d = 256 for three modalities, the size of the other baselines and of CARAT.
_MULT_DROPOUTS = dict(dropout=0.1, embed_dropout=0.25, out_dropout=0.1)
_MULT_PAPER = dict(
    d_model=128, n_heads=8, cross_layers=4, self_layers=3, ff_mult=4, pool="last", checkpoint_layers=True
)
_MULT_PAPER.update(_MULT_DROPOUTS)
_MULT_SMALL_SIZES = dict(d_model=64, n_heads=4, cross_layers=1, self_layers=1, ff_mult=2, embed_dropout=0.0)
MULT_PRESETS = {
    "paper": _MULT_PAPER,
    # The paper's mechanism scaled down: narrower, one layer of each kind, no recomputation.
    "small": dict(_MULT_PAPER, **_MULT_SMALL_SIZES, checkpoint_layers=False),
}


class CrossmodalLayer(nn.Module):
    """Pre-norm crossmodal layer: target steps attend to source steps, then a feed-forward, both residual."""

    def __init__(self, d_model: int, n_heads: int, ff_mult: int, dropout: float):
        super().__init__()
        self.norm_target = nn.LayerNorm(d_model)
        self.norm_source = nn.LayerNorm(d_model)
        self.attention = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.norm_ff = nn.LayerNorm(d_model)
        self.feed_forward = nn.Sequential(
            nn.Linear(d_model, ff_mult * d_model), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ff_mult * d_model, d_model)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, target, source, source_mask, source_bias=None):
        """``source_bias``: the additive key bias of ``source_mask`` (``key_bias``), when the caller has it."""
        if source_bias is None:
            source_bias = key_bias(keys_to_ignore(source_mask), source)
        p = self.dropout.p
        source = self.norm_source(source)
        attended = attention(self.attention, self.norm_target(target), source, source_bias)
        # A source with no real step has nothing to say; its (unmaskable) attention result is dropped.
        target = target + lean_dropout(attended, p, self.training) * has_real_step(source_mask).to(target.dtype)
        first, activation, inner_dropout, second = self.feed_forward
        hidden = activation(first(self.norm_ff(target)))
        hidden = second(lean_dropout(hidden, inner_dropout.p, self.training))
        return target + lean_dropout(hidden, p, self.training)


class CrossmodalTransformer(nn.Module):
    """A stack of crossmodal layers (source -> target) with a final LayerNorm."""

    def __init__(
        self, d_model: int, n_heads: int, n_layers: int, ff_mult: int, dropout: float, checkpoint: bool = False
    ):
        super().__init__()
        self.layers = nn.ModuleList(CrossmodalLayer(d_model, n_heads, ff_mult, dropout) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.checkpoint = checkpoint

    def forward(self, target, source, source_mask):
        bias = key_bias(keys_to_ignore(source_mask), source)
        for layer in self.layers:
            if self.checkpoint:
                target = checkpointed(layer, target, source, source_mask, bias)
            else:
                target = layer(target, source, source_mask, bias)
        return self.norm(target)


class MulT(LogitModel):
    """Crossmodal attention from every source to every target modality, per-target self-attention, MLP."""

    def __init__(self, spec, config: MulTConfig):
        super().__init__(spec, config)
        names = spec.modality_names
        if len(names) < 2:
            raise ValueError(f"mult needs at least 2 modalities, the data has {len(names)}: {list(names)}")
        d, width = config.d_model, (len(names) - 1) * config.d_model
        self.embed = nn.ModuleDict(
            {m: ModalityEmbedding(dim, d, config.embed_dropout) for m, (_, dim) in spec.modalities.items()}
        )
        self.crossmodal = nn.ModuleDict(
            {
                pair_key(source, target): CrossmodalTransformer(
                    d, config.n_heads, config.cross_layers, config.ff_mult, config.dropout, config.checkpoint_layers
                )
                for target in names
                for source in names
                if source != target
            }
        )
        self.self_attention = nn.ModuleDict(
            {
                m: self_attention_encoder(
                    width, config.n_heads, config.self_layers, config.ff_mult, config.dropout, config.checkpoint_layers
                )
                for m in names
            }
        )
        fused = len(names) * width
        self.out_hidden = nn.Linear(fused, fused)
        self.out_back = nn.Linear(fused, fused)
        self.out_layer = nn.Linear(fused, spec.n_labels)

    def logits(self, inputs, masks):
        names = self.spec.modality_names
        embedded = {m: self.embed[m](inputs[m]) for m in names}
        summaries = []
        for target in names:
            crossed = torch.cat(
                [
                    self.crossmodal[pair_key(source, target)](embedded[target], embedded[source], masks[source])
                    for source in names
                    if source != target
                ],
                dim=-1,
            )
            h = self.self_attention[target](crossed, src_key_padding_mask=keys_to_ignore(masks[target]))
            summaries.append(pool(h, masks[target], self.config.pool))
        fused = torch.cat(summaries, dim=-1)
        # MulT's output block: a residual two-layer MLP, then the label projection.
        hidden = self.out_back(F.dropout(F.relu(self.out_hidden(fused)), self.config.out_dropout, self.training))
        return self.out_layer(fused + hidden)


def pair_key(source: str, target: str) -> str:
    """ModuleDict key of the crossmodal Transformer source -> target."""
    return f"{source}_to_{target}"


@register
def mult(spec, preset="small", **overrides):
    """MulT: crossmodal Transformers from every source to every target modality (Tsai et al. 2019), M >= 2."""
    config = build_config(MulTConfig, preset_values(MULT_PRESETS, preset, "mult"), overrides, "mult")
    return MulT(spec, config)
