"""The one in-memory form every loader returns.

A data set is a set of named modalities, each an array (N, T_m, D_m) with a boolean
mask (N, T_m) marking real (non-padding) steps, a 0/1 label matrix (N, C), label names
and the three splits train/valid/test. Everything downstream (models, trainer, studies)
reads only this form.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from models.spec import DataSpec  # the contract a model builds from, kept with the models

SPLITS = ("train", "valid", "test")


class DataFormatError(ValueError):
    """Bad input data: the message names the file, the split and the problem."""

    def __init__(self, source: str, split: str | None, problem: str):
        self.source, self.split, self.problem = str(source), split, problem
        where = f"{source}" + (f" [split {split!r}]" if split else "")
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class Split:
    """One split: per-modality features and masks plus the label matrix."""

    features: dict[str, np.ndarray]  # name -> float32 (N, T, D)
    masks: dict[str, np.ndarray]  # name -> bool (N, T); True = real step
    labels: np.ndarray  # float32 (N, C) of 0/1

    @property
    def n(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: np.ndarray) -> Split:
        return Split(
            features={m: x[index] for m, x in self.features.items()},
            masks={m: k[index] for m, k in self.masks.items()},
            labels=self.labels[index],
        )


@dataclass(frozen=True)
class MultimodalDataset:
    name: str
    modalities: tuple[str, ...]
    label_names: tuple[str, ...]
    splits: dict[str, Split]
    aligned: bool = True
    source: str = "<memory>"
    notes: dict = field(default_factory=dict)

    def __post_init__(self):
        validate(self)

    @property
    def spec(self) -> DataSpec:
        first = self.splits["train"]
        dims = {m: tuple(int(s) for s in first.features[m].shape[1:]) for m in self.modalities}
        return DataSpec(modalities=dims, labels=tuple(self.label_names), aligned=self.aligned)

    @cached_property
    def digest(self) -> str:
        """:meth:`content_digest`, computed once per loaded data set."""
        return self.content_digest()

    def content_digest(self) -> str:
        """A hash of everything a model could read: names, every split's features, masks and labels.

        Two loads give the same digest exactly when they hold the same values in the same order,
        so it identifies the data behind a result (one changed label changes it). BLAKE2b reads
        about 1 GB/s: a fraction of a second for the default data, seconds for full CMU-MOSEI."""
        h = hashlib.blake2b(digest_size=16)
        h.update(repr((self.modalities, self.label_names, self.aligned)).encode())
        for split_name in SPLITS:
            split = self.splits[split_name]
            for array in (
                *(split.features[m] for m in self.modalities),
                *(split.masks[m] for m in self.modalities),
                split.labels,
            ):
                h.update(f"{split_name}{array.dtype.str}{array.shape}".encode())
                h.update(np.ascontiguousarray(array).data)
        return h.hexdigest()

    def summary(self) -> dict:
        """Plain-data summary, the form printed by ``invoke data --json``."""
        return {
            "dataset": self.name,
            "modalities": {m: list(t_d) for m, t_d in self.spec.modalities.items()},
            "labels": list(self.label_names),
            "splits": {
                name: {
                    "n": split.n,
                    "label_counts": [int(c) for c in split.labels.sum(axis=0)],
                }
                for name, split in self.splits.items()
            },
        }


def validate(ds: MultimodalDataset) -> None:
    """Refuse anything downstream code could silently mis-read."""
    src = ds.source
    if len(ds.modalities) < 1:
        raise DataFormatError(src, None, "no modalities")
    if len(set(ds.modalities)) != len(ds.modalities):
        raise DataFormatError(src, None, f"duplicate modality names {list(ds.modalities)}")
    missing = [s for s in SPLITS if s not in ds.splits]
    if missing:
        raise DataFormatError(src, missing[0], f"missing split(s) {missing}; need {list(SPLITS)}")
    n_labels = len(ds.label_names)
    dims: dict[str, tuple[int, int]] = {}
    for split_name in SPLITS:
        split = ds.splits[split_name]
        y = split.labels
        if y.ndim != 2 or y.shape[1] != n_labels:
            raise DataFormatError(src, split_name, f"labels have shape {y.shape}, expected (N, {n_labels})")
        if not np.isin(y, (0, 1)).all():
            raise DataFormatError(src, split_name, "labels must be 0/1")
        for m in ds.modalities:
            if m not in split.features:
                raise DataFormatError(src, split_name, f"modality {m!r} missing")
            x, mask = split.features[m], split.masks.get(m)
            if x.ndim != 3:
                raise DataFormatError(src, split_name, f"modality {m!r} has shape {x.shape}, expected (N, T, D)")
            if x.shape[0] != y.shape[0]:
                raise DataFormatError(
                    src, split_name, f"modality {m!r} has {x.shape[0]} samples but labels have {y.shape[0]}"
                )
            if mask is None or mask.shape != x.shape[:2]:
                raise DataFormatError(src, split_name, f"modality {m!r} mask missing or not of shape {x.shape[:2]}")
            if not np.isfinite(x).all():
                raise DataFormatError(src, split_name, f"modality {m!r} contains NaN or infinite values")
            prev = dims.setdefault(m, tuple(x.shape[1:]))
            if prev != tuple(x.shape[1:]):
                raise DataFormatError(
                    src, split_name, f"modality {m!r} has (T, D) {tuple(x.shape[1:])}, other splits have {prev}"
                )
