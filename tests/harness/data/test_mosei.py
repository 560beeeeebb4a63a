"""The MOSEI / M3ED loaders on small files written in the exact public layouts."""

import argparse
import os
import pickle

import numpy as np
import pytest
import torch

from harness.data import DataFormatError, load
from harness.data.mosei import M3ED_LABELS, MOSEI_LABELS, MissingDataFile
from harness.data.safe_load import load_pickle_file, load_torch_file

SIZES = {"train": 5, "valid": 3, "test": 4}
ALIGNED_DIMS = {"src-text": 300, "src-visual": 35, "src-audio": 74}
M3ED_DIMS = {"src-text": 768, "src-visual": 1024, "src-audio": 342}


def sequences(rng, n, length, dim, real_lengths):
    """n arrays (length, dim): zero rows at the front (padding, as in MOSEI), then real steps."""
    out = []
    for i in range(n):
        x = np.zeros((length, dim), dtype=np.float32)
        x[length - real_lengths[i] :] = rng.normal(size=(real_lengths[i], dim)) + 0.1
        out.append(x)
    return out


def aligned_layout(dims=ALIGNED_DIMS, n_labels=6, seed=0):
    rng = np.random.default_rng(seed)
    data = {"dict": {"tgt": {"<s>": 2, "</s>": 3}}, "settings": argparse.Namespace(max_len=60, path="/x")}
    for split, n in SIZES.items():
        real = rng.integers(5, 61, size=n)
        entry = {key: sequences(rng, n, 60, dim, real) for key, dim in dims.items()}
        entry["tgt"] = [[2, *sorted(rng.choice(n_labels, size=i % 3, replace=False) + 4), 3] for i in range(n)]
        data[split] = entry
    return data


def expected_labels(tgt, n_labels):
    y = np.zeros((len(tgt), n_labels), dtype=np.float32)
    for i, ids in enumerate(tgt):
        y[i, [k - 4 for k in ids[1:-1]]] = 1
    return y


@pytest.fixture
def aligned_file(tmp_path):
    data = aligned_layout()
    path = tmp_path / "train_valid_test.pt"
    torch.save(data, path)
    return path, data


def test_aligned_mosei_is_read_exactly(aligned_file):
    path, data = aligned_file
    for data_path in (path.parent, path):  # a folder with the public file name, or the file itself
        ds = load("mosei_aligned", data_path)
        assert ds.modalities == ("text", "visual", "audio") and ds.label_names == MOSEI_LABELS and ds.aligned
        assert ds.spec.modalities == {"text": (60, 300), "visual": (60, 35), "audio": (60, 74)}
        for split, n in SIZES.items():
            got = ds.splits[split]
            assert got.n == n
            np.testing.assert_array_equal(got.labels, expected_labels(data[split]["tgt"], 6))
            np.testing.assert_array_equal(got.features["visual"], np.stack(data[split]["src-visual"]))
            # As the reference's loader: every step is real, the zero padding rows included.
            assert all(got.masks[m].all() for m in ds.modalities)
    assert ds.notes["masks"] == "all steps real (reference)"


@pytest.mark.parametrize(
    "name, file_name, dims",
    [("mosei_aligned", "train_valid_test.pt", ALIGNED_DIMS), ("m3ed", "m3ed_data.pt", M3ED_DIMS)],
)
def test_mask_padding_derives_masks_from_all_zero_rows(tmp_path, name, file_name, dims):
    data = aligned_layout(dims, n_labels=6 if name == "mosei_aligned" else 7)
    data["train"]["src-visual"][0][-1] = 0.0  # an all-zero row after real steps: padding too, wherever it is
    torch.save(data, tmp_path / file_name)
    ds = load(name, tmp_path, mask_padding=True)
    assert ds.notes["masks"] == "all-zero rows are padding"
    for split in SIZES:
        for key, m in zip(dims, ds.modalities):
            np.testing.assert_array_equal(ds.splits[split].masks[m], np.stack(data[split][key]).any(axis=2))
    assert not ds.splits["train"].masks["visual"][0, -1] and ds.splits["train"].masks["visual"][0, -2]
    assert not ds.splits["train"].masks["audio"].all()
    with pytest.raises(ValueError, match="mask_padding must be True or False"):
        load(name, tmp_path, mask_padding="yes")


