"""The label prior: every sample scores each label's training frequency, whatever its inputs."""

import numpy as np
import pytest

import models
from harness import trainer
from harness.config import TrainConfig
from harness.data.dataset import DataSpec, MultimodalDataset, Split
from models.base import ClassicModel

LAYOUTS = {
    "one_vector": {"only": (1, 3)},
    "two_sequences": {"text": (5, 4), "audio": (8, 3)},
    "three_mixed": {"text": (6, 4), "vector": (1, 3), "audio": (9, 5)},
}


def make_split(layout, n, seed, n_labels=4):
    rng = np.random.default_rng(seed)
    inputs = {m: rng.normal(size=(n, t, d)).astype(np.float32) for m, (t, d) in layout.items()}
    masks = {m: np.ones((n, t), bool) for m, (t, _) in layout.items()}
    labels = (rng.random((n, n_labels)) < [0.1, 0.5, 0.9, 0.0]).astype(np.float32)
    return inputs, masks, labels


@pytest.mark.parametrize("layout", LAYOUTS.values(), ids=LAYOUTS.keys())
def test_scores_are_the_training_label_means_for_every_sample(layout):
    spec = DataSpec(dict(layout), ("a", "b", "c", "d"))
    model = models.create("prior", spec)
    assert isinstance(model, ClassicModel) and model.n_parameters == 0
    inputs, masks, labels = make_split(layout, 50, seed=0)
    model.fit(inputs, masks, labels)
    other_inputs, other_masks, _ = make_split(layout, 7, seed=1)
    scores = model.predict_scores(other_inputs, other_masks)
    assert scores.shape == (7, 4) and scores.dtype == np.float32
    np.testing.assert_array_equal(scores, np.tile(labels.mean(0).astype(np.float32), (7, 1)))
    assert scores[0, 3] == 0.0  # a label never seen positive scores 0
    assert model.n_parameters == 4


def test_features_do_not_matter_but_the_spec_is_checked():
    layout = LAYOUTS["two_sequences"]
    spec = DataSpec(dict(layout), ("a", "b", "c", "d"))
    inputs, masks, labels = make_split(layout, 20, seed=0)
    model = models.create("prior", spec).fit(inputs, masks, labels)
    noise = {m: 1000 * x + 5 for m, x in inputs.items()}
    np.testing.assert_array_equal(model.predict_scores(noise, masks), model.predict_scores(inputs, masks))
    with pytest.raises(ValueError, match="missing"):
        model.predict_scores({"text": inputs["text"]}, masks)
    with pytest.raises(ValueError, match="0/1"):
        models.create("prior", spec).fit(inputs, masks, labels * 0.5 + 0.25)
    with pytest.raises(RuntimeError, match="not fitted"):
        models.create("prior", spec).predict_scores(inputs, masks)
    with pytest.raises(ValueError, match="valid fields"):
        models.create("prior", spec, k=3)


def test_the_trainer_runs_it_like_any_classic_model():
    layout = LAYOUTS["three_mixed"]
    splits = {}
    for seed, name in enumerate(("train", "valid", "test")):
        inputs, masks, labels = make_split(layout, 30, seed)
        splits[name] = Split(inputs, masks, labels)
    data = MultimodalDataset(name="toy", modalities=tuple(layout), label_names=("a", "b", "c", "d"), splits=splits)
    result = trainer.fit(models.create("prior", data.spec), data, TrainConfig(progress=False))
    np.testing.assert_allclose(result.test_scores[0], splits["train"].labels.mean(0), rtol=1e-6)
    assert result.n_parameters == 4 and result.best_epoch == 1
