"""The optimisers of harness.optim: the reference's BertAdam + warmup_linear against the update rule of
CARAT.md section 5 computed by hand, its decay groups, and ``adamw`` against the trainer's earlier code."""

import math

import numpy as np
import pytest
import torch
from torch import nn

import models
from harness.config import TrainConfig
from harness.data.dataset import DataSpec
from harness.optim import BertAdam, build_optimizer, decay_groups, warmup_linear


class Tiny(nn.Module):
    """Every kind of tensor the decay rule distinguishes: Linear weight and bias, LayerNorm, a bare parameter."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 2)
        self.norm = nn.LayerNorm(2)
        self.scale = nn.Parameter(torch.linspace(-1.0, 1.0, 4))

    def forward(self, x):
        return self.norm(self.linear(x)) * self.scale[:2]


DECAYED = {"linear.weight", "scale"}
# Gradient norm of each tensor: linear.weight and norm.weight are far over the clip norm 1, the others under.
GRAD_NORMS = {"linear.weight": 5.0, "linear.bias": 0.3, "norm.weight": 3.0, "norm.bias": 0.2, "scale": 0.5}


def _known_gradients(model, steps, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(steps):
        grads = {}
        for name, p in model.named_parameters():
            g = rng.normal(size=tuple(p.shape))
            grads[name] = g * GRAD_NORMS[name] / np.linalg.norm(g)
        out.append(grads)
    return out


def _by_hand(params, gradients, lr, wd, clip, total, warmup):
    """CARAT.md section 5, written out in numpy: the parameters after each step."""
    p = {n: v.copy() for n, v in params.items()}
    m = {n: np.zeros_like(v) for n, v in p.items()}
    v = {n: np.zeros_like(x) for n, x in p.items()}
    history = []
    for step, grads in enumerate(gradients):
        x = step / total  # counted before the update
        factor = x / warmup if x < warmup else max((x - 1.0) / (warmup - 1.0), 0.0)
        total_norm = math.sqrt(sum(float((g * g).sum()) for g in grads.values()))
        for name, g in grads.items():
            g = g * min(1.0, clip / (total_norm + 1e-6))  # main.py: one global norm first
            norm = math.sqrt(float((g * g).sum()))  # then BertAdam: each tensor on its own
            g = g * min(1.0, clip / (norm + 1e-6))
            m[name] = 0.9 * m[name] + 0.1 * g
            v[name] = 0.999 * v[name] + 0.001 * g * g
            u = m[name] / (np.sqrt(v[name]) + 1e-6)
            if name in DECAYED:
                u = u + wd * p[name]
            p[name] = p[name] - lr * factor * u
        history.append({n: x.copy() for n, x in p.items()})
    return history


def test_reference_optimiser_follows_the_update_rule_by_hand():
    torch.manual_seed(0)
    model = Tiny().double()
    total, steps = 10, 6
    cfg = TrainConfig(optimizer="reference", lr=0.1, weight_decay=0.1, clip_norm=1.0, warmup_ratio=0.2)
    optimizer, scheduler, clip = build_optimizer(model, cfg, total)
    assert isinstance(optimizer, BertAdam)
    start = {n: p.detach().numpy().copy() for n, p in model.named_parameters()}
    gradients = _known_gradients(model, steps)
    expected = _by_hand(start, gradients, lr=0.1, wd=0.1, clip=1.0, total=total, warmup=0.2)

    lrs = []
    for step, grads in enumerate(gradients):
        lrs.append(optimizer.param_groups[0]["lr"])
        for name, p in model.named_parameters():
            p.grad = torch.from_numpy(grads[name].copy())
        norm = clip()
        assert float(norm) == pytest.approx(math.sqrt(sum(v * v for v in GRAD_NORMS.values())))
        optimizer.step()
        scheduler.step()
        if step == 0:  # the first update has lr 0: nothing moves, only the moments fill
            for name, p in model.named_parameters():
                np.testing.assert_array_equal(p.detach().numpy(), start[name])
        for name, p in model.named_parameters():
            np.testing.assert_allclose(p.detach().numpy(), expected[step][name], rtol=1e-12, atol=1e-14)
    # warm-up over 20 % of 10 steps, then linear decay to 0 at step 10
    np.testing.assert_allclose(lrs, [0.1 * f for f in (0.0, 0.5, 1.0, 0.875, 0.75, 0.625)], rtol=1e-12)
    assert all(optimizer.state[p]["step"] == steps for p in model.parameters())


def test_bertadam_clips_each_tensor_on_its_own():
    torch.manual_seed(0)
    model = Tiny().double()
    optimizer = BertAdam(model.parameters(), lr=0.1, max_grad_norm=1.0)
    for name, grads in _known_gradients(model, 1)[0].items():
        dict(model.named_parameters())[name].grad = torch.from_numpy(grads.copy())
    optimizer.step()
    clipped = {n: float(p.grad.norm()) for n, p in model.named_parameters()}
    assert clipped["linear.weight"] == pytest.approx(1.0, abs=1e-5)  # clipped on its own...
    assert clipped["norm.weight"] == pytest.approx(1.0, abs=1e-5)
    assert clipped["linear.bias"] == pytest.approx(0.3)  # ...the others untouched (no global norm here)
    assert clipped["scale"] == pytest.approx(0.5)


def test_warmup_linear_schedule():
    assert [warmup_linear(x / 10, 0.1) for x in (0, 1, 2, 10, 11)] == pytest.approx([0.0, 1.0, 8 / 9, 0.0, 0.0])
    assert warmup_linear(0.05, 0.1) == pytest.approx(0.5)


def test_decay_groups_by_module_type():
    model = Tiny()
    decay, no_decay = decay_groups(model)
    assert {n for n, _ in decay} == DECAYED
    assert {n for n, _ in no_decay} == {"linear.bias", "norm.weight", "norm.bias"}
    optimizer, _, _ = build_optimizer(model, TrainConfig(optimizer="reference", weight_decay=0.01), 5)
    assert [(g["name"], g["weight_decay"]) for g in optimizer.param_groups] == [("decay", 0.01), ("no_decay", 0.0)]


def test_carat_and_baseline_decay_groups():
    spec = DataSpec({"text": (3, 4), "audio": (5, 2)}, ("a", "b"), aligned=False)
    carat = models.create("carat", spec, hidden_size=8, latent_size=4, depths=(1,), heads=2, queue_size=256)
    decay, no_decay = (dict(group) for group in decay_groups(carat))
    layer_norms = {
        f"{m}.{k}" for m, mod in carat.named_modules() if isinstance(mod, nn.LayerNorm) for k in ("weight", "bias")
    }
    assert layer_norms <= set(no_decay)  # encoder and input LayerNorms, whatever their names
    assert {"input_norms.0.weight", "encoders.0.norm.weight", "encoders.0.layers.0.attn_norm.weight"} <= set(no_decay)
    assert {"latent_encoder.biases.0", "encoders.0.project.bias", "aligners.0.lstm.bias_ih_l0"} <= set(no_decay)
    assert set(no_decay) == layer_norms | {n for n, _ in carat.named_parameters() if "bias" in n}
    assert {
        "classifier",
        "encoders.0.positions.weight",
        "latent_encoder.weights.0",
        "aligners.0.lstm.weight_ih_l0",
        "label_attention.0.score.weight",
    } <= set(decay)
    assert not any("bias" in n for n in decay)
    mult = models.create("mult", DataSpec({"a": (2, 3), "b": (2, 3)}, ("x",)), d_model=8, n_heads=2)
    decay, no_decay = (dict(group) for group in decay_groups(mult))
    assert any(n.endswith("attention.in_proj_bias") for n in no_decay)
    assert any(n.endswith("attention.in_proj_weight") for n in decay)


def _old_optimiser(model, cfg, total_steps):
    """The trainer's optimiser before harness.optim, verbatim."""
    optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = max(1, int(cfg.warmup_ratio * total_steps))

    def factor(step: int) -> float:  # linear warm-up, then linear decay to 0
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return optimiser, torch.optim.lr_scheduler.LambdaLR(optimiser, factor)


