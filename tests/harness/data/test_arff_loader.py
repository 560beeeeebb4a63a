"""MULAN ARFF pairs: the real emotions files and small hand-written ones."""

import numpy as np
import pytest

from harness.data import DataFormatError, load
from harness.data.arff import EMOTIONS_DIR_ENV, default_emotions_dir

EMOTIONS_LABELS = ("amazed-suprised", "happy-pleased", "relaxing-calm", "quiet-still", "sad-lonely", "angry-aggresive")
TRAIN_COUNTS = [119, 107, 168, 89, 95, 131]
TEST_COUNTS = [54, 59, 96, 59, 73, 58]


def test_emotions_views_labels_and_counts(emotions_dir):
    ds = load("emotions", emotions_dir)
    assert ds.modalities == ("timbre", "rhythm") and ds.label_names == EMOTIONS_LABELS
    assert ds.spec.modalities == {"timbre": (1, 64), "rhythm": (1, 8)}
    train, valid, test = (ds.splits[s] for s in ("train", "valid", "test"))
    assert (train.n, valid.n, test.n) == (313, 78, 202)
    assert (train.labels.sum(0) + valid.labels.sum(0)).tolist() == TRAIN_COUNTS
    assert test.labels.sum(0).tolist() == TEST_COUNTS
    assert all(split.masks[m].all() for split in (train, valid, test) for m in ds.modalities)


