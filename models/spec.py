"""The data contract a model is built from: shapes and label names (no arrays, no harness).

Every loader's data set gives one (``MultimodalDataset.spec``); a builder reads only this, so the
same builder works for any data set. It lives here, beside the models, so that models import
nothing from the harness; ``harness.data`` re-exports it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DataSpec:
    """What a model needs to know about the data to be built: shapes and label names."""

    modalities: dict[str, tuple[int, int]]  # name -> (T, D), in model input order
    labels: tuple[str, ...]
    aligned: bool = True

    @property
    def n_labels(self) -> int:
        return len(self.labels)

    @property
    def modality_names(self) -> tuple[str, ...]:
        return tuple(self.modalities)
