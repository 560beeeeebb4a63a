"""CARAT: shapes, masks, state updates, vectorised pieces, determinism, config and registry."""

import re
from dataclasses import asdict

import numpy as np
import pytest
import torch

import models
from harness import trainer
from harness.config import TrainConfig
from harness.data import load
from harness.data.dataset import DataSpec
from models.base import LossOutput
from models.carat import (
    CARAT,
    CARATConfig,
    auto_queue_size,
    contrastive_classes,
    ema_prototypes,
    shuffle_indices,
    shuffled_samples,
)

TINY = dict(hidden_size=16, latent_size=8, depths=(1,), heads=2, dropout=0.0, queue_size=256)  # >= one push
SPEC3 = DataSpec({"text": (6, 5), "visual": (8, 3), "audio": (1, 4)}, ("a", "b", "c"))
SPEC2 = DataSpec({"text": (1, 7), "audio": (5, 2)}, ("only",))


def make_batch(spec, batch=6, seed=0, pad=True):
    g = torch.Generator().manual_seed(seed)
    inputs, masks = {}, {}
    for name, (steps, dim) in spec.modalities.items():
        inputs[name] = torch.randn(batch, steps, dim, generator=g)
        mask = torch.ones(batch, steps, dtype=torch.bool)
        if pad and steps > 1:
            lengths = torch.randint(1, steps + 1, (batch,), generator=g)
            mask = torch.arange(steps).unsqueeze(0) < lengths.unsqueeze(1)
        masks[name] = mask
    labels = (torch.rand(batch, spec.n_labels, generator=g) > 0.5).float()
    return inputs, masks, labels


def unaligned(spec):
    return DataSpec(spec.modalities, spec.labels, aligned=False)


@pytest.mark.parametrize("spec", [SPEC3, SPEC2, unaligned(SPEC3), unaligned(SPEC2)], ids=["m3", "m2", "m3u", "m2u"])
def test_shapes_scores_latents_and_loss(spec):
    torch.manual_seed(0)
    model = models.create("carat", spec, **TINY)
    inputs, masks, labels = make_batch(spec)
    model.train()
    out = model.training_loss(inputs, masks, labels)
    assert isinstance(out, LossOutput) and out.total.ndim == 0 and torch.isfinite(out.total)
    assert all(torch.isfinite(v) for v in out.parts.values())
    torch.testing.assert_close(out.total, sum(out.parts.values()))
    out.total.backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    assert unused == []
    model.eval()
    scores = model(inputs, masks)
    assert scores.shape == (6, spec.n_labels)
    assert bool(((scores >= 0) & (scores <= 1)).all())
    assert model.latents(inputs, masks).shape == (6, len(spec.modalities), spec.n_labels, 8)


def test_unaligned_modalities_are_aligned_to_the_text_length():
    model = models.create("carat", unaligned(SPEC3), **TINY)
    assert model.aligned_length == 6
    assert [e.positions.num_embeddings for e in model.encoders] == [6, 6, 6]
    longer = models.create("carat", unaligned(SPEC3), aligned_length=11, **TINY)
    assert [e.positions.num_embeddings for e in longer.encoders] == [6, 11, 11]
    inputs, masks, _ = make_batch(unaligned(SPEC3))
    assert longer.eval()(inputs, masks).shape == (6, 3)


@pytest.mark.parametrize("spec", [SPEC3, unaligned(SPEC3)], ids=["aligned", "unaligned"])
def test_padding_frames_do_not_change_scores(spec):
    torch.manual_seed(0)
    model = models.create("carat", spec, **TINY).eval()
    inputs, masks, _ = make_batch(spec)
    assert any(bool((~m).any()) for m in masks.values())
    changed = {n: torch.where(masks[n].unsqueeze(-1), x, 50 * torch.randn_like(x)) for n, x in inputs.items()}
    torch.testing.assert_close(model(changed, masks), model(inputs, masks), rtol=0, atol=1e-6)
    # ...while a change to a real frame does change them.
    real = {n: x + torch.randn_like(x) for n, x in inputs.items()}  # (a constant shift would be normalised away)
    assert not torch.allclose(model(real, masks), model(inputs, masks))