def test_emotions_scaler_is_fitted_on_the_training_part_only(emotions_dir):
    ds = load("emotions", emotions_dir)
    fitted = np.concatenate([ds.splits["train"].features[m][:, 0] for m in ds.modalities], axis=1)
    np.testing.assert_allclose(fitted.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(fitted.std(0), 1, atol=1e-3)
    held_out = ds.splits["valid"].features["rhythm"][:, 0]
    assert np.abs(held_out.mean(0)).max() > 0.01  # not re-fitted on valid


def test_validation_is_carved_by_split_seed(emotions_dir):
    a, b, c = (load("emotions", emotions_dir, split_seed=s) for s in (0, 0, 1))
    np.testing.assert_array_equal(a.splits["valid"].labels, b.splits["valid"].labels)
    np.testing.assert_array_equal(a.splits["valid"].features["timbre"], b.splits["valid"].features["timbre"])
    assert not np.array_equal(a.splits["valid"].features["timbre"], c.splits["valid"].features["timbre"])
    assert (c.splits["train"].n, c.splits["valid"].n) == (313, 78)  # every seed: the same sizes
    assert c.notes["split_seed"] == 1 and c.notes["valid_fraction"] == 0.2
    assert "stratification" in c.notes["valid_split"]
    assert load("emotions", emotions_dir, valid_fraction=0.5).splits["valid"].n == 196
    with pytest.raises(ValueError, match="unknown option"):
        load("emotions", emotions_dir, seed=1)  # renamed: split_seed is what it seeds


def test_carved_scaler_is_the_one_of_the_carved_train_rows(emotions_dir):
    """Valid features are the raw valid rows scaled with the mean/std of the carved train rows only."""
    from harness.data.arff import _read
    from harness.data.carve import carve_validation

    raw_path = emotions_dir / "emotions-train.arff"
    _, x, y = _read(raw_path, 6, "train")
    for split_seed in (0, 3):
        ds = load("emotions", emotions_dir, split_seed=split_seed)
        carve = carve_validation(y, 0.2, split_seed, raw_path)
        mean, std = x[carve.train].mean(0), x[carve.train].std(0)
        for split, rows in (("train", carve.train), ("valid", carve.valid)):
            expected = (x[rows] - mean) / std
            got = np.concatenate([ds.splits[split].features[m][:, 0] for m in ds.modalities], axis=1)
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
            np.testing.assert_array_equal(ds.splits[split].labels, y[rows])


def test_default_folder_and_environment_override(tmp_path, monkeypatch):
    monkeypatch.delenv(EMOTIONS_DIR_ENV, raising=False)
    assert default_emotions_dir().is_absolute()
    assert default_emotions_dir().parts[-3:] == ("shared", "data", "emotions")
    monkeypatch.setenv(EMOTIONS_DIR_ENV, str(tmp_path))
    assert default_emotions_dir() == tmp_path
    with pytest.raises(FileNotFoundError, match="emotions-train.arff"):
        load("emotions")


def write_arff(path, rows, attributes=None):
    attributes = attributes or [
        "@attribute f1 numeric",
        "@attribute f2 numeric",
        "@attribute f3 numeric",
        "@attribute yes {0,1}",
        "@attribute no {0,1}",
    ]
    lines = ["@relation toy", *attributes, "@data", *(",".join(map(str, r)) for r in rows)]
    path.write_text("\n".join(lines) + "\n")


def toy_pair(folder, train_rows=None, test_rows=None, **attributes):
    rng = np.random.default_rng(0)
    default = [[*np.round(rng.normal(size=3), 3), i % 2, (i // 2) % 2] for i in range(10)]
    write_arff(folder / "toy-train.arff", train_rows or default, **attributes)
    write_arff(folder / "toy-test.arff", test_rows or default[:4], **attributes)


def test_generic_arff_with_views(tmp_path):
    toy_pair(tmp_path)
    ds = load("arff", tmp_path, n_labels=2, views={"a": [[1, 2]], "b": [3]}, valid_fraction=0.3)
    assert ds.name == "toy" and ds.label_names == ("yes", "no")
    assert ds.spec.modalities == {"a": (1, 2), "b": (1, 1)}
    assert [s.n for s in ds.splits.values()] == [7, 3, 4]
    # Every training row ends in exactly one of train / valid (the scaler is affine: distinct stays distinct).
    carved = np.concatenate([ds.splits[s].features["b"][:, 0, 0] for s in ("train", "valid")])
    assert len(np.unique(carved.round(5))) == 10
    single = load("arff", tmp_path / "toy-test.arff", n_labels=2)
    assert single.modalities == ("features",) and single.spec.modalities["features"] == (1, 3)


@pytest.mark.parametrize(
    "train_rows, attributes, problem",
    [
        ([[1, 2, "?", 0, 1]] * 10, None, "missing or NaN feature values in row 1"),
        ([[1, 2, 3, 0, 1]] * 9 + [[1, 2, 3, 2, 1]], None, "not a readable ARFF"),  # 2 is not in {0,1}
        (
            [[1, "a", 3, 0, 1]] * 10,
            [
                "@attribute f1 numeric",
                "@attribute f2 {a,b}",
                "@attribute f3 numeric",
                "@attribute yes {0,1}",
                "@attribute no {0,1}",
            ],
            "only numeric features",
        ),
        (
            None,
            [
                "@attribute f1 numeric",
                "@attribute f2 numeric",
                "@attribute f3 numeric",
                "@attribute yes {0,1}",
                "@attribute no {0,1,2}",
            ],
            "expected {0,1}",
        ),
    ],
)
def test_bad_arff_input(tmp_path, train_rows, attributes, problem):
    toy_pair(tmp_path, train_rows=train_rows, test_rows=[[1, 2, 3, 0, 1]], attributes=attributes)
    with pytest.raises(DataFormatError) as info:
        load("arff", tmp_path, n_labels=2)
    assert info.value.split == "train" and problem in info.value.problem
    assert info.value.source.endswith("toy-train.arff")


def test_numeric_labels_outside_0_1_are_refused(tmp_path):
    numeric = [
        "@attribute f1 numeric",
        "@attribute f2 numeric",
        "@attribute f3 numeric",
        "@attribute yes numeric",
        "@attribute no numeric",
    ]
    toy_pair(tmp_path, test_rows=[[1, 2, 3, 0, 1], [1, 2, 3, 0.5, 1]], attributes=numeric)
    with pytest.raises(DataFormatError) as info:
        load("arff", tmp_path, n_labels=2)
    assert info.value.split == "test" and "label values must be 0/1 (row 2)" in info.value.problem


def test_train_and_test_attributes_must_agree(tmp_path):
    toy_pair(tmp_path)
    fewer = ["@attribute f1 numeric", "@attribute f2 numeric", "@attribute yes {0,1}", "@attribute no {0,1}"]
    write_arff(tmp_path / "toy-test.arff", [[1, 2, 0, 1]], fewer)
    with pytest.raises(DataFormatError, match="attributes differ"):
        load("arff", tmp_path, n_labels=2)


def test_bad_arff_options(tmp_path):
    toy_pair(tmp_path)
    with pytest.raises(ValueError, match="n_labels"):
        load("arff", tmp_path)
    with pytest.raises(DataFormatError, match="outside feature columns 1..3"):
        load("arff", tmp_path, n_labels=2, views={"a": [[1, 4]]})
    with pytest.raises(ValueError, match="valid_fraction"):
        load("arff", tmp_path, n_labels=2, valid_fraction=1.0)
    with pytest.raises(ValueError, match="split_seed"):
        load("arff", tmp_path, n_labels=2, split_seed="1")
    with pytest.raises(DataFormatError, match="cannot carve a validation share 0.01 from 10 rows"):
        load("arff", tmp_path, n_labels=2, valid_fraction=0.01)
    with pytest.raises(FileNotFoundError, match="exactly one"):
        load("arff", tmp_path.parent, n_labels=2)
