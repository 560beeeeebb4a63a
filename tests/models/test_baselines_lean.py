"""The neural baselines' lean Transformer forward against torch's own, on the same weights and inputs.

``models.baselines.layers`` computes torch's layers itself to keep less for backward. The
results must not move: every check below compares with torch's own forward on the same
module (``nn.TransformerEncoder.forward``; for MulT's crossmodal layer, its previous forward,
copied here), in evaluation and in training with dropout (the same random draws), and
RECORDED holds values the previous implementation gave (commit 0196957) at a tiny size.
"""

import numpy as np
import pytest
import torch
from test_baselines import LAYOUTS, as_torch, make_split, spec_of
from torch import nn

import models
from models.baselines.layers import has_real_step, keys_to_ignore, self_attention_encoder
from models.baselines.mult import CrossmodalLayer

NEURAL = ("early_fusion", "late_fusion", "mult")

# From the implementation before the lean forward: make_split(three_mixed, 5, seed=40) with the first
# sample's text all padding; models.create(name, d_model=16, n_heads=2, dropout=0.2) after manual_seed(7);
# eval scores; then in training after manual_seed(8): the loss, the norm of all gradients, and the next
# torch.rand(()) (the same number of random draws).
RECORDED = {
    "early_fusion": dict(
        scores=[
            [0.4802270531654358, 0.4766279458999634, 0.5378293395042419],
            [0.468777596950531, 0.527566134929657, 0.5352384448051453],
            [0.4489634037017822, 0.5056840777397156, 0.5330913662910461],
            [0.4777393937110901, 0.5317685008049011, 0.5484758019447327],
            [0.4695993959903717, 0.5031036138534546, 0.5430026650428772],
        ],
        loss=0.6813933253288269,
        grad_norm=0.26505438340124554,
        next_random=0.944762110710144,
    ),
    "late_fusion": dict(
        scores=[
            [0.4698747396469116, 0.5364485383033752, 0.475419282913208],
            [0.49579286575317383, 0.4919760525226593, 0.48886212706565857],
            [0.5040637850761414, 0.47660961747169495, 0.5029045343399048],
            [0.4724191427230835, 0.4946143925189972, 0.4855918884277344],
            [0.47288814187049866, 0.5325347781181335, 0.46942129731178284],
        ],
        loss=0.6882739067077637,
        grad_norm=0.20088945842304898,
        next_random=0.4357414245605469,
    ),
    "mult": dict(
        scores=[
            [0.40804243087768555, 0.6399760842323303, 0.4539262652397156],
            [0.2697892487049103, 0.5465553402900696, 0.3952215015888214],
            [0.31730917096138, 0.6859299540519714, 0.47334548830986023],
            [0.2699000835418701, 0.5561679005622864, 0.5712680220603943],
            [0.42131465673446655, 0.38407638669013977, 0.6083783507347107],
        ],
        loss=0.7635088562965393,
        grad_norm=1.8645921692852154,
        next_random=0.8208320140838623,
    ),
}


def _recorded_setting():
    layout = LAYOUTS["three_mixed"]
    inputs, masks, labels = make_split(layout, 5, seed=40)
    masks["text"][0] = False
    return spec_of(layout), *as_torch(inputs, masks), torch.from_numpy(labels)


@pytest.mark.parametrize("name", NEURAL)
@pytest.mark.parametrize("checkpoint", [False, True])
def test_outputs_equal_those_recorded_from_the_previous_implementation(name, checkpoint):
    spec, inputs, masks, labels = _recorded_setting()
    torch.manual_seed(7)
    model = models.create(name, spec, d_model=16, n_heads=2, dropout=0.2, checkpoint_layers=checkpoint)
    expected = RECORDED[name]
    with torch.no_grad():
        scores = model.eval()(inputs, masks)
    np.testing.assert_allclose(scores.numpy(), np.array(expected["scores"]), rtol=0, atol=1e-6)
    torch.manual_seed(8)
    loss = model.train().training_loss(inputs, masks, labels).total
    loss.backward()
    grad_norm = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in model.parameters() if p.grad is not None))
    assert loss.item() == pytest.approx(expected["loss"], rel=1e-6)
    assert grad_norm.item() == pytest.approx(expected["grad_norm"], rel=1e-5)
    assert torch.rand(()).item() == expected["next_random"]


def _padded_batch(batch=4, steps=7, width=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, steps, width, generator=g)
    mask = torch.ones(batch, steps, dtype=torch.bool)
    mask[0, 3:] = False
    mask[1, :] = False  # no real step: attends to every key, as torch's does with keys_to_ignore
    return x, mask


