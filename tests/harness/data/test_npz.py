"""The harness's own .npz format: round trip, the documented example, and every bad input."""

import numpy as np
import pytest

from harness.data import DataFormatError, load, save_npz
from harness.data.npz import dataset_to_arrays

SIZES = {"train": 6, "valid": 3, "test": 4}


def arrays(seed=0):
    """Two modalities of different lengths (unaligned), one with masks, 3 labels."""
    rng = np.random.default_rng(seed)
    out = {"modalities": np.array(["face", "voice"]), "label_names": np.array(["joy", "anger", "fear"])}
    for split, n in SIZES.items():
        out[f"{split}/face"] = rng.normal(size=(n, 4, 5)).astype(np.float32)
        out[f"{split}/voice"] = rng.normal(size=(n, 7, 2))
        out[f"{split}/voice_mask"] = np.arange(7)[None, :] < rng.integers(1, 8, size=(n, 1))
        out[f"{split}/labels"] = rng.integers(0, 2, size=(n, 3))
    return out


def test_round_trip_of_arrays(tmp_path):
    original = arrays()
    path = save_npz(original, tmp_path / "mine")
    assert path.name == "mine.npz"
    ds = load("npz", path)
    assert ds.name == "mine" and ds.modalities == ("face", "voice") and ds.label_names == ("joy", "anger", "fear")
    assert not ds.aligned  # lengths differ
    assert ds.spec.modalities == {"face": (4, 5), "voice": (7, 2)}
    np.testing.assert_array_equal(ds.splits["valid"].masks["voice"], original["valid/voice_mask"])
    assert ds.splits["valid"].masks["face"].all()  # no mask given: every step is real
    np.testing.assert_allclose(ds.splits["test"].features["voice"], original["test/voice"], rtol=1e-6)
    assert ds.splits["train"].labels.dtype == np.float32
    assert load("npz", tmp_path).splits["test"].n == 4  # a folder holding one .npz


def test_round_trip_of_a_dataset(tmp_path):
    ds = load("synthetic", size="tiny", seq_len=6)
    back = load("npz", save_npz(ds, tmp_path / "syn.npz", compress=True))
    assert back.name == "synthetic" and back.aligned and back.spec == ds.spec
    for split in ds.splits:
        for m in ds.modalities:
            np.testing.assert_array_equal(back.splits[split].features[m], ds.splits[split].features[m])
            np.testing.assert_array_equal(back.splits[split].masks[m], ds.splits[split].masks[m])
    assert set(dataset_to_arrays(ds)) >= {"train/text", "train/text_mask", "train/labels", "modalities"}


def test_documented_conversion_example(tmp_path):
    """The example of notes/npz_format.md, verbatim apart from the random inputs."""
    rng = np.random.default_rng(0)
    sizes = {"train": 8, "valid": 2, "test": 3}
    my = {
        s: {
            "audio": rng.normal(size=(n, 20, 40)),
            "video": rng.normal(size=(n, 10, 16)),
            "y": rng.integers(0, 2, size=(n, 4)),
        }
        for s, n in sizes.items()
    }

    arrays = {"modalities": np.array(["audio", "video"]), "label_names": np.array(["a", "b", "c", "d"])}
    for split in ("train", "valid", "test"):
        arrays[f"{split}/audio"] = my[split]["audio"]  # (N, T, D) float
        arrays[f"{split}/video"] = my[split]["video"]
        arrays[f"{split}/labels"] = my[split]["y"]  # (N, C) of 0/1
    np.savez(tmp_path / "my_data.npz", **arrays)

    ds = load("npz", tmp_path / "my_data.npz")
    assert ds.summary()["splits"]["train"]["n"] == 8


def _without(key):
    return lambda a: a.pop(key)


def _replace(key, value):
    return lambda a: a.__setitem__(key, value)


