"""Models under bf16 autocast (harness.precision): float32 where it matters, close to the float32 result.

CPU bf16 runs everywhere (emulated where the CPU lacks native bf16, which only costs time at
these tiny shapes). The CUDA tests run only where CUDA is present.
"""

import pytest
import torch
from test_carat import SPEC3, TINY, make_batch, unaligned

import models
from harness.data.dataset import DataSpec
from models.contrastive import supcon_chunked

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
NEURAL_BASELINES = ("early_fusion", "late_fusion", "mult")
BASELINE_TINY = dict(d_model=16, n_heads=2)


def bf16(device="cpu"):
    return torch.autocast(device_type=device, dtype=torch.bfloat16)


def carat_step(spec, device="cpu", autocast=True, seed=0, **overrides):
    """One training loss + backward of a tiny CARAT; returns the model and the loss output."""
    torch.manual_seed(seed)
    model = models.create("carat", spec, **{**TINY, "depths": (2,), "dropout": 0.2, **overrides}).to(device).train()
    inputs, masks, labels = (
        {k: v.to(device) for k, v in part.items()} if isinstance(part, dict) else part.to(device)
        for part in make_batch(spec)
    )
    with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=autocast):
        out = model.training_loss(inputs, masks, labels)
    out.total.backward()
    return model, out


@pytest.mark.parametrize("spec", [SPEC3, unaligned(SPEC3)], ids=["aligned", "unaligned"])
def test_carat_under_bf16_keeps_losses_prototypes_queue_and_gradients_in_float32(spec):
    model, out = carat_step(spec)
    assert out.total.dtype == torch.float32
    assert {name: v.dtype for name, v in out.parts.items()} == {name: torch.float32 for name in out.parts}
    assert model.prototypes.dtype == torch.float32 and model.prototypes.abs().sum() > 0
    assert model.queue.vectors.dtype == torch.float32 and int(model.queue.pointer) > 0
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters())
    # The matmuls did run in bf16: the result is close to float32's, not equal to it.
    _, exact = carat_step(spec, autocast=False)
    assert not torch.equal(out.total, exact.total)
    torch.testing.assert_close(out.total, exact.total, rtol=5e-2, atol=0)


def test_carat_bf16_checkpointing_changes_no_result_and_runs_repeat_exactly():
    runs = [carat_step(SPEC3, checkpoint_layers=checkpoint) for checkpoint in (False, True, True)]
    losses = [out.total.detach() for _, out in runs]
    grads = [[p.grad for p in model.parameters()] for model, _ in runs]
    assert torch.equal(losses[0], losses[1]) and torch.equal(losses[1], losses[2])
    assert all(torch.equal(a, b) for a, b in zip(grads[0], grads[1]))


def test_carat_bf16_scores_are_float32_and_close():
    model, _ = carat_step(SPEC3)
    inputs, masks, _ = make_batch(SPEC3)
    model.eval()
    with bf16():
        scores = model(inputs, masks)
    assert scores.dtype == torch.float32
    torch.testing.assert_close(scores, model(inputs, masks), rtol=0, atol=3e-2)


def test_supcon_inside_autocast_is_the_float32_loss_of_its_inputs():
    g = torch.Generator().manual_seed(0)
    batch = torch.nn.functional.normalize(torch.randn(20, 8, generator=g), dim=1).bfloat16().requires_grad_()
    classes = torch.randint(0, 3, (20,), generator=g).float()
    queue = torch.nn.functional.normalize(torch.randn(12, 8, generator=g), dim=1)
    queue_classes = torch.randint(0, 3, (12,), generator=g).float()
    with bf16():
        value = supcon_chunked(batch, classes, queue, queue_classes, True, chunk_size=7)
    value.backward()
    exact = supcon_chunked(batch.detach().float(), classes, queue, queue_classes, True, chunk_size=7)
    assert value.dtype == torch.float32 and batch.grad.dtype == torch.bfloat16
    torch.testing.assert_close(value, exact, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", NEURAL_BASELINES)
def test_baselines_under_bf16_give_float32_losses_and_gradients(name):
    torch.manual_seed(0)
    model = models.create(name, SPEC3, **BASELINE_TINY).train()
    inputs, masks, labels = make_batch(SPEC3)
    with bf16():
        out = model.training_loss(inputs, masks, labels)
    out.total.backward()
    assert out.total.dtype == torch.float32 and torch.isfinite(out.total)
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in model.parameters())
    model.eval()
    with bf16():
        assert model(inputs, masks).dtype == torch.float32


# --- CUDA (skipped without it) ---------------------------------------------------------------------


@cuda
def test_carat_training_step_in_bf16_on_cuda():
    model, out = carat_step(SPEC3, device="cuda", checkpoint_layers=True)
    assert torch.isfinite(out.total) and out.total.dtype == torch.float32
    assert model.prototypes.dtype == torch.float32 and model.queue.vectors.dtype == torch.float32
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    _, exact = carat_step(SPEC3, device="cuda", autocast=False, checkpoint_layers=True)
    torch.testing.assert_close(out.total, exact.total, rtol=5e-2, atol=0)


@cuda
@pytest.mark.parametrize("name", ("carat",) + NEURAL_BASELINES)
def test_predict_on_cuda_in_bf16_matches_cpu_float32(name):
    from harness.data.dataset import Split
    from harness.trainer import predict

    torch.manual_seed(0)
    overrides = TINY if name == "carat" else BASELINE_TINY
    model = models.create(name, SPEC3, **overrides)
    inputs, masks, labels = make_batch(SPEC3, batch=10)
    split = Split({k: v.numpy() for k, v in inputs.items()}, {k: v.numpy() for k, v in masks.items()}, labels.numpy())
    on_cpu = predict(model, split, "cpu")
    on_cuda = predict(model.to("cuda"), split, "cuda", torch.bfloat16)
    assert on_cuda.shape == on_cpu.shape
    torch.testing.assert_close(torch.from_numpy(on_cuda), torch.from_numpy(on_cpu), rtol=0, atol=3e-2)


@pytest.mark.parametrize("autocast, expected_calls", [(False, 2), (True, 0)])
def test_checkpointing_fp32_recomputes_only_outside_bf16(monkeypatch, autocast, expected_calls):
    import models.layers

    calls = []
    real = models.layers.checkpointed
    monkeypatch.setattr(models.layers, "checkpointed", lambda *a, **k: calls.append(1) or real(*a, **k))
    spec = DataSpec({"text": (6, 5), "audio": (4, 3)}, ("a",))
    model, out = carat_step(spec, autocast=autocast, checkpoint_layers="fp32", depths=(1,))
    assert len(calls) == expected_calls and torch.isfinite(out.total)
    with pytest.raises(ValueError, match="checkpoint_layers"):
        models.create("carat", spec, **TINY, checkpoint_layers="bf16")