def _run(fn, module, seed, *inputs):
    """fn(*inputs) after seeding, and the gradients of a weighted sum w.r.t. the inputs and the module's
    parameters (by backward(): checkpointed layers do not support torch.autograd.grad)."""
    inputs = [x.clone().requires_grad_() if x.is_floating_point() else x for x in inputs]
    module.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    out = fn(*inputs)
    next_random = torch.rand(())
    (out * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
    grads = [x.grad for x in inputs if x.requires_grad] + [p.grad for p in module.parameters()]
    return out.detach(), grads, next_random


def _assert_same(stock, lean):
    torch.testing.assert_close(lean[0], stock[0], rtol=1e-5, atol=1e-6)
    for a, b in zip(stock[1], lean[1]):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)
    assert torch.equal(stock[2], lean[2])


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("checkpoint", [False, True])
def test_self_attention_encoder_equals_torchs_forward(training, checkpoint):
    torch.manual_seed(0)
    encoder = self_attention_encoder(16, 2, 2, 3, 0.3, checkpoint=checkpoint).train(training)
    x, mask = _padded_batch()
    ignore = keys_to_ignore(mask)
    stock = _run(lambda x: nn.TransformerEncoder.forward(encoder, x, src_key_padding_mask=ignore), encoder, 1, x)
    lean = _run(lambda x: encoder(x, src_key_padding_mask=ignore), encoder, 1, x)
    _assert_same(stock, lean)


def test_self_attention_encoder_is_torchs_encoder_weight_for_weight():
    torch.manual_seed(0)
    ours = self_attention_encoder(16, 2, 3, 2, 0.1)
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, 32, 0.1, activation="gelu", batch_first=True, norm_first=True)
    theirs = nn.TransformerEncoder(layer, 3, norm=nn.LayerNorm(16), enable_nested_tensor=False)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()))


def _previous_crossmodal_forward(layer, target, source, source_mask):
    """CrossmodalLayer.forward before the lean forward, verbatim."""
    source = layer.norm_source(source)
    attended, _ = layer.attention(
        layer.norm_target(target), source, source, key_padding_mask=keys_to_ignore(source_mask), need_weights=False
    )
    target = target + layer.dropout(attended) * has_real_step(source_mask).to(target.dtype)
    return target + layer.dropout(layer.feed_forward(layer.norm_ff(target)))


@pytest.mark.parametrize("training", [False, True])
def test_crossmodal_layer_equals_its_previous_forward(training):
    torch.manual_seed(0)
    layer = CrossmodalLayer(16, 2, 3, 0.3).train(training)
    target, _ = _padded_batch(steps=5, seed=1)
    source, source_mask = _padded_batch(steps=9, seed=2)
    stock = _run(lambda t, s: _previous_crossmodal_forward(layer, t, s, source_mask), layer, 3, target, source)
    lean = _run(lambda t, s: layer(t, s, source_mask), layer, 3, target, source)
    _assert_same(stock, lean)


@pytest.mark.parametrize("name", NEURAL)
def test_checkpointing_changes_no_result_of_a_training_step(name):
    """Same loss and random draws; gradients equal up to the order of float sums (in MulT a source
    feeds several checkpointed layers, whose gradient contributions are then added in another order)."""
    spec, inputs, masks, labels = _recorded_setting()
    results = []
    for checkpoint in (False, True):
        torch.manual_seed(7)
        model = models.create(name, spec, d_model=16, n_heads=2, dropout=0.2, checkpoint_layers=checkpoint).train()
        torch.manual_seed(8)
        loss = model.training_loss(inputs, masks, labels).total
        loss.backward()
        results.append((loss.detach(), [p.grad for p in model.parameters()], torch.rand(())))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][2], results[1][2])
    for a, b in zip(results[0][1], results[1][1]):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-8)


def test_paper_presets_checkpoint_the_layers():
    spec = spec_of(LAYOUTS["three_mixed"])
    for name in NEURAL:
        assert models.create(name, spec, preset="paper").config.checkpoint_layers
        assert not models.create(name, spec).config.checkpoint_layers


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("name", NEURAL)
def test_the_whole_model_equals_the_same_model_on_torchs_own_layers(name, training, monkeypatch):
    """An independent check of the values RECORDED pins: the same weights, seeds and inputs give the
    same scores, loss, gradients and random draws when every encoder runs torch's own
    ``nn.TransformerEncoder.forward`` (torch's TransformerEncoderLayer math) and MulT's crossmodal
    layers their previous forward, instead of the lean forward."""
    from models.baselines.layers import SelfAttentionEncoder

    spec, inputs, masks, labels = _recorded_setting()

    def step():
        torch.manual_seed(7)
        model = models.create(name, spec, d_model=16, n_heads=2, dropout=0.2).train(training)
        torch.manual_seed(8)
        if training:
            out = model.training_loss(inputs, masks, labels).total
        else:
            out = model(inputs, masks)
        (out * torch.linspace(-1, 1, out.numel()).reshape(out.shape)).sum().backward()
        return out.detach(), [p.grad for p in model.parameters()], torch.rand(())

    lean = step()
    with monkeypatch.context() as patch:
        patch.setattr(SelfAttentionEncoder, "forward", nn.TransformerEncoder.forward)
        previous = lambda layer, target, source, mask, bias=None: _previous_crossmodal_forward(
            layer, target, source, mask
        )
        patch.setattr(CrossmodalLayer, "forward", previous)
        stock = step()
    assert any(g is not None and g.abs().sum() > 0 for g in stock[1])
    _assert_same(stock, lean)
