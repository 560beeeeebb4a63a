"""The stratified, per-seed validation carve shared by the arff/emotions and npz loaders."""

import numpy as np
import pytest

from harness.data import describe
from harness.data.carve import SPLIT_SEED_OPTION, carve_validation
from harness.data.dataset import DataFormatError


@pytest.fixture(scope="module")
def emotions_labels(emotions_dir):
    from harness.data.arff import _read

    return _read(emotions_dir / "emotions-train.arff", 6, "train")[2]


def deviation(y, train, valid):
    """Mean over labels of |share in valid - share in train|."""
    return float(np.abs(y[valid].mean(0) - y[train].mean(0)).mean())


def test_stratified_on_emotions_and_no_worse_than_random(emotions_labels):
    y = emotions_labels
    stratified, random = [], []
    for seed in range(20):
        carve = carve_validation(y, 0.2, seed, "emotions")
        stratified.append(deviation(y, carve.train, carve.valid))
        order = np.random.default_rng(seed).permutation(len(y))
        random.append(deviation(y, order[len(carve.valid) :], order[: len(carve.valid)]))
        # Every label's share in valid within 4 points of its share in train, for every seed.
        assert np.abs(y[carve.valid].mean(0) - y[carve.train].mean(0)).max() < 0.04, seed
    assert np.mean(stratified) <= np.mean(random)
    assert np.mean(stratified) < 0.5 * np.mean(random)  # measured: about 0.007 against 0.05


def test_deterministic_per_seed_different_across_seeds_disjoint_and_complete():
    y = (np.random.default_rng(0).random((500, 12)) < np.linspace(0.05, 0.5, 12)).astype(np.float32)
    first, again = carve_validation(y, 0.2, 4, "f"), carve_validation(y, 0.2, 4, "f")
    np.testing.assert_array_equal(first.valid, again.valid)
    valids = {tuple(carve_validation(y, 0.2, seed, "f").valid) for seed in range(6)}
    assert len(valids) == 6
    assert len(first.valid) == 100 and len(first.train) == 400
    assert np.intersect1d(first.train, first.valid).size == 0
    np.testing.assert_array_equal(np.union1d(first.train, first.valid), np.arange(500))
    assert first.notes()["carved_sizes"] == {"train": 400, "valid": 100} and first.notes()["split_seed"] == 4


@pytest.mark.parametrize("fraction, n_valid", [(0.1, 39), (0.2, 78), (0.33, 129), (0.5, 196)])
def test_exact_validation_size_for_every_seed(emotions_labels, fraction, n_valid):
    for seed in range(5):
        assert len(carve_validation(emotions_labels, fraction, seed, "emotions").valid) == n_valid


def test_one_label_and_unlabelled_rows():
    one = (np.arange(50) % 5 == 0).astype(float)[:, None]  # 10 positives
    carve = carve_validation(one, 0.2, 0, "one")
    assert len(carve.valid) == 10 and one[carve.valid].sum() == 2
    none = np.zeros((20, 3))
    assert len(carve_validation(none, 0.25, 1, "none").valid) == 5


def test_too_small_and_bad_options():
    with pytest.raises(DataFormatError) as info:
        carve_validation(np.ones((3, 2)), 0.1, 0, "tiny.npz")
    assert info.value.source == "tiny.npz" and info.value.split == "train" and "cannot carve" in info.value.problem
    for fraction in (0, 1, -0.2, "0.2", True):
        with pytest.raises(ValueError, match="valid_fraction"):
            carve_validation(np.ones((10, 2)), fraction, 0, "x")
    for seed in (-1, 1.0, None, True):
        with pytest.raises(ValueError, match="split_seed"):
            carve_validation(np.ones((10, 2)), 0.2, seed, "x")


def test_the_carving_loaders_say_so_in_their_options():
    carving = {name for name, entry in describe().items() if SPLIT_SEED_OPTION in entry["options"]}
    assert carving == {"emotions", "arff", "npz"}
    for name in carving:
        assert "valid_fraction" in describe()[name]["options"]