def test_training_step_moves_prototypes_and_queue_only_in_training_mode():
    torch.manual_seed(0)
    model = models.create("carat", SPEC3, **TINY)
    inputs, masks, labels = make_batch(SPEC3)
    model.eval()
    model.training_loss(inputs, masks, labels)
    assert int(model.queue.pointer) == 0 and not model.prototypes.any()
    model.train()
    model.training_loss(inputs, masks, labels)
    # B * 3 levels * M * C vectors pushed; a second push wraps around the queue (256).
    assert int(model.queue.pointer) == 6 * 3 * 3 * 3
    model.training_loss(inputs, masks, labels)
    assert int(model.queue.pointer) == (2 * 6 * 3 * 3 * 3) % 256
    assert model.prototypes.abs().sum() > 0


def test_a_queue_shorter_than_one_push_is_refused_before_training():
    mosei = DataSpec({"text": (4, 5), "visual": (4, 3), "audio": (4, 2)}, tuple("abcdef"))
    small = models.create("carat", mosei, preset="small")
    assert small.config.queue_size is None and small.push_size(64) == 3456
    small.check_training(64)  # the shipped studies: batch 64, 3 modalities, 6 labels
    assert small.config.queue_size == 4096 == small.queue.size  # the preset's minimum: as before
    emotions = DataSpec({"timbre": (1, 64), "rhythm": (1, 8)}, tuple("abcdef"))
    assert models.create("carat", emotions, preset="small").push_size(32) == 1152  # the emotions study, batch 32
    short = models.create("carat", mosei, preset="small", queue_size=1024)
    message = (
        "queue_size 1024 is shorter than one push of 3456 vectors "
        "(batch 64 x 3 levels x 3 modalities x 6 labels); use queue_size >= 3456"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        short.check_training(64)
    short.check_training(18)  # 18 x 3 x 3 x 6 = 972 fits
    without = models.create("no_reconstruction", mosei, preset="small", queue_size=1024)
    with pytest.raises(ValueError, match=re.escape("1152 vectors (batch 64 x 1 level x 3 modalities x 6 labels)")):
        without.check_training(64)
    models.create("no_contrastive", mosei, preset="small", queue_size=1).check_training(64)  # no queue at all
    models.create("carat", mosei, preset="small", queue_size=1, gamma_s=0.0).check_training(64)  # no SupCon, no push
    # A push the queue cannot hold is refused even without the check (no silent truncation).
    inputs, masks, labels = make_batch(mosei, batch=64)
    with pytest.raises(ValueError, match="longer than the queue"):
        short.train().training_loss(inputs, masks, labels)


def test_contrastive_mode_sets_queue_anchors():
    assert CARATConfig().uses_queue_anchors
    assert not CARATConfig(contrastive_mode="fast").uses_queue_anchors
    assert not CARATConfig(queue_anchors=False).uses_queue_anchors
    with pytest.raises(ValueError, match="contradicts"):
        CARATConfig(contrastive_mode="fast", queue_anchors=True)


def test_fast_and_reference_modes_give_different_supcon():
    inputs, masks, labels = make_batch(SPEC3)
    values = []
    for mode in ("reference", "fast"):
        torch.manual_seed(0)
        model = models.create("carat", SPEC3, contrastive_mode=mode, **TINY).train()
        values.append(model.training_loss(inputs, masks, labels).parts["supcon"])
    assert not torch.isclose(values[0], values[1])


def test_same_seed_same_data_gives_identical_scores():
    inputs, masks, labels = make_batch(SPEC3)
    results = []
    for _ in range(2):
        torch.manual_seed(123)
        model = models.create("carat", SPEC3, **{**TINY, "dropout": 0.2})
        optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
        model.train()
        for _ in range(3):
            optimiser.zero_grad()
            model.training_loss(inputs, masks, labels).total.backward()
            optimiser.step()
        results.append(model.eval()(inputs, masks))
    assert torch.equal(results[0], results[1])


def test_layer_checkpointing_changes_no_result():
    inputs, masks, labels = make_batch(SPEC3)
    results = []
    for checkpoint in (False, True):
        torch.manual_seed(0)
        model = models.create("carat", SPEC3, checkpoint_layers=checkpoint, **{**TINY, "depths": (2,), "dropout": 0.3})
        out = model.train().training_loss(inputs, masks, labels)
        out.total.backward()
        results.append((out.total.detach(), [p.grad for p in model.parameters()]))
    assert torch.equal(results[0][0], results[1][0])
    assert all(torch.equal(a, b) for a, b in zip(results[0][1], results[1][1]))


def test_vectorised_prototype_update_equals_the_sample_by_sample_loop():
    g = torch.Generator().manual_seed(0)
    batch, n_mod, n_labels, dim, momentum = 9, 3, 4, 5, 0.9
    prototypes = torch.randn(2, n_mod, n_labels, dim, generator=g, dtype=torch.float64)
    latents = torch.randn(batch, n_mod, n_labels, dim, generator=g, dtype=torch.float64)
    labels = (torch.rand(batch, n_labels, generator=g) > 0.5).double()
    labels[:, 0] = 1.0  # a label positive for every sample: its negative prototype must not move
    expected = prototypes.clone()
    for m in range(n_mod):  # the reference: one sample at a time, in batch order
        for i in range(batch):
            for j in range(n_labels):
                side = 0 if labels[i, j] == 1 else 1
                expected[side, m, j] = expected[side, m, j] * momentum + (1 - momentum) * latents[i, m, j]
    got = ema_prototypes(prototypes, latents, labels, momentum)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got[1, :, 0], prototypes[1, :, 0])


