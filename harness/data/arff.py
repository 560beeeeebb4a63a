"""MULAN-style ARFF pairs (``<name>-train.arff`` + ``<name>-test.arff``), e.g. the emotions data set.

Numeric feature attributes come first and the ``n_labels`` label attributes ({0,1}) last.
``views`` groups feature columns into modalities, each a sequence of length 1; columns are
numbered from 1 like the attributes in the file, ranges ``[start, end]`` are inclusive.
There is no validation split in these files: ``valid_fraction`` of the training file is
carved off, stratified over the labels and seeded by ``split_seed`` (``carve.py`` says why;
a study runner passes each run's seed), and the features are standardised with a scaler
fitted on the remaining training part only, so nothing of validation or test leaks into it.
"""

from __future__ import annotations

import os
from pathlib import Path

import arff as liac_arff
import numpy as np
from sklearn.preprocessing import StandardScaler

from harness.data.carve import DEFAULT_SPLIT_SEED, DEFAULT_VALID_FRACTION, carve_validation, check_options
from harness.data.dataset import DataFormatError, MultimodalDataset, Split

EMOTIONS_VIEWS = {"timbre": [[1, 64]], "rhythm": [[65, 72]]}
EMOTIONS_N_LABELS = 6
EMOTIONS_DIR_ENV = "CARAT_EMOTIONS_DIR"


def default_emotions_dir() -> Path:
    """``$CARAT_EMOTIONS_DIR`` if set, else ``../shared/data/emotions`` beside the project root."""
    if os.environ.get(EMOTIONS_DIR_ENV):
        return Path(os.environ[EMOTIONS_DIR_ENV]).expanduser()
    return Path(__file__).resolve().parents[2].parent / "shared/data/emotions"


def load_emotions(
    data_path=None, valid_fraction: float = DEFAULT_VALID_FRACTION, split_seed: int = DEFAULT_SPLIT_SEED
) -> MultimodalDataset:
    """MULAN emotions (music): views timbre (attributes 1-64) and rhythm (65-72), 6 labels."""
    return load_arff(
        default_emotions_dir() if data_path is None else data_path,
        n_labels=EMOTIONS_N_LABELS,
        views=EMOTIONS_VIEWS,
        valid_fraction=valid_fraction,
        split_seed=split_seed,
        prefix="emotions",
    )


def load_arff(
    data_path=None,
    n_labels: int | None = None,
    views: dict | None = None,
    valid_fraction: float = DEFAULT_VALID_FRACTION,
    split_seed: int = DEFAULT_SPLIT_SEED,
    prefix: str | None = None,
) -> MultimodalDataset:
    """Any MULAN ARFF pair <prefix>-train/-test.arff: n_labels label attributes last, views of columns.

    ``data_path``: the folder holding ``<prefix>-train.arff`` and ``<prefix>-test.arff``
    (``prefix`` may be left out when there is one such pair), or one of the two files.
    ``views`` maps modality name -> column ranges; by default one view ``features``.
    ``valid_fraction`` of the training file becomes validation, stratified, seeded by ``split_seed``.
    """
    if not isinstance(n_labels, int) or n_labels < 1:
        raise ValueError(f"the arff loader needs n_labels (labels are the last attributes), got {n_labels!r}")
    valid_fraction, split_seed = check_options(valid_fraction, split_seed)
    train_path, test_path = _resolve_pair(data_path, prefix)
    names, x_train, y_train = _read(train_path, n_labels, "train")
    test_names, x_test, y_test = _read(test_path, n_labels, "test")
    if test_names != names:
        raise DataFormatError(test_path, "test", f"attributes differ from those of {train_path.name}")
    columns = _view_columns(views, x_train.shape[1], train_path)

    carve = carve_validation(y_train, valid_fraction, split_seed, train_path)
    fit_part, valid_part = carve.train, carve.valid
    scaler = StandardScaler().fit(x_train[fit_part])
    parts = {
        "train": (scaler.transform(x_train[fit_part]), y_train[fit_part]),
        "valid": (scaler.transform(x_train[valid_part]), y_train[valid_part]),
        "test": (scaler.transform(x_test), y_test),
    }
    splits = {split: _split(x, y, columns) for split, (x, y) in parts.items()}
    return MultimodalDataset(
        name=train_path.name.removesuffix("-train.arff"),
        modalities=tuple(columns),
        label_names=tuple(names[-n_labels:]),
        splits=splits,
        aligned=True,
        source=f"{train_path} + {test_path.name}",
        notes={**carve.notes(), "scaler": "StandardScaler fitted on the carved train part only"},
    )


