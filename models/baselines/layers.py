"""Torch building blocks shared by the neural baselines.

Masking convention: ``mask`` is (B, T) bool with True = real step. Padding must never
reach an output: attention ignores padded keys, pooling ignores padded steps. A sample
whose modality has no real step at all is the one case attention cannot mask (a softmax
over no key is NaN), so such a row attends to every key and its result is zeroed by
whoever reads it (pooling gives 0, cross-attention adds nothing).

Memory: the Transformer layers are torch's (``nn.TransformerEncoderLayer``,
``nn.MultiheadAttention``: same parameters, same initialisation, same state-dict keys),
but their forward is computed here (``pre_norm_layer``, ``attention``) with the same math
and the same random draws in the same order, keeping much less for backward: attention
keeps q, k, v and a bool dropout mask and recomputes its probabilities in backward
(``models.layers``), where torch's keeps scores, probabilities and a float dropout mask,
each (B, heads, T_q, T_k); every dropout keeps a bool mask instead of a float one. With
``checkpoint`` each layer's activations are recomputed in backward too
(``models.layers.checkpointed``, which replays the random numbers: the same results, up to
the order in which float gradient contributions are added).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.base import LossOutput, NeuralModel, at_least_float32, masked_mean
from models.baselines.common import check_inputs
from models.layers import _Attention, checkpointed, dropped

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


def self_attention_encoder(
    d_model: int, n_heads: int, n_layers: int, ff_mult: int, dropout: float, checkpoint: bool = False
) -> nn.Module:
    """Pre-norm Transformer encoder (GELU) with a final LayerNorm; call with ``src_key_padding_mask``."""
    layer = nn.TransformerEncoderLayer(
        d_model,
        n_heads,
        dim_feedforward=ff_mult * d_model,
        dropout=dropout,
        activation="gelu",
        batch_first=True,
        norm_first=True,
    )
    # Nested tensors would make eval-mode padding outputs differ from training; masking already suffices.
    return SelfAttentionEncoder(
        layer, n_layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False, checkpoint=checkpoint
    )


class SelfAttentionEncoder(nn.TransformerEncoder):
    """``nn.TransformerEncoder`` of pre-norm layers, computed by ``pre_norm_layer`` (see the module docstring).

    Built exactly as torch's (the layer is cloned ``num_layers`` times, so the same seed gives
    the same weights); ``nn.TransformerEncoder.forward(encoder, ...)`` still computes torch's
    own forward on the same weights, which is what the tests compare against.
    """

    def __init__(self, *args, checkpoint: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.checkpoint = checkpoint

    def forward(self, src: torch.Tensor, src_key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        bias = key_bias(src_key_padding_mask, src)
        x = src
        for layer in self.layers:
            # Checkpointing replays the random state, so dropout draws the same masks in the recomputation.
            x = checkpointed(pre_norm_layer, layer, x, bias) if self.checkpoint else pre_norm_layer(layer, x, bias)
        return self.norm(x)


def pre_norm_layer(layer: nn.TransformerEncoderLayer, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``layer(x)`` of a norm-first ``nn.TransformerEncoderLayer`` (torch's slow path): same math,
    same random draws in the same order, less kept for backward."""
    h = layer.norm1(x)
    x = x + lean_dropout(attention(layer.self_attn, h, h, bias), layer.dropout1.p, layer.training)
    h = layer.activation(layer.linear1(layer.norm2(x)))
    # GELU's backward reads its input, not its output: the dropout may overwrite the output.
    h = layer.linear2(lean_dropout(h, layer.dropout.p, layer.training, inplace=layer.activation is F.gelu))
    return x + lean_dropout(h, layer.dropout2.p, layer.training)


def attention(
    module: nn.MultiheadAttention, query: torch.Tensor, key_value: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """``module(query, key_value, key_value, need_weights=False)[0]`` for a batch-first module without
    bias_k/bias_v; ``bias`` (B, 1, 1, T_k) is additive (0 or -inf), None for none.

    The same projections, scaled dot products, softmax and dropout (its mask drawn as torch's
    math attention draws it, once per call, (B, heads, T_q, T_k)), but only q, k, v and a bool
    mask are kept for backward.
    """
    e, heads = module.embed_dim, module.num_heads
    weight, in_bias = module.in_proj_weight, module.in_proj_bias
    if query is key_value:
        q, k, v = F.linear(query, weight, in_bias).chunk(3, dim=-1)
    else:
        q = F.linear(query, weight[:e], in_bias[:e])
        k, v = F.linear(key_value, weight[e:], in_bias[e:]).chunk(2, dim=-1)
    batch, steps_q, steps_k = query.shape[0], query.shape[1], key_value.shape[1]
    q, k, v = (t.reshape(batch, -1, heads, e // heads).transpose(1, 2).contiguous() for t in (q, k, v))
    p = module.dropout if module.training else 0.0
    # Torch's math attention draws its dropout mask on the contiguous (B, heads, T_q, T_k) probabilities.
    shape = (batch, heads, steps_q, steps_k)
    keep = torch.empty(shape, dtype=torch.bool, device=q.device).bernoulli_(1.0 - p) if p > 0 else None
    if bias is None:
        bias = q.new_zeros(batch, 1, 1, steps_k)
    context = _Attention.apply(q, k, v, bias, keep, p)  # (B, heads, T_q, e / heads)
    # Torch's module works time-major and returns a transposed view; so does this, because a
    # following dropout draws its mask in memory order (``dropout_keep``).
    context = context.permute(2, 0, 1, 3).reshape(steps_q, batch, e)
    return module.out_proj(context).transpose(0, 1)


def key_bias(ignore: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    """Additive attention bias (B, 1, 1, T) from a ``key_padding_mask`` (True = ignore): 0 or -inf."""
    if ignore is None:
        return None
    return torch.zeros(ignore.shape, dtype=like.dtype, device=like.device).masked_fill_(ignore, float("-inf"))[
        :, None, None, :
    ]


def dropout_keep(p: float, like: torch.Tensor) -> torch.Tensor:
    """The keep mask ``F.dropout(like, p)`` would draw, as bool (a quarter of torch's float mask).

    Torch's dropout fills ``empty_like(x)`` with Bernoulli draws from the global RNG; a bool
    tensor of the same layout receives the same draws (one per element, in the same order,
    whatever the dtype), so the masks are torch's.
    """
    return torch.empty_like(like, dtype=torch.bool).bernoulli_(1.0 - p)


def lean_dropout(x: torch.Tensor, p: float, training: bool, inplace: bool = False) -> torch.Tensor:
    """``F.dropout(x, p, training)``, same draws and values, keeping a bool mask for backward
    (``inplace``: x itself is overwritten, for an x that nothing reads afterwards)."""
    if not training or p == 0.0:
        return x
    return dropped(x, dropout_keep(p, x), p, inplace)


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
