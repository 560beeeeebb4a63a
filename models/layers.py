"""Building blocks of CARAT (CARAT.md sections 1-3), each usable on its own.

Initialisation follows the reference: the BERT-style encoders draw Linear/Embedding
weights from N(0, 0.02) with zero biases; label attention, the MLPs and the fusion
maps use Xavier-uniform weights (biases keep torch's default).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from models.base import at_least_float32, float32_region

# BERT's additive mask value: large enough that exp() underflows to exactly 0 for padding
# keys, yet finite, so a sequence with no real step still gives finite (uniform) weights.
MASK_VALUE = -10000.0
LAYER_NORM_EPS = 1e-12  # the reference's TF-style LayerNorm
INIT_STD = 0.02


class BertLayer(nn.Module):
    """Post-norm Transformer layer as in BERT: attention, add & norm, GELU feed-forward, add & norm."""

    def __init__(self, d: int, heads: int, ffn_size: int, dropout: float):
        super().__init__()
        if d % heads:
            raise ValueError(f"hidden size {d} is not divisible by {heads} heads")
        self.heads, self.dropout_p = heads, dropout
        self.qkv = nn.Linear(d, 3 * d)
        self.attn_out = nn.Linear(d, d)
        self.attn_norm = nn.LayerNorm(d, eps=LAYER_NORM_EPS)
        self.ffn_in = nn.Linear(d, ffn_size)
        self.ffn_out = nn.Linear(ffn_size, d)
        self.ffn_norm = nn.LayerNorm(d, eps=LAYER_NORM_EPS)

    def draw_masks(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """Dropout keep masks for one forward of x (B, T, d): attention, after attention, after feed-forward."""
        if not self.training or self.dropout_p == 0.0:
            return None
        batch, steps, _ = x.shape
        p, device = self.dropout_p, x.device
        attention = keep_mask((batch, self.heads, steps, steps), p, device)
        return attention, keep_mask(x.shape, p, device), keep_mask(x.shape, p, device)

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor, masks=None) -> torch.Tensor:
        """x (B, T, d); attn_bias (B, 1, 1, T) additive (0 real, MASK_VALUE padding); masks from draw_masks.

        Masks drawn outside let a checkpointed layer replay exactly the same dropout
        without regenerating the random numbers.
        """
        masks = masks if masks is not None else self.draw_masks(x)
        attn_keep, attn_out_keep, ffn_keep = masks if masks is not None else (None, None, None)
        p = self.dropout_p
        batch, steps, d = x.shape
        q, k, v = self.qkv(x).view(batch, steps, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        context = _Attention.apply(q.contiguous(), k.contiguous(), v.contiguous(), attn_bias, attn_keep, p)
        context = context.transpose(1, 2).reshape(batch, steps, d)
        x = self.attn_norm(residual(x, self.attn_out(context), attn_out_keep, p))
        return self.ffn_norm(residual(x, self.ffn_out(F.gelu(self.ffn_in(x))), ffn_keep, p))


class _Attention(torch.autograd.Function):
    """dropout(softmax(q k^T / sqrt(dh) + bias)) v, keeping only q, k, v and the dropout mask for backward.

    The attention probabilities are recomputed in backward instead of stored: about 20 MB
    less per layer at the paper size, for one more (small) matmul and softmax. The softmax and
    its backward run in at least float32 whatever the matmuls' precision: on CPU, bf16
    elementwise kernels are 2-3x slower than float32 ones (measured on a 2-core AMD EPYC with
    AVX512-BF16, ``invoke bench``'s time breakdown), and the statistics are more accurate.
    """

    # On GPU the trainer runs under bf16 autocast: backward must see the same autocast state.
    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda")
    def forward(ctx, q, k, v, bias, keep, p):
        weights = _attention_probs(q, k, bias).to(v.dtype)  # a copy only when the dtypes differ
        if keep is not None:
            weights.mul_(mask_factor(keep, weights.dtype))  # probs are not needed afterwards
        context = weights @ v
        if keep is not None:
            context.mul_(1.0 / (1.0 - p))  # the dropout scale on (T, dh) rather than (T, T)
        ctx.save_for_backward(q, k, v, bias, keep)
        ctx.p = p
        return context

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad_context):
        q, k, v, bias, keep = ctx.saved_tensors
        probs = _attention_probs(q, k, bias)  # float32 (or float64)
        scale = 1.0 / (1.0 - ctx.p) if keep is not None else 1.0
        weights = probs.to(v.dtype, copy=True)
        if keep is not None:
            factor = mask_factor(keep, weights.dtype)
            weights.mul_(factor)
        grad_v = (weights.transpose(-1, -2) @ grad_context.to(v.dtype)).mul_(scale)
        grad_weights = grad_context.to(v.dtype) @ v.transpose(-1, -2)
        if keep is not None:
            grad_weights.mul_(factor)
        grad_probs = grad_weights.to(probs.dtype).mul_(scale)
        # softmax's backward, in the probabilities' precision: p * (g - sum(g * p)).
        grad_scores = grad_probs.sub_((grad_probs * probs).sum(-1, keepdim=True)).mul_(probs).to(q.dtype)
        score_scale = q.shape[-1] ** -0.5
        grad_q = (grad_scores @ k).mul_(score_scale)
        grad_k = (grad_scores.transpose(-1, -2) @ q).mul_(score_scale)
        return grad_q, grad_k, grad_v, None, None, None


def _attention_probs(q, k, bias):
    """softmax(q k^T / sqrt(dh) + bias) in at least float32; q (B, H, Tq, dh), k (B, H, Tk, dh), bias (B, 1, 1, Tk).

    One baddbmm does the product, the scale and the bias (three passes over (T, T) otherwise).
    """
    batch, heads, steps_q, dh = q.shape
    steps_k = k.shape[2]
    bias3 = bias.to(q.dtype).expand(batch, heads, 1, steps_k).reshape(batch * heads, 1, steps_k)
    scores = torch.baddbmm(
        bias3,
        q.reshape(batch * heads, steps_q, dh),
        k.reshape(batch * heads, steps_k, dh).transpose(1, 2),
        alpha=dh**-0.5,
    )
    probs = torch.softmax(scores, dim=-1, dtype=torch.promote_types(scores.dtype, torch.float32))
    return probs.view(batch, heads, steps_q, steps_k)


def mask_factor(keep: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A bool keep mask as 0/1 of ``dtype``: on CPU, arithmetic with a bool operand takes a slow
    type-promoting path (a bf16 x bool product was 10x slower than bf16 x bf16), while a bool
    tensor read as uint8 converts at memory speed."""
    return keep if keep.dtype == dtype else keep.view(torch.uint8).to(dtype)


def dropped(x: torch.Tensor, keep: torch.Tensor | None, p: float, inplace: bool = False) -> torch.Tensor:
    """Inverted dropout with a given keep mask (None: identity); ``inplace`` overwrites x (one
    buffer less), for an x that nothing else reads afterwards (autograd included)."""
    if keep is None:
        return x
    factor = mask_factor(keep, x.dtype)
    return (x.mul_(factor) if inplace else x * factor).mul_(1.0 / (1.0 - p))


def residual(x: torch.Tensor, y: torch.Tensor, keep: torch.Tensor | None, p: float) -> torch.Tensor:
    """x + dropout(y) with a given keep mask, in one pass (addcmul) where the dtypes agree."""
    if keep is None:
        return x + y
    if x.dtype != y.dtype:
        return x + dropped(y, keep, p)
    return torch.addcmul(x, y, mask_factor(keep, y.dtype), value=1.0 / (1.0 - p))


def keep_mask(shape, p: float, device=None) -> torch.Tensor:
    """Dropout's keep mask, Bernoulli(1 - p), from 16-bit uniform integers of torch's global RNG.

    The 16-bit integers are the four quarters of full-range 64-bit integers: torch fills a
    full-range int64 tensor with one 64-bit draw per element (no range reduction), which on CPU
    is about 5x cheaper than ``randint`` of int16 (one draw and a modulo per element) and about
    15x cheaper than ``bernoulli_``. p is quantised to 1/65536.
    """
    threshold = round(p * 65536) - 32768
    numel = math.prod(shape)
    words = torch.empty((numel + 3) // 4, dtype=torch.int64, device=device).random_(-(2**63), None)
    return words.view(torch.int16)[:numel].view(shape) >= threshold


class Dropout(nn.Module):
    """Inverted dropout with ``keep_mask`` (same semantics as nn.Dropout, faster masks on CPU)."""

    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        return dropped(x, keep_mask(x.shape, self.p, x.device), self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class SequenceEncoder(nn.Module):
    """BERT-style encoder of one modality: Linear D -> d plus learned positions, LayerNorm, dropout, layers."""

    def __init__(
        self,
        in_dim: int,
        max_len: int,
        d: int,
        depth: int,
        heads: int,
        dropout: float,
        checkpoint: bool | str = False,
    ):
        super().__init__()
        self.checkpoint = checkpoint
        self.project = nn.Linear(in_dim, d)
        self.positions = nn.Embedding(max_len, d)
        self.norm = nn.LayerNorm(d, eps=LAYER_NORM_EPS)
        self.dropout = Dropout(dropout)
        self.layers = nn.ModuleList(BertLayer(d, heads, d, dropout) for _ in range(depth))
        self.apply(_bert_init)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, T, D), mask (B, T) bool -> hidden states (B, T, d)."""
        h = self.dropout(self.norm(self.project(x) + self.positions.weight[: x.shape[1]]))
        if bf16_autocast(h.device) and h.device.type == "cpu":
            # The residual stream in bf16 under CPU autocast: else every layer's adds and LayerNorms
            # (not autocast ops on CPU) return float32 and every Linear casts it back to bf16 -- on a
            # CPU the largest share of a bf16 step's time was these casts. LayerNorm statistics are
            # still accumulated in float32 by the kernel; parameters and gradients stay float32.
            h = h.to(torch.bfloat16)
        attn_bias = (~mask).to(h.dtype).mul(MASK_VALUE)[:, None, None, :]
        checkpoint = self.checkpoint is True or (self.checkpoint == "fp32" and not bf16_autocast(h.device))
        for layer in self.layers:
            masks = layer.draw_masks(h)
            if checkpoint:
                # Keep only the layer's input and dropout masks; recompute its activations in backward.
                h = checkpointed(layer, h, attn_bias, masks, preserve_rng_state=False)
            else:
                h = layer(h, attn_bias, masks)
        return h


def bf16_autocast(device: torch.device) -> bool:
    """Whether the code runs inside a bf16 autocast region for ``device`` (``harness.precision``)."""
    return torch.is_autocast_enabled(device.type) and torch.get_autocast_dtype(device.type) == torch.bfloat16


def checkpointed(fn, *args, preserve_rng_state: bool = True):
    """``fn(*args)``; when autograd records, its activations are recomputed in backward instead of kept.

    Torch's reentrant checkpoint, which (measured on the paper-size steps) leaves glibc's heap
    much less fragmented than the non-reentrant one: peak RSS of a CARAT step 1.18 GB instead
    of 1.31, of a MulT step 1.56 GB instead of 1.78. It sends gradients to the parameters only
    through inputs that require gradients, so without such an input the non-reentrant form is
    used. Models that use it are trained with ``backward()``, not ``torch.autograd.grad``.
    ``preserve_rng_state`` replays the random numbers (dropout) in the recomputation.
    """
    if not torch.is_grad_enabled():
        return fn(*args)
    reentrant = any(isinstance(a, torch.Tensor) and a.requires_grad for a in args)
    return torch.utils.checkpoint.checkpoint(fn, *args, use_reentrant=reentrant, preserve_rng_state=preserve_rng_state)


def _bert_init(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=INIT_STD)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class CTCAligner(nn.Module):
    """Soft alignment of a sequence to ``target_len`` steps (CARAT.md 1.2, from MulT).

    A 2-layer LSTM scores every input frame against target_len + 1 positions; softmax;
    position 0 ("blank") is dropped; the output is P^T X. Padding frames are zeroed
    first (a deviation from the reference, which lets them in) so that their values
    cannot leak into the aligned sequence.
    """

    def __init__(self, in_dim: int, target_len: int):
        super().__init__()
        self.target_len = target_len
        self.lstm = nn.LSTM(in_dim, target_len + 1, num_layers=2, batch_first=True)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, T, D), mask (B, T) -> aligned (B, target_len, D)."""
        x = x * mask.unsqueeze(-1).to(x.dtype)
        # The recurrence runs in float32 even under bf16 autocast: rounding would compound over the
        # steps, and oneDNN has no bf16 LSTM on CPUs without native bf16.
        with float32_region(x.device):
            scores, _ = self.lstm(at_least_float32(x))
        positions = torch.softmax(scores, dim=-1)[..., 1:]
        return positions.transpose(1, 2) @ x


class LabelAttention(nn.Module):
    """Label-wise attention: a bias-free Linear d -> C scores frames; masked softmax over time."""

    def __init__(self, d: int, n_labels: int):
        super().__init__()
        self.score = nn.Linear(d, n_labels, bias=False)
        nn.init.xavier_uniform_(self.score.weight)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """h (B, T, d), mask (B, T) -> label-specific features (B, C, d)."""
        scores = self.score(h).transpose(1, 2) + (~mask).to(h.dtype).mul(MASK_VALUE).unsqueeze(1)
        return torch.softmax(scores, dim=-1) @ h


class ModalityMLP(nn.Module):
    """One MLP per modality, applied to all modalities at once.

    Input (B, M, ..., sizes[0]) -> (B, M, ..., sizes[-1]); ReLU between layers. The
    weights of modality m are stacked at index m, so the M MLPs run as batched matmuls.
    """

    def __init__(self, n_modalities: int, sizes: list[int]):
        super().__init__()
        if len(sizes) < 2:
            raise ValueError(f"an MLP needs at least input and output sizes, got {sizes}")
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            weight = torch.empty(n_modalities, fan_in, fan_out)
            bias = torch.empty(n_modalities, fan_out)
            bound = math.sqrt(6.0 / (fan_in + fan_out))  # Xavier-uniform, per modality
            nn.init.uniform_(weight, -bound, bound)
            nn.init.uniform_(bias, -1.0 / math.sqrt(fan_in), 1.0 / math.sqrt(fan_in))  # nn.Linear's default
            self.weights.append(nn.Parameter(weight))
            self.biases.append(nn.Parameter(bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, n_mod = x.shape[:2]
        inner = x.shape[2:-1]
        h = x.reshape(batch, n_mod, -1, x.shape[-1]).transpose(0, 1)  # (M, B, rest, in)
        h = h.reshape(n_mod, -1, x.shape[-1])
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            if i:
                h = torch.relu(h)
            h = torch.baddbmm(bias.unsqueeze(1), h, weight)
        h = h.view(n_mod, batch, -1, h.shape[-1]).transpose(0, 1)
        return h.reshape(batch, n_mod, *inner, h.shape[-1])


def mlp(sizes: list[int]) -> nn.Sequential:
    """Shared MLP with ReLU between layers and Xavier-uniform weights (the reference's MLLinear)."""
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        if i:
            layers.append(nn.ReLU())
        linear = nn.Linear(fan_in, fan_out)
        nn.init.xavier_uniform_(linear.weight)
        layers.append(linear)
    return nn.Sequential(*layers)