def _resolve_pair(data_path, prefix: str | None) -> tuple[Path, Path]:
    if data_path is None:
        raise FileNotFoundError("the arff loader needs a data path: a folder with <name>-train/-test.arff")
    path = Path(data_path).expanduser()
    if path.is_file():
        prefix, path = path.name.rsplit("-", 1)[0], path.parent
    if not path.is_dir():
        raise FileNotFoundError(f"no such folder or file: {path}")
    if prefix is None:
        found = sorted(p.name.removesuffix("-train.arff") for p in path.glob("*-train.arff"))
        if len(found) != 1:
            raise FileNotFoundError(f"{path}: expected exactly one <name>-train.arff, found {found}; pass prefix=")
        prefix = found[0]
    pair = (path / f"{prefix}-train.arff", path / f"{prefix}-test.arff")
    for file in pair:
        if not file.is_file():
            raise FileNotFoundError(f"no such file {file} (a MULAN pair {prefix}-train.arff + {prefix}-test.arff)")
    return pair


def _read(path: Path, n_labels: int, split: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Attribute names, float features (N, F) and 0/1 labels (N, n_labels) of one ARFF file."""
    try:
        with open(path, encoding="utf-8") as handle:
            content = liac_arff.load(handle)
    except liac_arff.ArffException as error:
        raise DataFormatError(path, split, f"not a readable ARFF file ({error})") from None
    attributes = content["attributes"]
    if n_labels >= len(attributes):
        raise DataFormatError(path, split, f"n_labels={n_labels} leaves no feature among {len(attributes)} attributes")
    for name, kind in attributes[:-n_labels]:
        if isinstance(kind, list) or kind.upper() not in ("NUMERIC", "REAL", "INTEGER"):
            raise DataFormatError(path, split, f"feature attribute {name!r} is {kind}; only numeric features are read")
    for name, kind in attributes[-n_labels:]:
        allowed = (isinstance(kind, list) and set(kind) <= {"0", "1"}) or kind in ("NUMERIC", "REAL", "INTEGER")
        if not allowed:
            raise DataFormatError(path, split, f"label attribute {name!r} is {kind}, expected {{0,1}}")
    rows = content["data"]
    if not rows:
        raise DataFormatError(path, split, "no data rows")
    n_features = len(attributes) - n_labels
    features = np.array([[np.nan if v is None else v for v in row[:n_features]] for row in rows], dtype=np.float64)
    labels = np.array([[-1 if v is None else float(v) for v in row[n_features:]] for row in rows], dtype=np.float64)
    if np.isnan(features).any():
        row = int(np.argwhere(np.isnan(features))[0, 0]) + 1
        raise DataFormatError(path, split, f"missing or NaN feature values in row {row}")
    bad = ~np.isin(labels, (0.0, 1.0))
    if bad.any():
        raise DataFormatError(path, split, f"label values must be 0/1 (row {int(np.argwhere(bad)[0, 0]) + 1})")
    return [name for name, _ in attributes], features, labels.astype(np.float32)


def _view_columns(views: dict | None, n_features: int, source: Path) -> dict[str, np.ndarray]:
    """Modality -> 0-based column indices, from 1-based inclusive ranges (or single columns)."""
    if views is None:
        return {"features": np.arange(n_features)}
    if not isinstance(views, dict) or not views:
        raise ValueError(f"views must map modality names to column ranges, got {views!r}")
    columns = {}
    for name, ranges in views.items():
        picked = []
        for item in ranges:
            start, end = (item, item) if isinstance(item, int) else tuple(item)
            if not 1 <= start <= end <= n_features:
                problem = f"view {name!r}: range {item} outside feature columns 1..{n_features}"
                raise DataFormatError(source, None, problem)
            picked.extend(range(start - 1, end))
        columns[name] = np.array(picked)
    return columns


def _split(x: np.ndarray, y: np.ndarray, columns: dict[str, np.ndarray]) -> Split:
    features = {m: x[:, cols][:, None, :].astype(np.float32) for m, cols in columns.items()}
    masks = {m: np.ones((len(x), 1), dtype=bool) for m in columns}
    return Split(features=features, masks=masks, labels=y)
