"""The trainer's optimisers and learning-rate schedules: the CARAT reference's, and torch's AdamW.

``TrainConfig.optimizer`` picks one; ``build_optimizer`` returns what the trainer's loop
needs, so that the loop is the same for both::

    optimizer, scheduler, clip = build_optimizer(model, cfg, total_steps)
    for each batch:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = clip()
        (stop if grad_norm is not finite)
        optimizer.step()
        scheduler.step()

``"reference"`` -- what the authors' code does (``CARAT.md`` section 5), BERT's Adam
variant ("BertAdam", ``BertAdam`` below) with the ``warmup_linear`` schedule:

* no bias correction: m <- b1 m + (1 - b1) g; v <- b2 v + (1 - b2) g^2;
  u = m / (sqrt(v) + eps), with b1 0.9, b2 0.999, eps 1e-6;
* decoupled weight decay added to the update, u <- u + wd * p, only for the parameters
  of the decay group (see ``decay_groups``);
* gradients clipped twice, as the authors' ``main.py`` and ``BertAdam`` do one after the other:
  first to one global norm ``clip_norm`` over all parameters (``main.py`` calls
  ``torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)`` before every step; ``clip``
  below, which also returns the norm the trainer checks for NaN), then each tensor on its
  own inside the step (``g <- g * min(1, clip_norm / (|g| + 1e-6))``, BertAdam's
  ``max_grad_norm``). After the global clip the per-tensor one rarely changes anything, but
  it is part of the update, so it is kept. (CARAT.md section 5 names only the per-tensor
  clip; the authors' code does both.);
* p <- p - lr * factor * u with factor = ``warmup_linear(step / total_steps, warmup_ratio)``
  and the step counted before the update: the very first update has lr 0 (it only
  fills the moments), the factor rises linearly to 1 at ``warmup_ratio`` of training,
  then falls linearly to 0 at the end.

The schedule is a ``LambdaLR`` on a global step counter, so ``param_groups[i]["lr"]`` is
the scheduled rate at any time. The reference keeps one counter per parameter instead; the
two agree whenever every parameter gets a gradient at every step, which holds for every
model here (a parameter that never gets a gradient is never updated in either).

``"adamw"`` -- the harness's earlier behaviour, kept unchanged: ``torch.optim.AdamW`` on every
parameter (bias correction, weight decay on all tensors), lr factor (step + 1) / warmup
during warm-up then linear decay to 0 (``adamw_factor``), and one global gradient clip
(``clip`` = ``clip_grad_norm_`` over all parameters, which also returns the norm checked).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from harness.config import OPTIMIZERS, TrainConfig

ClipFn = Callable[[], torch.Tensor]  # clips the gradients in place; returns the global norm before clipping


class BertAdam(torch.optim.Optimizer):
    """BERT's Adam variant as the CARAT reference uses it; the learning-rate schedule is left to a scheduler.

    Per group: ``lr``, ``betas`` (b1, b2), ``eps``, ``weight_decay`` (added to the update,
    u <- u + wd * p) and ``max_grad_norm`` (each tensor's gradient clipped to this norm
    before the moments see it; <= 0: no clipping). No bias correction. The gradients are
    clipped in place, as the reference does.
    """

    def __init__(
        self,
        params,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        max_grad_norm: float = 1.0,
    ):
        if not lr >= 0.0:
            raise ValueError(f"lr must be >= 0, got {lr}")
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must be in [0, 1), got {betas}")
        if not eps >= 0.0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        if not weight_decay >= 0.0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, max_grad_norm=max_grad_norm)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            max_norm, eps, decay, lr = group["max_grad_norm"], group["eps"], group["weight_decay"], group["lr"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if grad.is_sparse:
                    raise RuntimeError("BertAdam does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                if max_norm > 0:
                    # clip_grad_norm_ of this one tensor (no device sync: the factor stays a tensor).
                    grad.mul_((max_norm / (torch.linalg.vector_norm(grad) + 1e-6)).clamp_(max=1.0))
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg.mul_(beta1).add_(grad, alpha=1.0 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
                update = exp_avg / (exp_avg_sq.sqrt() + eps)
                if decay > 0.0:
                    update.add_(p, alpha=decay)
                p.add_(update, alpha=-lr)
                state["step"] += 1
        return loss


def warmup_linear(progress: float, warmup: float) -> float:
    """The reference's schedule factor at ``progress`` = step / total_steps (step counted before the update).

    progress / warmup while progress < warmup, then max((progress - 1) / (warmup - 1), 0):
    0 at the first update, 1 at ``warmup``, 0 again at the end of training.
    """
    if progress < warmup:
        return progress / warmup
    return max((progress - 1.0) / (warmup - 1.0), 0.0)


def adamw_factor(step: int, total_steps: int, warmup_ratio: float) -> float:
    """The ``adamw`` schedule factor: (step + 1) / warmup during warm-up, then linear decay to 0."""
    warmup = max(1, int(warmup_ratio * total_steps))
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup))


def decay_groups(model: nn.Module) -> tuple[list[tuple[str, nn.Parameter]], list[tuple[str, nn.Parameter]]]:
    """(decay, no_decay) named parameters, the reference's split mapped onto this project's modules.

    The reference decays every tensor whose name contains none of ``bias``,
    ``LayerNorm.bias``, ``LayerNorm.weight`` (its LayerNorm modules are attributes named
    ``LayerNorm``). Here LayerNorms have other names (``norm``, ``attn_norm``,
    ``ffn_norm``, ``input_norms.0``, ``norm1``, ...), so the split goes by what a tensor is:

    * no decay: every parameter of an ``nn.LayerNorm`` (weight and bias), and every
      parameter whose name contains ``bias`` -- ``nn.Linear`` biases, LSTM ``bias_ih_l0``
      / ``bias_hh_l0``, attention ``in_proj_bias``, the stacked per-modality MLP biases
      ``biases.0``, ...;
    * decay: everything else -- Linear / LSTM / attention weights, the learned position
      embeddings, CARAT's classifier weights ``classifier`` and its MLP ``weights.0``,
      the baselines' modality embeddings.

    One known difference from the reference: its input normalisation is a LayerNorm held
    as ``text_norm.norm2d``, whose name does not match, so the reference decays that
    LayerNorm's weight (not its bias); here ``input_norms.*.weight`` is not decayed.
    """
    layer_norm = {id(p) for m in model.modules() if isinstance(m, nn.LayerNorm) for p in m.parameters(recurse=False)}
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if "bias" in name or id(p) in layer_norm else decay).append((name, p))
    return decay, no_decay


def build_optimizer(
    model: nn.Module, cfg: TrainConfig, total_steps: int
) -> tuple[torch.optim.Optimizer, LRScheduler, ClipFn]:
    """(optimizer, scheduler, clip) for ``cfg.optimizer``; see the module docstring.

    ``total_steps`` is the number of optimiser steps of the whole run (steps per epoch,
    which follow ``cfg.drop_last``, times epochs). ``clip`` clips all gradients to one global
    norm and returns the norm before clipping.
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if cfg.optimizer == "reference":
        decay, no_decay = decay_groups(model)
        groups = [
            {"params": [p for _, p in named], "weight_decay": wd, "name": name}
            for name, named, wd in (("decay", decay, cfg.weight_decay), ("no_decay", no_decay, 0.0))
            if named
        ]
        optimizer = BertAdam(groups, lr=cfg.lr, max_grad_norm=cfg.clip_norm)
        schedule = LambdaLR(optimizer, lambda step: warmup_linear(step / total_steps, cfg.warmup_ratio))
        return optimizer, schedule, _global_clip(model, cfg.clip_norm)
    if cfg.optimizer == "adamw":
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        schedule = LambdaLR(optimizer, lambda step: adamw_factor(step, total_steps, cfg.warmup_ratio))
        return optimizer, schedule, _global_clip(model, cfg.clip_norm)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; valid: {', '.join(OPTIMIZERS)}")


def _global_clip(model: nn.Module, clip_norm: float) -> ClipFn:
    parameters = list(model.parameters())

    def clip() -> torch.Tensor:
        return torch.nn.utils.clip_grad_norm_(parameters, clip_norm)

    return clip
