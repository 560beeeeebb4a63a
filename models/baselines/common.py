"""What every baseline shares: checks of the inputs at the model boundary (presets: ``models.presets``)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def check_inputs(spec, inputs: Mapping, masks: Mapping, labels=None) -> int:
    """Refuse inputs that do not match ``spec`` (missing modality, wrong feature size, bad mask or labels).

    Works on numpy arrays and torch tensors alike (only shapes are read, so it costs nothing
    on a GPU). Returns the number of samples.
    """
    n = None
    for name, (_, dim) in spec.modalities.items():
        if name not in inputs or name not in masks:
            raise ValueError(f"modality {name!r} missing from inputs or masks; expected {list(spec.modality_names)}")
        x, mask = inputs[name], masks[name]
        if x.ndim != 3 or x.shape[2] != dim:
            raise ValueError(f"modality {name!r}: features of shape {tuple(x.shape)}, expected (N, T, {dim})")
        if tuple(mask.shape) != tuple(x.shape[:2]):
            raise ValueError(f"modality {name!r}: mask of shape {tuple(mask.shape)}, expected {tuple(x.shape[:2])}")
        if n is None:
            n = int(x.shape[0])
        elif x.shape[0] != n:
            raise ValueError(f"modality {name!r} has {x.shape[0]} samples, the first modality has {n}")
    if labels is not None and tuple(labels.shape) != (n, spec.n_labels):
        raise ValueError(f"labels of shape {tuple(labels.shape)}, expected ({n}, {spec.n_labels})")
    return n


def check_binary_labels(labels: np.ndarray) -> np.ndarray:
    """Labels as a 0/1 int matrix; anything else is refused."""
    labels = np.asarray(labels)
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0/1")
    return labels.astype(np.int64)