def test_stacked_arrays_and_object_array_tgt_are_accepted(tmp_path):
    data = aligned_layout()
    for split in SIZES:
        for key in ALIGNED_DIMS:
            data[split][key] = np.stack(data[split][key]).astype(np.float64)
        data[split]["tgt"] = np.array(data[split]["tgt"] + [[2, 3]], dtype=object)[:-1]
    torch.save(data, tmp_path / "train_valid_test.pt")
    ds = load("mosei_aligned", tmp_path)
    assert ds.splits["train"].features["text"].dtype == np.float32


@pytest.mark.parametrize(
    "name, file_name, dims",
    [("mosei_aligned", "train_valid_test.pt", ALIGNED_DIMS), ("m3ed", "m3ed_data.pt", M3ED_DIMS)],
)
def test_negative_infinity_in_audio_becomes_zero_and_is_counted(tmp_path, name, file_name, dims):
    """MOSEI and M3ED alike: the reference zeroes -inf audio for both."""
    data = aligned_layout(dims, n_labels=6 if name == "mosei_aligned" else 7)
    data["train"]["src-audio"][1][-1, :3] = -np.inf
    data["test"]["src-audio"][0][5, 7] = -np.inf
    torch.save(data, tmp_path / file_name)
    ds = load(name, tmp_path)
    assert ds.splits["train"].features["audio"][1, -1, :3].tolist() == [0.0, 0.0, 0.0]
    assert ds.splits["test"].features["audio"][0, 5, 7] == 0.0
    assert ds.notes["neg_inf_set_to_zero"] == 4
    # Only -inf, only in audio: +inf in audio, or -inf in another modality, is still refused.
    data["train"]["src-audio"][1][-1, 3] = np.inf
    torch.save(data, tmp_path / file_name)
    with pytest.raises(DataFormatError, match="'src-audio' sample 1 contains infinite values"):
        load(name, tmp_path)


