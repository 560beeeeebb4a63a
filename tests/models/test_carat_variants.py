"""Each ablation variant is a real, tested difference in the computation, and every one learns."""

import pytest
import torch

import models
import models.carat as carat_module
from harness.data.dataset import DataSpec
from models.carat import VARIANTS

# queue_size: exactly one push of the full model at the default batch (16 x 3 levels x 3 modalities x 3 labels).
TINY = dict(hidden_size=16, latent_size=8, depths=(1,), heads=2, dropout=0.0, queue_size=432)
SPEC = DataSpec({"text": (5, 4), "visual": (3, 3), "audio": (1, 2)}, ("a", "b", "c"))


def learnable_batch(batch=16, seed=0):
    """Labels are signs of the text features' time-means: learnable from the inputs."""
    g = torch.Generator().manual_seed(seed)
    inputs = {n: torch.randn(batch, t, d, generator=g) for n, (t, d) in SPEC.modalities.items()}
    masks = {n: torch.ones(batch, t, dtype=torch.bool) for n, (t, d) in SPEC.modalities.items()}
    labels = (inputs["text"].mean(1)[:, :3] > 0).float()
    return inputs, masks, labels


def train(model, inputs, masks, labels, steps):
    """Adam steps on one batch; the loss parts of every step."""
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    history = []
    for _ in range(steps):
        out = model.training_loss(inputs, masks, labels)
        optimiser.zero_grad()
        out.total.backward()
        optimiser.step()
        history.append({"total": out.total.item(), **{k: v.item() for k, v in out.parts.items()}})
    return history


@pytest.mark.slow  # trains every variant for many steps
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_variant_loss_is_finite_and_falls(name):
    torch.manual_seed(0)
    model = models.create(name, SPEC, **TINY)
    inputs, masks, labels = learnable_batch()
    history = train(model, inputs, masks, labels, steps=60)
    totals = torch.tensor([h["total"] for h in history])
    assert bool(torch.isfinite(totals).all())
    # A real queue of past steps (>= one push) keeps SupCon's floor high, so the total falls less
    # far than the prediction level's BCE below.
    assert totals[-5:].sum() < 0.9 * totals[:5].sum()
    # Not only the auxiliary terms: the prediction level's BCE falls too.
    assert history[-1]["bce_beta"] < 0.8 * history[0]["bce_beta"]


def parts_of(name, **overrides):
    torch.manual_seed(0)
    model = models.create(name, SPEC, **TINY, **overrides).train()
    inputs, masks, labels = learnable_batch(batch=8)
    return model, set(model.training_loss(inputs, masks, labels).parts)


def test_full_model_has_every_term():
    _, parts = parts_of("carat", gamma_rb=0.5)
    assert parts == {"bce_o", "bce_alpha", "bce_beta", "supcon", "recon_r", "recon_a", "recon_b", "agg", "shuffle_agg"}


def test_no_contrastive_has_no_supcon_and_no_queue():
    model, parts = parts_of("no_contrastive")
    assert "supcon" not in parts and model.queue is None
    assert model.prototypes.abs().sum() > 0  # prototypes still learnt


def test_no_reconstruction_has_no_recon_terms_and_no_prototypes():
    model, parts = parts_of("no_reconstruction")
    assert parts == {"bce_beta", "supcon", "agg", "shuffle_agg"}
    assert not hasattr(model, "prototypes") and not hasattr(model, "fusion") and not hasattr(model, "latent_decoder")


def counting_shuffles(monkeypatch):
    calls = []
    real = carat_module.shuffle_indices

    def counted(*args, **kwargs):
        result = real(*args, **kwargs)
        calls.append(result)
        return result

    monkeypatch.setattr(carat_module, "shuffle_indices", counted)
    return calls


def test_no_shuffle_never_builds_shuffled_samples(monkeypatch):
    calls = counting_shuffles(monkeypatch)
    _, parts = parts_of("no_shuffle")
    assert calls == [] and "shuffle_agg" not in parts
    _, parts = parts_of("carat")
    assert len(calls) == 1 and "shuffle_agg" in parts


@pytest.mark.parametrize("name,shuffled_axis", [("no_sample_shuffle", "modality"), ("no_modality_shuffle", "sample")])
def test_single_shuffle_variants_shuffle_one_axis_only(monkeypatch, name, shuffled_axis):
    calls = counting_shuffles(monkeypatch)
    _, parts = parts_of(name)
    assert "shuffle_agg" in parts and len(calls) == 1
    sample, modality = calls[0]
    identity_sample = torch.arange(sample.shape[0]).view(-1, 1, 1).expand_as(sample)
    identity_modality = torch.arange(modality.shape[1]).view(1, -1, 1).expand_as(modality)
    assert torch.equal(sample, identity_sample) == (shuffled_axis == "modality")
    assert torch.equal(modality, identity_modality) == (shuffled_axis == "sample")


def test_no_maxpool_scores_differ_on_the_same_weights():
    torch.manual_seed(0)
    full = models.create("carat", SPEC, **TINY).eval()
    mean_pooled = models.create("no_maxpool", SPEC, **TINY).eval()
    mean_pooled.load_state_dict(full.state_dict())
    inputs, masks, _ = learnable_batch(batch=8)
    assert not torch.allclose(full(inputs, masks), mean_pooled(inputs, masks))
    f = full._label_features(inputs, masks)
    logits = torch.einsum("bmcd,mcd->bmc", f, full.classifier)
    torch.testing.assert_close(mean_pooled._pooled_logits(f), logits.mean(1))
    torch.testing.assert_close(full._pooled_logits(f), logits.max(1).values)


def test_no_aggregation_scores_are_the_pooled_beta_logits():
    torch.manual_seed(0)
    model = models.create("no_aggregation", SPEC, **TINY).eval()
    assert model.aggregator is None
    inputs, masks, labels = learnable_batch(batch=8)
    beta = model._reconstruct(model._label_features(inputs, masks), soft=False).b
    expected = torch.sigmoid(torch.einsum("bmcd,mcd->bmc", beta, model.classifier).max(1).values)
    torch.testing.assert_close(model(inputs, masks), expected)
    assert not {"agg", "shuffle_agg"} & set(model.train().training_loss(inputs, masks, labels).parts)


def test_full_score_averages_pooled_beta_and_aggregation_scores():
    torch.manual_seed(0)
    model = models.create("carat", SPEC, **TINY).eval()
    inputs, masks, _ = learnable_batch(batch=8)
    beta = model._reconstruct(model._label_features(inputs, masks), soft=False).b
    pooled = torch.sigmoid(torch.einsum("bmcd,mcd->bmc", beta, model.classifier).max(1).values)
    aggregated = torch.sigmoid(model.aggregator(beta.flatten(2))).mean(1)
    torch.testing.assert_close(model(inputs, masks), (pooled + aggregated) / 2)


def test_inference_uses_the_closer_prototype():
    torch.manual_seed(0)
    model = models.create("carat", SPEC, **TINY)
    inputs, masks, labels = learnable_batch(batch=8)
    train(model, inputs, masks, labels, steps=3)
    z = model._reconstruct(model._label_features(inputs, masks), soft=False).z
    hard = model._prototype_padding(z, soft=False)
    positive, negative = model.prototypes
    normalised = torch.nn.functional.normalize(z, dim=-1)
    closer_positive = (normalised * positive).sum(-1) > (normalised * negative).sum(-1)
    torch.testing.assert_close(hard, torch.where(closer_positive.unsqueeze(-1), positive, negative))
    soft = model._prototype_padding(z, soft=True)
    assert not torch.allclose(soft, hard)
