"""Loaders of the public CMU-MOSEI (aligned, unaligned) and M3ED feature files.

Layouts (DATA_FORMATS.md):

* aligned MOSEI ``train_valid_test.pt`` and M3ED ``m3ed_data.pt``: a ``torch.save``d dict of
  splits, each with ``src-text`` / ``src-visual`` / ``src-audio`` (N arrays of T x D, as a
  list or a stacked array) and ``tgt`` (per sample ``[2, emotion ids..., 3]``);
* unaligned MOSEI ``mosei_senti_data_noalign.pkl``: a pickled dict of splits with arrays
  ``text`` / ``vision`` / ``audio`` of shape (N, T, D); its emotion labels are the ``tgt``
  of the aligned ``.pt`` file (same sample order).

Conventions:

* ``-inf`` in the audio of MOSEI (aligned and unaligned) and of M3ED (log-energy of silent
  frames) becomes 0, as the reference loaders do for both data sets; the count is kept in
  ``dataset.notes["neg_inf_set_to_zero"]``. ``-inf`` elsewhere, ``+inf`` and NaN are refused.
* Masks: by default every step is real (mask all True), padding included, because that is
  what the reference's loaders give CARAT for these three files -- the zero padding rows
  are attended to like real steps, and reproducing the paper needs exactly that.
  ``mask_padding=True`` instead marks a step whose feature row is all zero as padding
  (mask False), wherever it is; ``dataset.notes["masks"]`` says which rule was used.
* Shorter sequences are zero-padded at the end (those steps follow the same mask rule).

Where the files are: ``data_path`` (a study's ``data_path``, ``--data-path``), else the folder
named by the environment variable ``CARAT_DATA``, else ``data/`` under the current folder. A
missing file raises ``MissingDataFile`` (a ``FileNotFoundError``): one line naming the file, the
loader and the folder it was looked for in.

``size="tiny"`` (what ``--quick`` asks of every loader with a ``size`` option) keeps the first
``TINY_SAMPLES`` samples of each split of the same files, so a smoke test reads the real data.

Keys other than the ones above (``dict``, ``settings``, ``len_list``, ``labels``, ``id``) are ignored.
A sequence longer than the configured length is an error unless ``truncate=True``, which
keeps the first ``max_len`` steps and counts the truncated samples in ``dataset.notes``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from harness.data.dataset import SPLITS, DataFormatError, MultimodalDataset, Split
from harness.data.safe_load import load_pickle_file, load_torch_file

MOSEI_LABELS = ("happy", "sad", "anger", "surprise", "disgust", "fear")
M3ED_LABELS = ("Happy", "Neutral", "Sad", "Disgust", "Anger", "Fear", "Surprise")
START_TOKEN, END_TOKEN, FIRST_EMOTION_ID = 2, 3, 4


@dataclass(frozen=True)
class SequenceLayout:
    """Where one file kind keeps each modality, and the shapes it must have."""

    dataset_name: str
    file_name: str
    keys: dict[str, str]  # key in the file -> modality name (in model input order)
    dims: dict[str, int]  # modality -> feature size D
    lengths: dict[str, int]  # modality -> sequence length T
    label_names: tuple[str, ...]
    neg_inf_as_zero: tuple[str, ...] = ()  # modalities whose -inf values mean 0


MOSEI_ALIGNED = SequenceLayout(
    dataset_name="mosei_aligned",
    file_name="train_valid_test.pt",
    keys={"src-text": "text", "src-visual": "visual", "src-audio": "audio"},
    dims={"text": 300, "visual": 35, "audio": 74},
    lengths={"text": 60, "visual": 60, "audio": 60},
    label_names=MOSEI_LABELS,
    neg_inf_as_zero=("audio",),
)
MOSEI_UNALIGNED = replace(
    MOSEI_ALIGNED,
    dataset_name="mosei_unaligned",
    file_name="mosei_senti_data_noalign.pkl",
    keys={"text": "text", "vision": "visual", "audio": "audio"},
    lengths={"text": 50, "visual": 500, "audio": 500},
)
# DATA_FORMATS.md: the reference zeroes M3ED's -inf audio as MOSEI's (neg_inf_as_zero kept).
M3ED = replace(
    MOSEI_ALIGNED,
    dataset_name="m3ed",
    file_name="m3ed_data.pt",
    dims={"text": 768, "visual": 1024, "audio": 342},
    label_names=M3ED_LABELS,
)

MASK_RULES = {False: "all steps real (reference)", True: "all-zero rows are padding"}
DATA_ENV = "CARAT_DATA"  # the folder holding the public files when no data_path is given
DEFAULT_DATA_FOLDER = "data"
SIZES = ("full", "tiny")
TINY_SAMPLES = {"train": 48, "valid": 16, "test": 16}


class MissingDataFile(FileNotFoundError):
    """A public data file is not where it was looked for; the message is one line saying where."""

    def __init__(self, loader: str, file_name: str, path: Path, looked_in: str):
        self.loader, self.file_name, self.path, self.looked_in = loader, file_name, path, looked_in
        super().__init__(
            f"{loader}: no file {file_name} at {path} (looked in {looked_in}; put the public file there, set "
            f"{DATA_ENV} to the folder holding it, or pass --data-path)"
        )


def default_data_folder() -> tuple[Path, str]:
    """(folder, how it was chosen): ``$CARAT_DATA``, else ``data/`` under the current folder."""
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser(), f"{DATA_ENV}={os.environ[DATA_ENV]}"
    return Path(DEFAULT_DATA_FOLDER).resolve(), f"{DEFAULT_DATA_FOLDER}/ under the current folder ({DATA_ENV} unset)"


def _load_pt_file(layout: SequenceLayout, data_path, max_len, truncate: bool, mask_padding: bool, size: str):
    limit = _sample_limit(size)
    path = resolve_file(data_path, layout.file_name, layout.dataset_name)
    return _load_pt_layout(path, layout, max_len, truncate, mask_padding, limit)


def load_mosei_aligned(
    data_path=None, max_len=None, truncate: bool = False, mask_padding: bool = False, size: str = "full"
) -> MultimodalDataset:
    """CMU-MOSEI word-aligned features (``train_valid_test.pt``, as used by TAILOR and CARAT)."""
    return _load_pt_file(MOSEI_ALIGNED, data_path, max_len, truncate, mask_padding, size)


def load_m3ed(
    data_path=None, max_len=None, truncate: bool = False, mask_padding: bool = False, size: str = "full"
) -> MultimodalDataset:
    """M3ED as converted by the CARAT authors (``m3ed_data.pt``, 60 steps, 7 labels)."""
    return _load_pt_file(M3ED, data_path, max_len, truncate, mask_padding, size)


def load_mosei_unaligned(
    data_path=None,
    labels_path=None,
    max_len=None,
    truncate: bool = False,
    mask_padding: bool = False,
    size: str = "full",
) -> MultimodalDataset:
    """CMU-MOSEI unaligned features (MulT's ``.pkl``) with emotion labels from the aligned ``.pt``.

    ``data_path`` is a folder holding both public files, or the ``.pkl`` itself with the
    ``.pt`` beside it; ``labels_path`` names the ``.pt`` (or its folder) explicitly.
    """
    mask_padding = _check_flag(mask_padding, "mask_padding")
    limit = _sample_limit(size)
    layout = MOSEI_UNALIGNED
    features_path = resolve_file(data_path, layout.file_name, layout.dataset_name)
    label_source = features_path.parent if labels_path is None else labels_path
    labels_file = resolve_file(label_source, MOSEI_ALIGNED.file_name, f"{layout.dataset_name} (its labels)")
    lengths = _configured_lengths(layout, max_len, features_path)

    raw_features = _as_split_dict(load_pickle_file(features_path), features_path)
    raw_labels = _as_split_dict(load_torch_file(labels_file), labels_file)
    splits, counters = {}, _Counters()
    for split in SPLITS:
        feature_split = _required(raw_features, split, features_path, None, "split")
        label_split = _required(raw_labels, split, labels_file, None, "split")
        tgt = _required(_as_mapping(label_split, labels_file, split), "tgt", labels_file, split, "key")
        feature_split, tgt = (
            _first_samples(feature_split, layout, features_path, split, limit),
            _head(tgt, limit, split),
        )
        labels = labels_from_tgt(tgt, len(layout.label_names), labels_file, split)
        features, masks = _read_modalities(
            feature_split, layout, lengths, truncate, mask_padding, features_path, split, counters
        )
        n_features = next(iter(features.values())).shape[0]
        if n_features != labels.shape[0]:
            raise DataFormatError(
                features_path,
                split,
                f"has {n_features} samples but the labels file {labels_file} has {labels.shape[0]} in this split",
            )
        splits[split] = Split(features=features, masks=masks, labels=labels)
    return _dataset(layout, splits, f"{features_path} + {labels_file}", False, counters, mask_padding, limit)


def resolve_file(data_path, file_name: str, what: str) -> Path:
    """``data_path`` itself if it is a file, else ``data_path / file_name`` (``data_path`` None: the
    folder of ``default_data_folder``); ``MissingDataFile`` if absent."""
    if data_path is None:
        folder, looked_in = default_data_folder()
        path = folder / file_name
    else:
        path = Path(data_path).expanduser()
        looked_in = f"the data path {data_path}"
        if path.is_dir() or not path.suffix:  # a folder (or one that does not exist): the public name inside
            path = path / file_name
    if not path.is_file():
        raise MissingDataFile(what, file_name, path, looked_in)
    return path


def _sample_limit(size: str) -> dict[str, int] | None:
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    return TINY_SAMPLES if size == "tiny" else None


def _head(value, limit: dict[str, int] | None, split: str):
    """The first ``limit[split]`` samples of a list or array (all of them without a limit)."""
    return value if limit is None or not _is_sequence(value) else value[: limit[split]]


def _first_samples(raw_split, layout: SequenceLayout, source, split: str, limit: dict[str, int] | None):
    """A split with only its first samples; the full sample counts are compared first, so a file
    whose modalities disagree is refused in a smoke test too."""
    if limit is None:
        return raw_split
    raw_split = _as_mapping(raw_split, source, split)
    counts = {key: len(raw_split[key]) for key in layout.keys if key in raw_split and _is_sequence(raw_split[key])}
    if len(set(counts.values())) > 1:
        raise DataFormatError(source, split, f"mismatched sample counts across modalities: {counts}")
    return {**raw_split, **{key: raw_split[key][: limit[split]] for key in counts}}


def labels_from_tgt(tgt, n_labels: int, source, split: str) -> np.ndarray:
    """(N, C) 0/1 labels from ``[2, emotion ids..., 3]`` lists; ids 4..4+C-1 map to labels in order."""
    if not _is_sequence(tgt):
        raise DataFormatError(source, split, f"'tgt' must be a list of id lists, got {type(tgt).__name__}")
    labels = np.zeros((len(tgt), n_labels), dtype=np.float32)
    last_id = FIRST_EMOTION_ID + n_labels - 1
    for index, ids in enumerate(tgt):
        if not _is_sequence(ids) or not all(_is_int(i) for i in ids):
            raise DataFormatError(source, split, f"'tgt' of sample {index} is {ids!r}, expected a list of ints")
        ids = [int(i) for i in ids]
        if len(ids) < 2 or ids[0] != START_TOKEN or ids[-1] != END_TOKEN:
            expected = f"[{START_TOKEN}, emotion ids..., {END_TOKEN}]"
            raise DataFormatError(source, split, f"'tgt' of sample {index} is {ids}, expected {expected}")
        emotions = np.array(ids[1:-1], dtype=np.int64)
        unknown = emotions[(emotions < FIRST_EMOTION_ID) | (emotions > last_id)]
        if unknown.size:
            raise DataFormatError(
                source,
                split,
                f"'tgt' of sample {index} holds id {int(unknown[0])}, outside the known emotion ids "
                f"{FIRST_EMOTION_ID}..{last_id}",
            )
        labels[index, emotions - FIRST_EMOTION_ID] = 1.0
    return labels


class _Counters:
    """What the loader changed on purpose, reported in ``dataset.notes`` (nothing silent)."""

    def __init__(self):
        self.neg_inf_set_to_zero = 0
        self.truncated_samples = 0


def _load_pt_layout(
    path: Path, layout: SequenceLayout, max_len, truncate: bool, mask_padding, limit: dict[str, int] | None = None
) -> MultimodalDataset:
    mask_padding = _check_flag(mask_padding, "mask_padding")
    lengths = _configured_lengths(layout, max_len, path)
    raw = _as_split_dict(load_torch_file(path), path)
    splits, counters = {}, _Counters()
    for split in SPLITS:
        raw_split = _as_mapping(_required(raw, split, path, None, "split"), path, split)
        if limit is not None:
            n_tgt = len(_required(raw_split, "tgt", path, split, "key"))
            counts = {key: len(raw_split[key]) for key in layout.keys if _is_sequence(raw_split.get(key))}
            if any(n != n_tgt for n in counts.values()):  # the whole file's counts, before keeping a few
                raise DataFormatError(path, split, f"mismatched sample counts: {counts}, 'tgt' {n_tgt}")
            raw_split = {
                **_first_samples(raw_split, layout, path, split, limit),
                "tgt": raw_split["tgt"][: limit[split]],
            }
        tgt = _required(raw_split, "tgt", path, split, "key")
        labels = labels_from_tgt(tgt, len(layout.label_names), path, split)
        features, masks = _read_modalities(raw_split, layout, lengths, truncate, mask_padding, path, split, counters)
        counts = {key: features[m].shape[0] for key, m in layout.keys.items()}
        if any(n != labels.shape[0] for n in counts.values()):
            raise DataFormatError(path, split, f"mismatched sample counts: {counts}, 'tgt' {labels.shape[0]}")
        splits[split] = Split(features=features, masks=masks, labels=labels)
    return _dataset(layout, splits, str(path), True, counters, mask_padding, limit)


def _dataset(
    layout, splits, source: str, aligned: bool, counters: _Counters, mask_padding: bool, limit=None
) -> MultimodalDataset:
    sizes = {} if limit is None else {"size": f"tiny: the first {limit} samples of each split"}
    return MultimodalDataset(
        name=layout.dataset_name,
        modalities=tuple(layout.keys.values()),
        label_names=layout.label_names,
        splits=splits,
        aligned=aligned,
        source=source,
        notes={
            "neg_inf_set_to_zero": counters.neg_inf_set_to_zero,
            "truncated_samples": counters.truncated_samples,
            "masks": MASK_RULES[mask_padding],
            **sizes,
        },
    )


def _read_modalities(raw_split, layout, lengths, truncate, mask_padding, source, split, counters):
    raw_split = _as_mapping(raw_split, source, split)
    features, masks = {}, {}
    counts = {}
    for key, modality in layout.keys.items():
        value = _required(raw_split, key, source, split, "key")
        x = _stack_sequences(value, layout.dims[modality], lengths[modality], truncate, source, split, key, counters)
        if modality in layout.neg_inf_as_zero:
            neg_inf = np.isneginf(x)
            counters.neg_inf_set_to_zero += int(neg_inf.sum())
            x[neg_inf] = 0.0
        _refuse_non_finite(x, source, split, key)
        features[modality] = x
        # The reference attends to every step; mask_padding marks all-zero rows as padding.
        masks[modality] = np.any(x != 0, axis=2) if mask_padding else np.ones(x.shape[:2], dtype=bool)
        counts[key] = x.shape[0]
    if len(set(counts.values())) > 1:
        raise DataFormatError(source, split, f"mismatched sample counts across modalities: {counts}")
    return features, masks


def _stack_sequences(value, dim: int, length: int, truncate: bool, source, split, key, counters) -> np.ndarray:
    """(N, length, dim) float32 from N arrays of (T_i, dim), zero-padded at the end."""
    if not _is_sequence(value):
        raise DataFormatError(source, split, f"{key!r} must be a list or array of samples, got {type(value).__name__}")
    out = np.zeros((len(value), length, dim), dtype=np.float32)
    for index, sample in enumerate(value):
        sample = np.asarray(sample)
        if sample.dtype.kind not in "fiu":
            raise DataFormatError(
                source, split, f"{key!r} sample {index} is of unexpected type {type(sample).__name__}/{sample.dtype}"
            )
        if sample.ndim != 2 or sample.shape[1] != dim:
            raise DataFormatError(
                source, split, f"{key!r} sample {index} has shape {sample.shape}, expected (T <= {length}, {dim})"
            )
        if sample.shape[0] > length:
            if not truncate:
                raise DataFormatError(
                    source,
                    split,
                    f"{key!r} sample {index} has {sample.shape[0]} steps, more than the configured {length} "
                    "(pass max_len=... or truncate=True)",
                )
            counters.truncated_samples += 1
            sample = sample[:length]
        out[index, : sample.shape[0]] = sample
    return out


def _refuse_non_finite(x: np.ndarray, source, split, key) -> None:
    bad = ~np.isfinite(x)
    if bad.any():
        index = int(np.argwhere(bad.any(axis=(1, 2)))[0, 0])
        kind = "NaN" if np.isnan(x[index]).any() else "infinite values"
        raise DataFormatError(source, split, f"{key!r} sample {index} contains {kind}")


def _check_flag(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _configured_lengths(layout: SequenceLayout, max_len, source) -> dict[str, int]:
    """Per-modality T: the layout's, or ``max_len`` (one int for all, or a dict per modality)."""
    if max_len is None:
        return dict(layout.lengths)
    if isinstance(max_len, Mapping):
        unknown = sorted(set(max_len) - set(layout.lengths))
        if unknown:
            raise ValueError(f"max_len names unknown modalities {unknown}; valid: {list(layout.lengths)}")
        lengths = {**layout.lengths, **max_len}
    else:
        lengths = dict.fromkeys(layout.lengths, max_len)
    for modality, value in lengths.items():
        if not _is_int(value) or value < 1:
            raise ValueError(f"max_len for {modality!r} must be a positive int, got {value!r}")
    return {m: int(v) for m, v in lengths.items()}


def _as_split_dict(obj, source) -> Mapping:
    if not isinstance(obj, Mapping):
        raise DataFormatError(
            source, None, f"expected a dict with splits {list(SPLITS)}, got an object of type {type(obj).__name__}"
        )
    return obj


def _as_mapping(obj, source, split) -> Mapping:
    if not isinstance(obj, Mapping):
        raise DataFormatError(source, split, f"split must be a dict of arrays, got {type(obj).__name__}")
    return obj


def _required(mapping: Mapping, key: str, source, split, what: str):
    if key not in mapping:
        found = [str(k) for k in mapping]
        raise DataFormatError(source, split if what == "key" else key, f"missing {what} {key!r} (found {found})")
    return mapping[key]


def _is_sequence(value) -> bool:
    return isinstance(value, (Sequence, np.ndarray)) and not isinstance(value, (str, bytes))


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