def test_files_written_with_numpy_1_names_load(tmp_path):
    """The public files predate numpy 2: their pickles name numpy.core.multiarray."""
    data = aligned_layout()
    legacy = tmp_path / "legacy.pt"
    torch.save(data, legacy, _use_new_zipfile_serialization=False)
    raw = legacy.read_bytes()
    assert b"numpy._core.multiarray" in raw
    old = tmp_path / "train_valid_test.pt"
    old.write_bytes(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    assert load("mosei_aligned", old).splits["test"].n == SIZES["test"]


def test_m3ed_layout(tmp_path):
    data = aligned_layout(M3ED_DIMS, n_labels=7)
    data["train"]["tgt"][0] = [2, 4, 10, 3]  # Happy and Surprise, the last id
    data["train"]["len_list"] = [70] * SIZES["train"]  # the converter's extra key is ignored
    torch.save(data, tmp_path / "m3ed_data.pt")
    ds = load("m3ed", tmp_path)
    assert ds.label_names == M3ED_LABELS
    assert ds.spec.modalities == {"text": (60, 768), "visual": (60, 1024), "audio": (60, 342)}
    assert ds.splits["train"].labels[0].tolist() == [1, 0, 0, 0, 0, 0, 1]
    assert all(ds.splits[s].masks[m].all() for s in SIZES for m in ds.modalities)  # the reference's masks
    np.testing.assert_array_equal(ds.splits["valid"].features["audio"], np.stack(data["valid"]["src-audio"]))


def unaligned_files(folder, sizes=SIZES):
    rng = np.random.default_rng(1)
    features, labels = {}, {}
    for split, n in sizes.items():
        features[split] = {
            "text": rng.normal(size=(n, 50, 300)).astype(np.float32),
            "vision": rng.normal(size=(n, 500, 35)).astype(np.float32),
            "audio": rng.normal(size=(n, 500, 74)).astype(np.float32),
            "labels": rng.normal(size=(n, 1, 1)).astype(np.float32),
            "id": np.array([[f"video{i}", "0", "1"] for i in range(n)]),
        }
        features[split]["text"][:, :10] = 0.0  # left padding
        features[split]["audio"][0, 7, 7] = -np.inf
        labels[split] = {"tgt": [[2, 4 + i % 6, 3] for i in range(n)]}
    with open(folder / "mosei_senti_data_noalign.pkl", "wb") as handle:
        pickle.dump(features, handle)
    torch.save(labels, folder / "train_valid_test.pt")
    return features, labels


def test_unaligned_mosei_takes_features_and_labels_from_two_files(tmp_path):
    features, labels = unaligned_files(tmp_path)
    ds = load("mosei_unaligned", tmp_path)
    assert not ds.aligned
    assert ds.spec.modalities == {"text": (50, 300), "visual": (500, 35), "audio": (500, 74)}
    np.testing.assert_array_equal(ds.splits["valid"].features["visual"], features["valid"]["vision"])
    np.testing.assert_array_equal(ds.splits["test"].labels, expected_labels(labels["test"]["tgt"], 6))
    assert all(ds.splits[s].masks[m].all() for s in SIZES for m in ds.modalities)  # the reference's masks
    assert ds.notes["neg_inf_set_to_zero"] == 3  # one per split
    masked = load("mosei_unaligned", tmp_path, mask_padding=True).splits["train"].masks["text"]
    assert not masked[:, :10].any() and masked[:, 10:].all()
    # The .pkl path plus an explicit labels path works too.
    other = tmp_path / "labels"
    other.mkdir()
    (tmp_path / "train_valid_test.pt").rename(other / "train_valid_test.pt")
    ds2 = load("mosei_unaligned", tmp_path / "mosei_senti_data_noalign.pkl", labels_path=other)
    np.testing.assert_array_equal(ds2.splits["train"].labels, ds.splits["train"].labels)


def test_unaligned_split_sizes_must_agree(tmp_path):
    unaligned_files(tmp_path)
    one_more_in_valid = {s: {"tgt": [[2, 4, 3]] * (n + (s == "valid"))} for s, n in SIZES.items()}
    torch.save(one_more_in_valid, tmp_path / "train_valid_test.pt")
    with pytest.raises(DataFormatError) as info:
        load("mosei_unaligned", tmp_path)
    assert info.value.split == "valid"
    assert "has 3 samples but the labels file" in info.value.problem and "4 in this split" in info.value.problem


def _mutate(data, change):
    change(data)
    return data


def _set(path, value):
    def change(data):
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


BAD_ALIGNED = {
    "missing split": (lambda d: d.pop("valid"), "valid", "missing split"),
    "missing modality": (lambda d: d["train"].pop("src-audio"), "train", "missing key 'src-audio'"),
    "mismatched counts": (lambda d: d["test"]["src-visual"].pop(), "test", "mismatched sample counts"),
    "tgt count": (lambda d: d["train"]["tgt"].pop(), "train", "mismatched sample counts"),
    "wrong dimension": (_set(("valid", "src-visual", 1), np.zeros((60, 36))), "valid", "expected (T <= 60, 35)"),
    "not 2-d": (_set(("valid", "src-text", 0), np.zeros(300)), "valid", "has shape (300,)"),
    "NaN": (_set(("train", "src-text", 2), np.full((60, 300), np.nan)), "train", "sample 2 contains NaN"),
    "inf outside audio": (_set(("test", "src-visual", 0), np.full((60, 35), -np.inf)), "test", "infinite"),
    "unknown label id": (_set(("train", "tgt", 1), [2, 10, 3]), "train", "outside the known emotion ids 4..9"),
    "blank id": (_set(("train", "tgt", 1), [2, 0, 3]), "train", "outside the known emotion ids"),
    "no start token": (_set(("test", "tgt", 0), [4, 5]), "test", "expected [2, emotion ids..., 3]"),
    "float label ids": (_set(("test", "tgt", 0), [2, 4.0, 3]), "test", "expected a list of ints"),
    "split of wrong type": (_set(("valid",), [1, 2, 3]), "valid", "split must be a dict"),
    "sample of wrong type": (_set(("train", "src-text", 0), "hello"), "train", "unexpected type"),
    "modality of wrong type": (_set(("train", "src-text"), 3.0), "train", "must be a list or array"),
    "over-long sequence": (_set(("train", "src-audio", 4), np.ones((61, 74))), "train", "61 steps, more than the"),
}


@pytest.mark.parametrize("case", list(BAD_ALIGNED))
def test_bad_aligned_input_names_file_split_and_problem(tmp_path, case):
    change, split, problem = BAD_ALIGNED[case]
    path = tmp_path / "train_valid_test.pt"
    torch.save(_mutate(aligned_layout(), change), path)
    with pytest.raises(DataFormatError) as info:
        load("mosei_aligned", path)
    assert info.value.source == str(path)
    assert info.value.split == split
    assert problem in info.value.problem
    assert str(path) in str(info.value)


def test_unexpected_top_level_object(tmp_path):
    torch.save([1, 2, 3], tmp_path / "train_valid_test.pt")
    with pytest.raises(DataFormatError, match="expected a dict with splits"):
        load("mosei_aligned", tmp_path)


def test_long_sequences_need_truncate_or_max_len(tmp_path):
    data = aligned_layout()
    data["train"]["src-text"][0] = np.arange(62 * 300, dtype=np.float32).reshape(62, 300) + 1
    torch.save(data, tmp_path / "train_valid_test.pt")
    with pytest.raises(DataFormatError, match="truncate=True"):
        load("mosei_aligned", tmp_path)
    cut = load("mosei_aligned", tmp_path, truncate=True)
    np.testing.assert_array_equal(cut.splits["train"].features["text"][0], data["train"]["src-text"][0][:60])
    assert cut.notes["truncated_samples"] == 1
    longer = load("mosei_aligned", tmp_path, max_len=62)
    assert longer.spec.modalities["visual"] == (62, 35)
    assert not longer.splits["train"].features["visual"][:, 60:].any()  # padded at the end, with zeros
    assert longer.splits["train"].masks["visual"].all()  # real by default, like all padding
    masked = load("mosei_aligned", tmp_path, max_len=62, mask_padding=True)
    assert not masked.splits["train"].masks["visual"][:, 60:].any()


def test_missing_file_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_valid_test.pt"):
        load("mosei_aligned", tmp_path)


def test_without_a_data_path_the_files_are_looked_for_in_carat_data_then_data(tmp_path, monkeypatch):
    monkeypatch.delenv("CARAT_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MissingDataFile) as missing:
        load("m3ed")
    message = str(missing.value)
    assert "\n" not in message and message.startswith(
        f"m3ed: no file m3ed_data.pt at {tmp_path / 'data' / 'm3ed_data.pt'}"
    )
    assert "data/ under the current folder (CARAT_DATA unset)" in message
    (tmp_path / "data").mkdir()
    torch.save(aligned_layout(M3ED_DIMS, n_labels=7), tmp_path / "data" / "m3ed_data.pt")
    assert load("m3ed").splits["train"].n == SIZES["train"]  # found under data/
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv("CARAT_DATA", str(elsewhere))
    with pytest.raises(MissingDataFile, match=f"looked in CARAT_DATA={elsewhere}"):
        load("m3ed")
    unaligned_files(elsewhere)
    (elsewhere / "train_valid_test.pt").unlink()  # the labels of the unaligned features are missing
    with pytest.raises(MissingDataFile) as missing:
        load("mosei_unaligned")
    assert missing.value.file_name == "train_valid_test.pt" and missing.value.loader == "mosei_unaligned (its labels)"


def test_size_tiny_keeps_the_first_samples_of_the_same_files(tmp_path, monkeypatch):
    monkeypatch.setattr("harness.data.mosei.TINY_SAMPLES", {"train": 3, "valid": 2, "test": 2})
    data = aligned_layout()
    torch.save(data, tmp_path / "train_valid_test.pt")
    tiny = load("mosei_aligned", tmp_path, size="tiny")
    full = load("mosei_aligned", tmp_path)
    assert {s: tiny.splits[s].n for s in SIZES} == {"train": 3, "valid": 2, "test": 2}
    for split in SIZES:
        n = tiny.splits[split].n
        np.testing.assert_array_equal(tiny.splits[split].labels, full.splits[split].labels[:n])
        np.testing.assert_array_equal(tiny.splits[split].features["text"], full.splits[split].features["text"][:n])
    assert "tiny" in tiny.notes["size"] and "size" not in full.notes
    features, _ = unaligned_files(tmp_path)  # rewrites the aligned file with the unaligned labels
    unaligned = load("mosei_unaligned", tmp_path, size="tiny")
    assert unaligned.splits["test"].n == 2
    np.testing.assert_array_equal(unaligned.splits["train"].features["visual"], features["train"]["vision"][:3])
    data["valid"]["src-audio"] = data["valid"]["src-audio"][:-1]  # one sample short: refused even when tiny
    torch.save(data, tmp_path / "train_valid_test.pt")
    with pytest.raises(DataFormatError, match="mismatched sample counts"):
        load("mosei_aligned", tmp_path, size="tiny")
    with pytest.raises(ValueError, match="size must be one of"):
        load("m3ed", tmp_path, size="small")


class _Hostile:
    """Unpickling this calls ``function(*args)``: the classic pickle code-execution payload."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


@pytest.mark.parametrize("payload", ["os.system", "builtins.open"])
@pytest.mark.parametrize("kind", ["pkl", "pt", "pickle named .pt"])
def test_hostile_pickles_are_refused_without_running_code(tmp_path, payload, kind):
    marker = tmp_path / "pwned"
    hostile = _Hostile(os.system, f"touch {marker}") if payload == "os.system" else _Hostile(open, str(marker), "w")
    data = {"train": {"text": np.zeros((1, 2, 3)), "evil": hostile}}
    path = tmp_path / ("data.pkl" if kind == "pkl" else "data.pt")
    if kind == "pt":
        torch.save(data, path)
    else:
        path.write_bytes(pickle.dumps(data))
    reader = load_pickle_file if kind == "pkl" else load_torch_file
    with pytest.raises(DataFormatError) as info:
        reader(path)
    assert not marker.exists(), "the payload ran"
    assert info.value.source == str(path)
    # The file really was hostile: an unrestricted load runs the payload.
    if kind == "pt":
        torch.load(path, weights_only=False)
    else:
        with open(path, "rb") as handle:
            pickle.load(handle)
    assert marker.exists()


def test_restricted_unpickler_still_reads_numpy_and_containers(tmp_path):
    value = {
        "a": [np.arange(3, dtype=np.int64), (1, 2.5), {3, 4}, frozenset({5})],
        "b": np.array(["x", "yz"]),
        "c": np.float32(1.5),
        "d": np.array([[2, 4, 3], [2, 3]], dtype=object),
    }
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        path = tmp_path / f"p{protocol}.pkl"
        path.write_bytes(pickle.dumps(value, protocol=protocol))
        got = load_pickle_file(path)
        assert got["a"][1:] == value["a"][1:] and got["c"] == value["c"]
        np.testing.assert_array_equal(got["a"][0], value["a"][0])
        assert got["b"].tolist() == ["x", "yz"] and got["d"][1] == [2, 3]


def test_damaged_files_are_data_format_errors(tmp_path):
    path = tmp_path / "train_valid_test.pt"
    path.write_bytes(b"this is not a pickle")
    with pytest.raises(DataFormatError, match="not a readable pickle"):
        load("mosei_aligned", path)
