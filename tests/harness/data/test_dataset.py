"""The data fingerprint (``MultimodalDataset.digest``) and how a configuration's identity
(``Study.config_hash``) combines it with the loader options: any value a model could read, in any
split, changes it, and so does the same values in another order."""

import dataclasses

import numpy as np
import pytest

from harness import studies
from harness.data.dataset import SPLITS, MultimodalDataset, Split

SIZES = {"train": 6, "valid": 4, "test": 4}


def _split(n, rng):
    features = {"a": rng.normal(size=(n, 3, 2)).astype(np.float32), "b": rng.normal(size=(n, 2, 5)).astype(np.float32)}
    masks = {"a": np.ones((n, 3), bool), "b": np.ones((n, 2), bool)}
    masks["a"][:, -1] = rng.random(n) < 0.5  # some padding, so a mask can be flipped either way
    labels = (rng.random((n, 2)) < 0.5).astype(np.float32)
    labels[0] = (1, 0)  # each split holds two different samples (0 and 1), so reordering moves values
    labels[1] = (0, 1)
    return Split(features=features, masks=masks, labels=labels)


def _dataset(splits=None, **fields):
    rng = np.random.default_rng(0)
    splits = splits or {name: _split(n, rng) for name, n in SIZES.items()}
    return MultimodalDataset(name="toy", modalities=("a", "b"), label_names=("x", "y"), splits=splits, **fields)


def _copy(split: Split) -> Split:
    return Split(
        features={m: x.copy() for m, x in split.features.items()},
        masks={m: k.copy() for m, k in split.masks.items()},
        labels=split.labels.copy(),
    )


def _changed(base: MultimodalDataset, split_name: str, change) -> MultimodalDataset:
    split = _copy(base.splits[split_name])
    change(split)
    return dataclasses.replace(base, splits={**base.splits, split_name: split})


def test_the_same_values_give_the_same_digest():
    assert _dataset().digest == _dataset().digest
    assert len(_dataset().digest) == 32


def _flip_label(split):
    split.labels[2, 1] = 1 - split.labels[2, 1]


def _nudge_feature(split):
    split.features["b"][3, 1, 4] += 1e-3


def _flip_mask(split):
    split.masks["a"][1, 2] = ~split.masks["a"][1, 2]


def _reorder(split):
    order = np.array([1, 0, *range(2, split.n)])  # swap samples 0 and 1: the same values, another order
    for m in split.features:
        split.features[m][:] = split.features[m][order]
        split.masks[m][:] = split.masks[m][order]
    split.labels[:] = split.labels[order]


@pytest.mark.parametrize("split_name", SPLITS)
@pytest.mark.parametrize(
    "change", [_flip_label, _nudge_feature, _flip_mask, _reorder], ids=["label", "feature", "mask", "reorder"]
)
def test_one_changed_value_in_any_split_changes_the_digest(split_name, change):
    base = _dataset()
    changed = _changed(base, split_name, change)
    assert changed.digest != base.digest
    assert changed.content_digest() != base.digest  # not only the cached property


def test_the_digest_covers_names_layout_and_the_other_modality():
    base = _dataset()
    assert dataclasses.replace(base, label_names=("y", "x")).digest != base.digest
    assert dataclasses.replace(base, aligned=False).digest != base.digest
    swapped = dataclasses.replace(base, modalities=("b", "a"))  # the same arrays read in another order
    assert swapped.digest != base.digest
    moved = _changed(base, "train", lambda s: s.features["a"].__setitem__((0, 0, 0), s.features["a"][0, 0, 0] + 1))
    assert moved.digest != base.digest


def test_the_digest_reads_values_not_the_memory_layout():
    base = _dataset()
    fortran = {
        name: Split(
            features={m: np.asfortranarray(x) for m, x in s.features.items()},
            masks=s.masks,
            labels=np.asfortranarray(s.labels),
        )
        for name, s in base.splits.items()
    }
    assert _dataset(splits=fortran).digest == base.digest


def _study(options):
    return studies.from_dict(
        {"name": "fp", "variants": ["carat"], "seeds": [1], "epochs": 1, "dataset": "synthetic", **options}
    )


def test_the_configuration_hash_changes_with_the_loader_options_and_with_the_data_digest():
    tiny = _study({"dataset_options": {"size": "tiny", "seq_len": 8}})
    longer = _study({"dataset_options": {"size": "tiny", "seq_len": 12}})
    base, changed = _dataset().digest, _changed(_dataset(), "test", _flip_label).digest
    # The loader options enter the hash on their own, even where the loaded content were the same ...
    assert tiny.config_hash("synthetic", base) != longer.config_hash("synthetic", base)
    # ... and the content's digest on its own, under the same options.
    assert tiny.config_hash("synthetic", base) != tiny.config_hash("synthetic", changed)
    assert tiny.config_hash("synthetic", base) == _study(
        {"dataset_options": {"seq_len": 8, "size": "tiny"}}
    ).config_hash("synthetic", base)  # the same options in another order are the same configuration
