"""The harness's own bring-your-own format: ONE ``.npz`` file holding every split.

Keys (``<split>`` is train and test, and valid when the file has its own validation split;
``<m>`` each modality name):

* ``modalities``: 1-D str array of modality names, in model input order
* ``label_names``: 1-D str array, one name per label column
* ``<split>/<m>``: float (N, T_m, D_m) features
* ``<split>/<m>_mask``: optional bool or 0/1 (N, T_m), True = real step; absent = every step real
* ``<split>/labels``: 0/1 (N, C)
* ``name`` (str) and ``aligned`` (bool): optional scalars; by default the file name and
  "all modalities have the same length"

Splits: train and test are required. A file with a valid split keeps it as it is. A file
without one gets ``valid_fraction`` (default 0.2) of its train split carved off as
validation, stratified over the labels and seeded by ``split_seed`` (see ``carve.py``);
passing ``valid_fraction`` for a file that has its own valid split is an error naming the
file, since it could not be honoured. ``split_seed`` is accepted either way (a study
runner passes each run's seed to every loader that lists it) and recorded in
``dataset.notes`` together with where the validation split came from.

The file is read with ``allow_pickle=False``: it can hold numbers and strings only, so it
cannot run code. Any other key is refused (a misspelt key would otherwise be ignored).
The README's npz section shows a conversion example.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from harness.data.carve import DEFAULT_SPLIT_SEED, DEFAULT_VALID_FRACTION, carve_validation, check_options
from harness.data.dataset import SPLITS, DataFormatError, MultimodalDataset, Split

_OPTIONAL_SCALARS = ("name", "aligned")
_RESERVED = ("labels",)


def load_npz(
    data_path=None,
    max_len=None,
    truncate: bool = False,
    valid_fraction: float | None = None,
    split_seed: int = DEFAULT_SPLIT_SEED,
) -> MultimodalDataset:
    """The harness's own format: one .npz holding every split (a file, or a folder with exactly one).

    ``max_len`` (one int, or a dict per modality) pads shorter sequences and cuts longer
    ones; cutting real (unmasked) steps is refused unless ``truncate=True``. Without a
    valid split in the file, ``valid_fraction`` (None = 0.2) of train is carved off as
    validation, stratified, seeded by ``split_seed``.
    """
    path = _resolve(data_path)
    return dataset_from_arrays(
        _read_arrays(path),
        source=str(path),
        max_len=max_len,
        truncate=truncate,
        valid_fraction=valid_fraction,
        split_seed=split_seed,
    )


def save_npz(data, path, compress: bool = False) -> Path:
    """Write a :class:`MultimodalDataset`, or a mapping of arrays in the key layout above, to ``path``.

    A mapping is validated exactly as :func:`load_npz` would before anything is written.
    Returns the path written (numpy appends ``.npz`` when missing).
    """
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    if isinstance(data, MultimodalDataset):
        arrays = dataset_to_arrays(data)
    elif isinstance(data, Mapping):
        arrays = {key: np.asarray(value) for key, value in data.items()}
        dataset_from_arrays(arrays, source=str(path))
    else:
        raise TypeError(f"save_npz takes a MultimodalDataset or a mapping of arrays, got {type(data).__name__}")
    (np.savez_compressed if compress else np.savez)(path, **arrays)
    return path


def dataset_to_arrays(dataset: MultimodalDataset) -> dict[str, np.ndarray]:
    """The key layout above, for one in-memory data set."""
    arrays = {
        "modalities": np.array(dataset.modalities, dtype=str),
        "label_names": np.array(dataset.label_names, dtype=str),
        "name": np.array(dataset.name),
        "aligned": np.array(dataset.aligned),
    }
    for split_name, split in dataset.splits.items():
        arrays[f"{split_name}/labels"] = split.labels
        for m in dataset.modalities:
            arrays[f"{split_name}/{m}"] = split.features[m]
            arrays[f"{split_name}/{m}_mask"] = split.masks[m]
    return arrays


def dataset_from_arrays(
    arrays: Mapping[str, np.ndarray],
    source: str = "<arrays>",
    max_len=None,
    truncate=False,
    valid_fraction: float | None = None,
    split_seed: int = DEFAULT_SPLIT_SEED,
):
    """Validate the key layout and build the data set; every problem names the key and split.

    Without a valid split the validation split is carved from train (see the module docstring).
    """
    modalities = _names(arrays, "modalities", source)
    label_names = _names(arrays, "label_names", source)
    for m in modalities:
        if "/" in m or m.endswith("_mask") or m in _RESERVED:
            problem = f"modality name {m!r} is not allowed (no '/', no '_mask' suffix, not 'labels')"
            raise DataFormatError(source, None, problem)
    _refuse_unexpected_keys(arrays, modalities, source)
    lengths = _target_lengths(max_len, modalities)
    has_valid = _has_split(arrays, "valid")
    fraction = DEFAULT_VALID_FRACTION if valid_fraction is None else valid_fraction
    fraction, split_seed = check_options(fraction, split_seed)
    if has_valid and valid_fraction is not None:
        problem = (
            f"the file has its own 'valid' split, so valid_fraction={valid_fraction!r} cannot apply "
            "(a validation split is carved only from files with train and test alone)"
        )
        raise DataFormatError(source, "valid", problem)
    read = [s for s in SPLITS if s != "valid" or has_valid]
    splits = {s: _read_split(arrays, s, modalities, len(label_names), lengths, truncate, source) for s in read}
    if has_valid:
        notes = {"valid_split": "from the file (split_seed has no effect)"}
    else:
        carve = carve_validation(splits["train"].labels, fraction, split_seed, source)
        whole_train = splits["train"]
        splits = {
            "train": whole_train.subset(carve.train),
            "valid": whole_train.subset(carve.valid),
            "test": splits["test"],
        }
        notes = carve.notes()
    if "aligned" in arrays:
        aligned = bool(_scalar(arrays, "aligned", source))
    else:
        aligned = len({splits["train"].features[m].shape[1] for m in modalities}) == 1
    name = str(_scalar(arrays, "name", source)) if "name" in arrays else Path(source).stem
    return MultimodalDataset(
        name=name,
        modalities=modalities,
        label_names=label_names,
        splits=splits,
        aligned=aligned,
        source=source,
        notes=notes,
    )


def _resolve(data_path) -> Path:
    if data_path is None:
        raise FileNotFoundError("the npz loader needs a data path: a .npz file, or a folder holding exactly one")
    path = Path(data_path).expanduser()
    if path.is_dir():
        found = sorted(path.glob("*.npz"))
        if len(found) != 1:
            raise FileNotFoundError(f"{path}: expected exactly one .npz file, found {[p.name for p in found]}")
        path = found[0]
    if not path.is_file():
        raise FileNotFoundError(f"no such file {path}")
    return path


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DataFormatError(path, None, f"not a readable .npz file ({error})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataFormatError(path, None, "holds a single array (.npy), not an .npz archive of named arrays")
    arrays = {}
    with archive:
        for key in archive.files:
            try:
                arrays[key] = archive[key]
            except ValueError:  # numpy's refusal of pickled objects under allow_pickle=False
                raise DataFormatError(
                    path,
                    key.split("/")[0] if "/" in key else None,
                    f"key {key!r} is an object array (pickled Python objects); store numbers, bools or str arrays",
                ) from None
    return arrays


def _names(arrays, key: str, source) -> tuple[str, ...]:
    if key not in arrays:
        raise DataFormatError(source, None, f"missing key {key!r} (a 1-D str array)")
    value = np.asarray(arrays[key])
    if value.ndim != 1 or value.size == 0 or value.dtype.kind not in "US":
        problem = f"key {key!r} must be a non-empty 1-D str array, got {value.dtype} {value.shape}"
        raise DataFormatError(source, None, problem)
    names = tuple(v.decode() if isinstance(v, bytes) else str(v) for v in value.tolist())
    if len(set(names)) != len(names):
        raise DataFormatError(source, None, f"key {key!r} repeats names: {list(names)}")
    return names


def _scalar(arrays, key: str, source):
    value = np.asarray(arrays[key])
    if value.ndim != 0:
        raise DataFormatError(source, None, f"key {key!r} must be a scalar, got shape {value.shape}")
    return value.item()


def _refuse_unexpected_keys(arrays, modalities, source) -> None:
    expected = {"modalities", "label_names", *_OPTIONAL_SCALARS}
    for split in SPLITS:
        expected.add(f"{split}/labels")
        expected.update(f"{split}/{m}{suffix}" for m in modalities for suffix in ("", "_mask"))
    unexpected = sorted(set(arrays) - expected)
    if unexpected:
        raise DataFormatError(source, None, f"unexpected key(s) {unexpected}; valid keys: {sorted(expected)}")


def _has_split(arrays, split: str) -> bool:
    return any(key.startswith(f"{split}/") for key in arrays)


def _read_split(arrays, split, modalities, n_labels, lengths, truncate, source) -> Split:
    if not _has_split(arrays, split):
        need = "train and test are required; valid is optional" if split != "valid" else "valid"
        raise DataFormatError(source, split, f"missing split {split!r} (no key starting with '{split}/'; {need})")
    labels = _labels(arrays, split, n_labels, source)
    features, masks = {}, {}
    for m in modalities:
        x = _features(arrays, f"{split}/{m}", split, source)
        if x.shape[0] != labels.shape[0]:
            counts = f"{split}/{m} has {x.shape[0]}, {split}/labels has {labels.shape[0]}"
            raise DataFormatError(source, split, f"mismatched sample counts: {counts}")
        mask = _mask(arrays, f"{split}/{m}_mask", x.shape[:2], split, source)
        features[m], masks[m] = _fit_length(x, mask, lengths.get(m), truncate, f"{split}/{m}", split, source)
    return Split(features=features, masks=masks, labels=labels)


def _labels(arrays, split, n_labels, source) -> np.ndarray:
    key = f"{split}/labels"
    if key not in arrays:
        raise DataFormatError(source, split, f"missing key {key!r}")
    y = np.asarray(arrays[key])
    if y.ndim != 2 or y.shape[1] != n_labels:
        problem = f"{key!r} has shape {y.shape}, expected (N, {n_labels}) for {n_labels} label names"
        raise DataFormatError(source, split, problem)
    if y.dtype.kind not in "biuf" or not np.isin(y, (0, 1)).all():
        raise DataFormatError(source, split, f"{key!r} must hold only 0/1")
    return y.astype(np.float32)


def _features(arrays, key, split, source) -> np.ndarray:
    if key not in arrays:
        raise DataFormatError(source, split, f"missing key {key!r}")
    x = np.asarray(arrays[key])
    if x.ndim != 3 or x.dtype.kind not in "iuf":
        raise DataFormatError(source, split, f"{key!r} must be a numeric (N, T, D) array, got {x.dtype} {x.shape}")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        sample = int(np.argwhere(~np.isfinite(x))[0, 0])
        raise DataFormatError(source, split, f"{key!r} sample {sample} contains NaN or infinite values")
    return x


def _mask(arrays, key, shape, split, source) -> np.ndarray:
    if key not in arrays:
        return np.ones(shape, dtype=bool)
    mask = np.asarray(arrays[key])
    if mask.shape != shape:
        raise DataFormatError(source, split, f"{key!r} has shape {mask.shape}, expected {shape}")
    if mask.dtype != bool and (mask.dtype.kind not in "iuf" or not np.isin(mask, (0, 1)).all()):
        raise DataFormatError(source, split, f"{key!r} must be bool or 0/1")
    return mask.astype(bool)


def _fit_length(x, mask, length, truncate, key, split, source):
    """Pad to or cut at the configured length; cutting real steps needs ``truncate``."""
    if length is None or length == x.shape[1]:
        return x, mask
    if length > x.shape[1]:
        pad = length - x.shape[1]
        return np.pad(x, ((0, 0), (0, pad), (0, 0))), np.pad(mask, ((0, 0), (0, pad)))
    cut_real = mask[:, length:].any(axis=1)
    if cut_real.any() and not truncate:
        raise DataFormatError(
            source,
            split,
            f"{key!r} sample {int(np.argmax(cut_real))} has real steps beyond max_len={length} "
            "(pass truncate=True to cut)",
        )
    return np.ascontiguousarray(x[:, :length]), np.ascontiguousarray(mask[:, :length])


def _target_lengths(max_len, modalities) -> dict[str, int]:
    if max_len is None:
        return {}
    lengths = dict(max_len) if isinstance(max_len, Mapping) else dict.fromkeys(modalities, max_len)
    unknown = sorted(set(lengths) - set(modalities))
    if unknown:
        raise ValueError(f"max_len names unknown modalities {unknown}; valid: {list(modalities)}")
    for m, value in lengths.items():
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"max_len for {m!r} must be a positive int, got {value!r}")
    return lengths