def test_adamw_reproduces_the_earlier_trainer_bit_for_bit():
    torch.manual_seed(0)
    old_model = Tiny()
    new_model = Tiny()
    new_model.load_state_dict(old_model.state_dict())
    cfg = TrainConfig(optimizer="adamw", lr=0.05, weight_decay=0.01, clip_norm=0.5, warmup_ratio=0.3)
    old_opt, old_sched = _old_optimiser(old_model, cfg, 8)
    new_opt, new_sched, clip = build_optimizer(new_model, cfg, 8)
    assert isinstance(new_opt, torch.optim.AdamW) and clip is not None
    x = torch.randn(16, 3)
    for _ in range(8):
        norms = []
        for model, opt, sched in ((old_model, old_opt, old_sched), (new_model, new_opt, new_sched)):
            opt.zero_grad(set_to_none=True)
            model(x).pow(2).mean().backward()
            if model is old_model:
                norms.append(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm))
            else:
                norms.append(clip())
            opt.step()
            sched.step()
        assert torch.equal(norms[0], norms[1])
        for a, b in zip(old_model.parameters(), new_model.parameters()):
            assert torch.equal(a, b)


def test_optimizer_field_is_validated():
    with pytest.raises(ValueError, match="optimizer must be one of reference, adamw"):
        TrainConfig(optimizer="sgd")
    with pytest.raises(ValueError, match="drop_last"):
        TrainConfig(drop_last="yes")
    paper, small = TrainConfig.from_preset("paper"), TrainConfig.from_preset("small")
    assert (paper.optimizer, paper.drop_last) == ("reference", True)
    assert (small.optimizer, small.drop_last) == ("adamw", False)