@pytest.mark.parametrize("sample_shuffle,modality_shuffle", [(True, True), (False, True), (True, False)])
def test_shuffle_indices_are_permutations_and_targets_follow_their_source(sample_shuffle, modality_shuffle):
    torch.manual_seed(0)
    batch, n_mod, n_labels = 7, 3, 4
    sample, modality = shuffle_indices(batch, n_mod, n_labels, sample_shuffle, modality_shuffle)
    assert sample.shape == modality.shape == (batch, n_mod, n_labels)
    # sigma_{l,m} permutes samples; pi_{l,s} permutes modalities.
    assert torch.equal(sample.sort(dim=0).values, torch.arange(batch).view(-1, 1, 1).expand_as(sample))
    assert torch.equal(modality.sort(dim=1).values, torch.arange(n_mod).view(1, -1, 1).expand_as(modality))
    assert (not torch.equal(sample, torch.arange(batch).view(-1, 1, 1).expand_as(sample))) == sample_shuffle
    assert (not torch.equal(modality, torch.arange(n_mod).view(1, -1, 1).expand_as(modality))) == modality_shuffle
    # Features that encode where they come from: 100 * sample + 10 * modality + label.
    s, m, l = torch.meshgrid(torch.arange(batch), torch.arange(n_mod), torch.arange(n_labels), indexing="ij")
    features = (100 * s + 10 * m + l).float().unsqueeze(-1).expand(-1, -1, -1, 2)
    labels = (torch.rand(batch, n_labels) > 0.5).float()
    virtual, targets = shuffled_samples(features, labels, sample, modality)
    code = virtual[..., 0].long()
    source_sample, source_modality, source_label = code // 100, code // 10 % 10, code % 10
    assert torch.equal(source_label, l)
    assert torch.equal(source_sample, sample) and torch.equal(source_modality, modality)
    assert torch.equal(targets, labels[source_sample, source_label])


def test_shuffles_use_the_global_rng():
    torch.manual_seed(5)
    first = shuffle_indices(6, 3, 2)
    torch.manual_seed(5)
    second = shuffle_indices(6, 3, 2)
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_contrastive_classes_follow_the_reference_numbering():
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    classes = contrastive_classes(labels, n_modalities=3)
    # modality m, label l: m * 2C + l if positive, m * 2C + C + l otherwise (C = 2).
    assert classes[0].tolist() == [[0, 3], [4, 7], [8, 11]]
    assert classes[1].tolist() == [[2, 1], [6, 5], [10, 9]]


def test_paper_preset_sizes_and_depths():
    model = models.create("carat", SPEC3, preset="paper")
    model.check_training(64)  # sizes the queue: one push of MOSEI (3456) fits the reference's 8192
    config = model.config
    assert (config.hidden_size, config.latent_size, config.heads, config.queue_size) == (256, 64, 8, 8192)
    assert config.dropout == 0.3 and config.gamma_o == 0.01 and config.gamma_sf == 0.1 and config.gamma_rb == 0.0
    assert [len(e.layers) for e in model.encoders] == [6, 4, 4]
    named = models.create("carat", SPEC3, preset="small", depths={"text": 3, "visual": 1, "audio": 2})
    assert [len(e.layers) for e in named.encoders] == [3, 1, 2]


