"""``prior``: the floor every model must beat -- each label's training frequency, for every sample.

The model reads no feature at all: a label positive in 30 % of the training samples scores
0.3 for every sample, whatever its inputs. Thresholded, it predicts the same label set for
everyone (every label more frequent than the threshold), so its metrics are what the label
distribution alone gives; a model that scores near it has learnt nothing from the inputs.
The inputs are still checked against the data spec, like every other model's, so that it
is run on the same data as the models it is compared with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.base import ClassicModel, build_config
from models.baselines.common import check_binary_labels, check_inputs
from models.presets import preset_values
from models.registry import register


@dataclass(frozen=True)
class PriorConfig:
    """The prior has nothing to set: every preset gives the same model."""


PRIOR_PRESETS: dict[str, dict] = {"paper": {}, "small": {}}


class LabelPrior(ClassicModel):
    """Scores every sample with the label frequencies of the training split."""

    predicts_constant = True  # by design: the floor other models are compared with, never flagged as degenerate

    def __init__(self, spec, config: PriorConfig):
        self.spec = spec
        self.config = config
        self.frequencies_: np.ndarray | None = None  # (C,) share of training samples carrying each label

    def fit(self, inputs, masks, labels) -> LabelPrior:
        n = check_inputs(self.spec, inputs, masks, labels)
        if n == 0:
            raise ValueError("the prior needs at least one training sample")
        self.frequencies_ = check_binary_labels(labels).mean(axis=0)
        return self

    def predict_scores(self, inputs, masks) -> np.ndarray:
        if self.frequencies_ is None:
            raise RuntimeError("LabelPrior is not fitted; call fit() first")
        n = check_inputs(self.spec, inputs, masks)
        return np.tile(self.frequencies_.astype(np.float32), (n, 1))

    @property
    def n_parameters(self) -> int:
        """One frequency per label once fitted (0 before)."""
        return 0 if self.frequencies_ is None else int(self.frequencies_.size)


@register
def prior(spec, preset="small", **overrides):
    """Label prior: every sample scores each label's training frequency (no feature is read)."""
    config = build_config(PriorConfig, preset_values(PRIOR_PRESETS, preset, "prior"), overrides, "prior")
    return LabelPrior(spec, config)
