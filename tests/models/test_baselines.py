"""Baselines behind the model contract: learn a tiny synthetic problem, respect masks, stay deterministic."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import models
from harness.data.dataset import DataSpec
from models.base import pooled_numpy

CLASSIC = ("br", "cc", "lp", "mlknn", "knn_br")
NEURAL = ("early_fusion", "late_fusion", "mult")
TINY = dict(d_model=16, n_heads=2)  # neural overrides that keep every test well under a second

# Modality layouts: M = 2 and 3, sequence and vector (T = 1) modalities, different T per modality.
LAYOUTS = {
    "two_sequences": {"text": (5, 4), "audio": (8, 3)},
    "three_mixed": {"text": (6, 4), "vector": (1, 3), "audio": (9, 5)},
}
LABELS = ("first", "second", "third")


def make_split(layout: dict, n: int, seed: int, padding_scale: float = 100.0):
    """Random right-padded features whose labels are sign tests of pooled (masked-mean) features.

    Padded steps hold huge values: any model that lets padding leak would see mostly noise.
    """
    rng = np.random.default_rng(seed)
    inputs, masks = {}, {}
    for name, (steps, dim) in layout.items():
        x = rng.normal(size=(n, steps, dim)).astype(np.float32)
        lengths = rng.integers(1, steps + 1, size=n)
        mask = np.arange(steps)[None, :] < lengths[:, None]
        x[~mask] = padding_scale * rng.normal(size=((~mask).sum(), dim))
        inputs[name], masks[name] = x, mask
    pooled = pooled_numpy(inputs, masks, list(layout))
    # With several modalities each label mixes features of two of them (index 5 lies past the first's 4).
    mixed = pooled[:, min(5, pooled.shape[1] - 1)]
    labels = np.stack(
        [pooled[:, 0] + pooled[:, -1] > 0, pooled[:, 1] - pooled[:, -2] > 0, pooled[:, 2] + mixed > 0.2], axis=1
    ).astype(np.float32)
    return inputs, masks, labels


def spec_of(layout: dict) -> DataSpec:
    return DataSpec(modalities=dict(layout), labels=LABELS)


def micro_f1(labels: np.ndarray, predicted: np.ndarray) -> float:
    return float(2 * (labels * predicted).sum() / (labels.sum() + predicted.sum()))


def as_torch(inputs, masks):
    return {m: torch.from_numpy(x) for m, x in inputs.items()}, {m: torch.from_numpy(k) for m, k in masks.items()}


def neural_scores(model, inputs, masks) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return model(*as_torch(inputs, masks)).numpy()


def change_padding(inputs, masks, seed: int):
    """Same real steps, different (huge) values in every padded step."""
    rng = np.random.default_rng(seed)
    changed = {}
    for name, x in inputs.items():
        x = x.copy()
        padded = ~masks[name]
        x[padded] = 1000.0 * rng.normal(size=(padded.sum(), x.shape[2]))
        changed[name] = x
    return changed


# --- registry --------------------------------------------------------------------------------


def test_every_baseline_is_registered_with_a_description():
    for name in CLASSIC + NEURAL:
        assert name in models.list()
        assert models.describe(name)


@pytest.mark.parametrize("name", CLASSIC + NEURAL)
def test_unknown_field_and_preset_are_refused(name):
    spec = spec_of(LAYOUTS["three_mixed"])
    with pytest.raises(ValueError, match="valid fields"):
        models.create(name, spec, no_such_field=1)
    with pytest.raises(ValueError, match="valid presets: paper, small"):
        models.create(name, spec, preset="huge")


@pytest.mark.parametrize(
    "name, bad",
    [
        ("br", dict(C=0.0)),
        ("cc", dict(n_chains=0)),
        ("mlknn", dict(k=0)),
        ("knn_br", dict(weights="x")),
        ("early_fusion", dict(d_model=10, n_heads=4)),
        ("mult", dict(pool="max")),
    ],
)
def test_invalid_config_values_are_refused(name, bad):
    with pytest.raises(ValueError):
        models.create(name, spec_of(LAYOUTS["two_sequences"]), **bad)


def test_paper_presets_build():
    spec = spec_of(LAYOUTS["three_mixed"])
    for name in CLASSIC + NEURAL:
        assert models.create(name, spec, preset="paper").config is not None
    assert models.create("mult", spec, preset="paper").config.d_model == 128


# --- classic ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CLASSIC)
def test_classic_learns_and_beats_the_all_positive_floor(name):
    layout = LAYOUTS["three_mixed"]
    train, test = make_split(layout, 300, seed=0), make_split(layout, 200, seed=1)
    model = models.create(name, spec_of(layout)).fit(*train)
    scores = model.predict_scores(test[0], test[1])
    assert scores.shape == (200, 3) and scores.dtype == np.float32
    assert (scores >= 0).all() and (scores <= 1).all()
    floor = micro_f1(test[2], np.ones_like(test[2]))  # best constant prediction for micro-F1
    assert micro_f1(test[2], scores > 0.5) > floor + 0.1


@pytest.mark.parametrize("layout", LAYOUTS.values(), ids=LAYOUTS.keys())
@pytest.mark.parametrize("name", CLASSIC)
def test_classic_shapes_and_padding_ignored(name, layout):
    train, test = make_split(layout, 60, seed=2), make_split(layout, 25, seed=3)
    np.random.seed(0)  # as the trainer does: cc draws its chain orders from numpy's global RNG
    model = models.create(name, spec_of(layout)).fit(*train)
    scores = model.predict_scores(test[0], test[1])
    assert scores.shape == (25, 3)
    np.testing.assert_array_equal(scores, model.predict_scores(change_padding(test[0], test[1], 4), test[1]))
    np.random.seed(0)
    refitted = models.create(name, spec_of(layout)).fit(change_padding(train[0], train[1], 5), train[1], train[2])
    np.testing.assert_allclose(refitted.predict_scores(test[0], test[1]), scores, atol=1e-6)


@pytest.mark.parametrize("name", CLASSIC)
def test_classic_survives_a_label_never_positive_in_training(name):
    layout = LAYOUTS["two_sequences"]
    inputs, masks, labels = make_split(layout, 60, seed=6)
    labels[:, 1] = 0
    scores = models.create(name, spec_of(layout)).fit(inputs, masks, labels).predict_scores(inputs, masks)
    assert scores[:, 1].max() < 0.5
    assert np.isfinite(scores).all()


def test_classic_refuses_bad_inputs():
    layout = LAYOUTS["two_sequences"]
    inputs, masks, labels = make_split(layout, 30, seed=7)
    model = models.create("br", spec_of(layout))
    with pytest.raises(RuntimeError, match="not fitted"):
        model.predict_scores(inputs, masks)
    with pytest.raises(ValueError, match="'audio' missing"):
        model.fit({"text": inputs["text"]}, masks, labels)
    with pytest.raises(ValueError, match="labels must be 0/1"):
        model.fit(inputs, masks, labels * 2)
    with pytest.raises(ValueError, match="expected"):
        model.fit(inputs, masks, labels[:, :2])


@pytest.mark.slow  # fits several chains of every size twice
def test_classifier_chains_are_seeded():
    layout = LAYOUTS["three_mixed"]
    train, test = make_split(layout, 80, seed=8), make_split(layout, 20, seed=9)
    spec = spec_of(layout)

    def scores(seed):
        return models.create("cc", spec, n_chains=2, seed=seed).fit(*train).predict_scores(test[0], test[1])

    def orders(seed):
        return [list(c.order_) for c in models.create("cc", spec, n_chains=3, seed=seed).fit(*train).chains_]

    np.testing.assert_array_equal(scores(3), scores(3))
    assert orders(3) == orders(3)
    assert orders(3) != orders(4)
    # Without a seed of its own the chain orders follow numpy's global RNG, which the trainer seeds per run.
    np.random.seed(7)
    first = orders(None)
    np.random.seed(7)
    assert orders(None) == first
    np.random.seed(8)
    assert orders(None) != first


@pytest.mark.parametrize(
    "name, expected", [("br", 3 * (7 + 1)), ("lp", None), ("mlknn", 3 + 2 * 3 * 11), ("knn_br", 0)]
)
def test_classic_parameter_counts(name, expected):
    layout = LAYOUTS["two_sequences"]  # 4 + 3 = 7 pooled features
    model = models.create(name, spec_of(layout))
    assert model.n_parameters == 0
    model.fit(*make_split(layout, 60, seed=30))
    if name == "lp":  # 7 weights and a bias per label set seen in training (mlknn: prior + 2 tables of k+1)
        expected = len(model.label_sets_) * (7 + 1)
    assert model.n_parameters == expected


def test_label_powerset_scores_are_marginals_of_seen_label_sets():
    layout = LAYOUTS["two_sequences"]
    inputs, masks, labels = make_split(layout, 120, seed=10)
    # Only nested label sets {}, {first}, {first, second}: "second" implies "first", "third" never occurs.
    labels[:, 2] = 0
    labels[:, 1] *= labels[:, 0]
    model = models.create("lp", spec_of(layout)).fit(inputs, masks, labels)
    test_inputs, test_masks, _ = make_split(layout, 40, seed=11)
    scores = model.predict_scores(test_inputs, test_masks)
    pooled = model.scaler_.transform(pooled_numpy(test_inputs, test_masks, layout))
    class_probabilities = model.model_.predict_proba(pooled)
    np.testing.assert_allclose(class_probabilities.sum(1), 1.0, atol=1e-6)
    # Sum of marginals = expected size of the predicted label set.
    np.testing.assert_allclose(scores.sum(1), class_probabilities @ model.label_sets_.sum(1), atol=1e-5)
    assert (scores[:, 1] <= scores[:, 0] + 1e-6).all()
    assert (scores[:, 2] == 0).all()


def test_label_powerset_with_a_single_label_set():
    layout = LAYOUTS["two_sequences"]
    inputs, masks, labels = make_split(layout, 20, seed=12)
    labels[:] = np.array([1, 0, 1], dtype=np.float32)
    scores = models.create("lp", spec_of(layout)).fit(inputs, masks, labels).predict_scores(inputs, masks)
    np.testing.assert_array_equal(scores, labels)


def mlknn_by_loops(train_x, train_y, test_x, k, s):
    """ML-kNN exactly as written in Zhang & Zhou (2007), one sample and one label at a time."""
    n, n_labels = train_y.shape

    def neighbours(point, exclude=None):
        distances = [(np.linalg.norm(point - train_x[j]), j) for j in range(n) if j != exclude]
        return [j for _, j in sorted(distances)[:k]]

    prior = [(s + train_y[:, l].sum()) / (2 * s + n) for l in range(n_labels)]
    c = np.zeros((n_labels, k + 1))
    c_not = np.zeros((n_labels, k + 1))
    for i in range(n):
        near = neighbours(train_x[i], exclude=i)
        for l in range(n_labels):
            delta = int(sum(train_y[j, l] for j in near))
            if train_y[i, l] == 1:
                c[l, delta] += 1
            else:
                c_not[l, delta] += 1
    scores = np.zeros((len(test_x), n_labels))
    for t, point in enumerate(test_x):
        near = neighbours(point)
        for l in range(n_labels):
            count = int(sum(train_y[j, l] for j in near))
            likelihood_1 = (s + c[l, count]) / (s * (k + 1) + c[l].sum())
            likelihood_0 = (s + c_not[l, count]) / (s * (k + 1) + c_not[l].sum())
            positive, negative = prior[l] * likelihood_1, (1 - prior[l]) * likelihood_0
            scores[t, l] = positive / (positive + negative)
    return scores


def test_mlknn_matches_the_published_algorithm():
    layout = LAYOUTS["three_mixed"]
    train, test = make_split(layout, 40, seed=13), make_split(layout, 15, seed=14)
    model = models.create("mlknn", spec_of(layout), k=5, smoothing=0.5).fit(*train)
    order = list(layout)
    train_x = model.scaler_.transform(pooled_numpy(train[0], train[1], order))
    test_x = model.scaler_.transform(pooled_numpy(test[0], test[1], order))
    expected = mlknn_by_loops(train_x, train[2].astype(int), test_x, k=5, s=0.5)
    np.testing.assert_allclose(model.predict_scores(test[0], test[1]), expected, rtol=1e-5)


def test_mlknn_needs_more_samples_than_neighbours():
    layout = LAYOUTS["two_sequences"]
    with pytest.raises(ValueError, match="more than 10"):
        models.create("mlknn", spec_of(layout)).fit(*make_split(layout, 10, seed=15))


# --- neural ----------------------------------------------------------------------------------


def train_steps(model, split, steps: int, seed: int = 0) -> list[float]:
    inputs, masks = as_torch(split[0], split[1])
    labels = torch.from_numpy(split[2])
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    losses = []
    for _ in range(steps):
        batch = torch.randint(0, len(labels), (32,), generator=generator)
        out = model.training_loss(
            {m: x[batch] for m, x in inputs.items()}, {m: k[batch] for m, k in masks.items()}, labels[batch]
        )
        assert set(out.parts) == {"bce"} and torch.equal(out.parts["bce"], out.total)
        optimiser.zero_grad()
        out.total.backward()
        optimiser.step()
        losses.append(out.total.item())
    return losses


def full_loss(model, split) -> float:
    model.eval()
    with torch.no_grad():
        return model.training_loss(*as_torch(split[0], split[1]), torch.from_numpy(split[2])).total.item()


@pytest.mark.slow  # many training steps per model
@pytest.mark.parametrize("name", NEURAL)
def test_neural_training_lowers_the_loss(name):
    layout = LAYOUTS["three_mixed"]
    train = make_split(layout, 200, seed=20)
    torch.manual_seed(0)
    model = models.create(name, spec_of(layout), **TINY)
    before = full_loss(model, train)
    train_steps(model, train, steps=40)
    after = full_loss(model, train)
    assert after < 0.9 * before, (before, after)


@pytest.mark.parametrize("layout", LAYOUTS.values(), ids=LAYOUTS.keys())
@pytest.mark.parametrize("name", NEURAL)
def test_neural_shapes_and_padding_ignored(name, layout):
    torch.manual_seed(1)
    model = models.create(name, spec_of(layout), **TINY)
    inputs, masks, _ = make_split(layout, 6, seed=21)
    first = next(iter(layout))
    masks[first][0] = False  # one sample whose first modality is entirely padding
    scores = neural_scores(model, inputs, masks)
    assert scores.shape == (6, 3) and np.isfinite(scores).all()
    assert (scores >= 0).all() and (scores <= 1).all()
    np.testing.assert_allclose(neural_scores(model, change_padding(inputs, masks, 22), masks), scores, atol=1e-5)


@pytest.mark.parametrize("name", NEURAL)
def test_neural_output_equals_that_of_the_unpadded_sample(name):
    """Attention and pooling mask padding: a sample scores the same with its padding cut off."""
    layout = LAYOUTS["three_mixed"]
    torch.manual_seed(2)
    model = models.create(name, spec_of(layout), **TINY)
    inputs, masks, _ = make_split(layout, 4, seed=23)
    batch_scores = neural_scores(model, inputs, masks)
    for i in range(4):
        alone = {m: x[i : i + 1, : masks[m][i].sum()] for m, x in inputs.items()}
        alone_masks = {m: np.ones(alone[m].shape[:2], dtype=bool) for m in alone}
        np.testing.assert_allclose(neural_scores(model, alone, alone_masks)[0], batch_scores[i], atol=1e-5)


@pytest.mark.parametrize("name", NEURAL)
def test_neural_training_is_deterministic_under_a_seed(name):
    layout = LAYOUTS["two_sequences"]
    train = make_split(layout, 64, seed=24)
    runs = []
    for _ in range(2):
        torch.manual_seed(3)
        model = models.create(name, spec_of(layout), **TINY)
        losses = train_steps(model, train, steps=3)
        runs.append((losses, neural_scores(model, train[0], train[1])))
    assert runs[0][0] == runs[1][0]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


def test_late_fusion_score_is_the_mean_of_modality_probabilities():
    layout = LAYOUTS["three_mixed"]
    torch.manual_seed(4)
    model = models.create("late_fusion", spec_of(layout), **TINY).eval()
    inputs, masks = as_torch(*make_split(layout, 5, seed=25)[:2])
    with torch.no_grad():
        per_modality = torch.sigmoid(model.modality_logits(inputs, masks))
        assert per_modality.shape == (5, 3, 3)
        torch.testing.assert_close(model(inputs, masks), per_modality.mean(1))


def test_single_modality_works_for_fusion_and_is_refused_by_mult():
    layout = {"text": (5, 4)}
    inputs, masks, _ = make_split(layout, 4, seed=26)
    for name in ("early_fusion", "late_fusion"):
        assert neural_scores(models.create(name, spec_of(layout), **TINY), inputs, masks).shape == (4, 3)
    with pytest.raises(ValueError, match="at least 2 modalities"):
        models.create("mult", spec_of(layout), **TINY)


@pytest.mark.parametrize("pool", ["last", "mean"])
def test_mult_pooling_choices_respect_masks(pool):
    layout = LAYOUTS["two_sequences"]
    torch.manual_seed(5)
    model = models.create("mult", spec_of(layout), pool=pool, **TINY)
    inputs, masks, _ = make_split(layout, 5, seed=27)
    scores = neural_scores(model, inputs, masks)
    np.testing.assert_allclose(neural_scores(model, change_padding(inputs, masks, 28), masks), scores, atol=1e-5)


def test_neural_refuses_missing_modality():
    layout = LAYOUTS["two_sequences"]
    model = models.create("early_fusion", spec_of(layout), **TINY)
    inputs, masks = as_torch(*make_split(layout, 3, seed=29)[:2])
    with pytest.raises(ValueError, match="'audio' missing"):
        model({"text": inputs["text"]}, masks)