BAD = {
    "missing test": (lambda a: [a.pop(k) for k in list(a) if k.startswith("test/")], "test", "missing split"),
    "missing train": (lambda a: [a.pop(k) for k in list(a) if k.startswith("train/")], "train", "train and test"),
    "missing modality": (_without("test/face"), "test", "missing key 'test/face'"),
    "missing labels": (_without("train/labels"), "train", "missing key 'train/labels'"),
    "missing names": (_without("label_names"), None, "missing key 'label_names'"),
    "mismatched counts": (_replace("train/face", np.zeros((5, 4, 5))), "train", "mismatched sample counts"),
    "wrong label width": (_replace("test/labels", np.zeros((4, 2))), "test", "expected (N, 3)"),
    "labels not 0/1": (_replace("valid/labels", np.full((3, 3), 2)), "valid", "only 0/1"),
    "wrong dimensions": (_replace("valid/face", np.zeros((3, 20))), "valid", "numeric (N, T, D)"),
    "other splits' D": (_replace("valid/face", np.zeros((3, 4, 6))), "valid", "other splits have"),
    "NaN": (_replace("test/voice", np.full((4, 7, 2), np.nan)), "test", "sample 0 contains NaN"),
    "mask shape": (_replace("train/voice_mask", np.ones((6, 6), bool)), "train", "expected (6, 7)"),
    "mask values": (_replace("train/voice_mask", np.full((6, 7), 3)), "train", "bool or 0/1"),
    "string features": (_replace("train/face", np.full((6, 4, 5), "x")), "train", "numeric (N, T, D)"),
    "unexpected key": (_replace("train/fcae", np.zeros((6, 4, 5))), None, "unexpected key(s) ['train/fcae']"),
    "names not strings": (_replace("modalities", np.array([1, 2])), None, "1-D str array"),
    "reserved name": (_replace("modalities", np.array(["labels", "voice"])), None, "not allowed"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_names_file_split_and_problem(tmp_path, case):
    change, split, problem = BAD[case]
    data = arrays()
    change(data)
    path = tmp_path / "bad.npz"
    np.savez(path, **data)
    with pytest.raises(DataFormatError) as info:
        load("npz", path)
    assert info.value.source == str(path) and info.value.split == split
    assert problem in info.value.problem
    # save_npz validates the same way before writing anything.
    with pytest.raises(DataFormatError):
        save_npz(data, tmp_path / "refused.npz")
    assert not (tmp_path / "refused.npz").exists()


def test_object_arrays_are_refused_without_unpickling(tmp_path):
    data = arrays()
    data["label_names"] = np.array(["joy", "anger", "fear"], dtype=object)
    np.savez(tmp_path / "obj.npz", **data)
    with pytest.raises(DataFormatError, match="object array"):
        load("npz", tmp_path / "obj.npz")


def test_not_an_npz(tmp_path):
    np.save(tmp_path / "single.npy", np.zeros(3))
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(DataFormatError, match="single array"):
        load("npz", tmp_path / "single.npy")
    with pytest.raises(DataFormatError, match="not a readable .npz"):
        load("npz", tmp_path / "text.npz")
    with pytest.raises(FileNotFoundError, match="exactly one"):
        load("npz", tmp_path / "..")


def test_max_len_pads_and_cutting_real_steps_needs_truncate(tmp_path):
    path = save_npz(arrays(), tmp_path / "d.npz")
    padded = load("npz", path, max_len={"face": 6})
    assert padded.spec.modalities["face"] == (6, 5) and not padded.splits["train"].masks["face"][:, 4:].any()
    with pytest.raises(DataFormatError, match="real steps beyond max_len=3"):
        load("npz", path, max_len=3)
    cut = load("npz", path, max_len=3, truncate=True)
    assert cut.spec.modalities == {"face": (3, 5), "voice": (3, 2)}
    with pytest.raises(ValueError, match="unknown modalities"):
        load("npz", path, max_len={"text": 3})


def train_test_only(n_train=60, seed=0):
    """A file without a valid split: row i of train is recognisable by face[i, 0, 0] == i."""
    data = {k: v for k, v in arrays(seed).items() if not k.startswith("valid/")}
    rng = np.random.default_rng(seed)
    data["train/face"] = rng.normal(size=(n_train, 4, 5)).astype(np.float32)
    data["train/face"][:, 0, 0] = np.arange(n_train)
    data["train/voice"] = rng.normal(size=(n_train, 7, 2))
    data["train/voice_mask"] = np.arange(7)[None, :] < rng.integers(1, 8, size=(n_train, 1))
    data["train/labels"] = (rng.random((n_train, 3)) < [0.5, 0.3, 0.15]).astype(int)
    return data


def rows_of(split):
    return split.features["face"][:, 0, 0].astype(int)


def test_a_file_without_valid_gets_a_carved_stratified_one(tmp_path):
    data = train_test_only()
    path = tmp_path / "tt.npz"
    np.savez(path, **data)
    ds = load("npz", path)
    train, valid = ds.splits["train"], ds.splits["valid"]
    assert (train.n, valid.n, ds.splits["test"].n) == (48, 12, SIZES["test"])
    assert ds.notes["valid_fraction"] == 0.2 and ds.notes["split_seed"] == 0 and "carved" in ds.notes["valid_split"]
    # No overlap; together exactly the file's train rows, each row's masks and labels kept with it.
    assert set(rows_of(train)).isdisjoint(rows_of(valid))
    assert sorted([*rows_of(train), *rows_of(valid)]) == list(range(60))
    for part in (train, valid):
        np.testing.assert_array_equal(part.labels, data["train/labels"][rows_of(part)])
        np.testing.assert_array_equal(part.masks["voice"], data["train/voice_mask"][rows_of(part)])
    # Deterministic per split_seed, different across seeds; the fraction is honoured.
    again, other = load("npz", path, split_seed=0), load("npz", path, split_seed=5)
    np.testing.assert_array_equal(rows_of(again.splits["valid"]), rows_of(valid))
    assert not np.array_equal(rows_of(other.splits["valid"]), rows_of(valid))
    assert load("npz", path, valid_fraction=0.5).splits["valid"].n == 30
    # save_npz accepts such a mapping too (validated the same way).
    assert save_npz(data, tmp_path / "again.npz").is_file()


def test_a_file_with_valid_keeps_it_and_refuses_valid_fraction(tmp_path):
    path = save_npz(arrays(), tmp_path / "own.npz")
    own = load("npz", path, split_seed=7)  # accepted (a runner passes it everywhere) but moves nothing
    np.testing.assert_array_equal(own.splits["valid"].labels, arrays()["valid/labels"])
    assert own.splits["train"].n == SIZES["train"] and "from the file" in own.notes["valid_split"]
    with pytest.raises(DataFormatError) as info:
        load("npz", path, valid_fraction=0.2)
    assert info.value.source == str(path) and info.value.split == "valid"
    assert "has its own 'valid' split" in info.value.problem


def test_npz_carve_options_are_checked(tmp_path):
    path = tmp_path / "tt.npz"
    np.savez(path, **train_test_only())
    with pytest.raises(ValueError, match="valid_fraction must be in"):
        load("npz", path, valid_fraction=1.5)
    with pytest.raises(ValueError, match="split_seed must be a non-negative int"):
        load("npz", path, split_seed=-1)
    with pytest.raises(ValueError, match="split_seed must be a non-negative int"):
        load("npz", path, split_seed=1.5)