def test_paper_preset_aligns_unaligned_data_to_500_steps_and_small_to_the_first_modality():
    spec = unaligned(SPEC3)
    paper = models.create("carat", spec, preset="paper")
    assert paper.aligned_length == 500
    assert [e.positions.num_embeddings for e in paper.encoders] == [6, 500, 500]
    assert models.create("carat", spec, preset="small").aligned_length == 6
    assert models.create("carat", SPEC3, preset="paper").aligned_length is None  # aligned data: no aligner


def test_fusion_switch_builds_one_or_two_layers():
    linear = models.create("carat", SPEC3, **TINY)
    two = models.create("carat", SPEC3, fusion="mlp", **TINY)
    assert len(linear.fusion.weights) == 1 and len(two.fusion.weights) == 2
    inputs, masks, _ = make_batch(SPEC3)
    assert two.eval()(inputs, masks).shape == (6, 3)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (dict(not_a_field=1), "valid fields"),
        (dict(pooling="min"), "pooling"),
        (dict(hidden_size=10, heads=4), "divisible"),
        (dict(depths={"text": 1}), "no entry"),
        (dict(gamma_s=-1.0), "gamma_s"),
    ],
)
def test_bad_configs_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        models.create("carat", SPEC3, **overrides)


def test_bad_inputs_are_refused():
    model = models.create("carat", SPEC3, **TINY)
    inputs, masks, labels = make_batch(SPEC3)
    with pytest.raises(ValueError, match="missing"):
        model({"text": inputs["text"]}, masks)
    with pytest.raises(ValueError, match="visual"):
        model({**inputs, "visual": inputs["visual"][..., :2]}, masks)
    with pytest.raises(ValueError, match="labels"):
        model.training_loss(inputs, masks, labels[:, :2])
    with pytest.raises(ValueError, match="at least 2"):
        CARAT(DataSpec({"text": (3, 2)}, ("a",)))


def test_every_variant_is_registered_with_a_description():
    names = [
        "carat",
        "no_contrastive",
        "no_shuffle",
        "no_sample_shuffle",
        "no_modality_shuffle",
        "no_reconstruction",
        "no_maxpool",
        "no_aggregation",
    ]
    assert set(names) <= set(models.list())
    for name in names:
        assert models.describe(name)
        assert isinstance(models.create(name, SPEC2, **TINY), CARAT)
    with pytest.raises(ValueError, match="fixes"):
        models.create("no_shuffle", SPEC2, sample_shuffle=True)
    with pytest.raises(ValueError, match="preset"):
        models.create("carat", SPEC2, preset="huge")


def test_an_unset_queue_is_sized_from_the_data_and_logged_in_the_config():
    """14 labels, 2 views, batch 64: one push is 64 x 3 x 2 x 14 = 5376 > the small preset's 4096."""
    data = load("synthetic_tabular", n_train=96, n_valid=32, n_test=16, n_labels=14, view_dims=(12, 6))
    model = models.create("carat", data.spec, preset="small")
    assert model.push_size(64) == 5376
    cfg = TrainConfig.from_preset("small", epochs=1, batch_size=64, seed=0, progress=False)
    result = trainer.fit(model, data, cfg)  # the trainer's check_training sizes the queue first
    assert model.config.queue_size == 8192 == model.queue.size  # the next power of two over one push
    assert asdict(model.config)["queue_size"] == 8192  # what the runner logs as the model's param
    assert np.isfinite(result.history[0]["train_loss"])
    batches = [64] if cfg.drop_last else [64, 32]
    assert int(model.queue.pointer) == sum(model.push_size(b) for b in batches) % 8192  # every step pushed
    # A size the user fixes is used as given, and refused when it cannot hold one push.
    fixed = models.create("carat", data.spec, preset="small", queue_size=4096)
    with pytest.raises(ValueError, match=re.escape("queue_size 4096 is shorter than one push of 5376 vectors")):
        fixed.check_training(64)
    models.create("carat", data.spec, preset="small", queue_size=6000).check_training(64)  # not rounded
    assert auto_queue_size(5376, 4096) == 8192 and auto_queue_size(3456, 4096) == 4096
    assert auto_queue_size(8193, 1) == 16384 and auto_queue_size(0, 4096) == 4096
