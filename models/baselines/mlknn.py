"""ML-kNN (Zhang & Zhou 2007, "ML-KNN: A lazy learning approach to multi-label learning").

For every label l the algorithm counts, among the k nearest training neighbours of a
sample, how many carry l (C_l in 0..k), and scores l by the Bayesian posterior

    P(H1_l | E_C) = P(H1_l) P(E_C | H1_l) / sum_b P(Hb_l) P(E_C | Hb_l)

with Laplace-smoothed (strength s) priors and likelihoods estimated on the training set,
where a training sample's own neighbourhood leaves the sample itself out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.neighbors import NearestNeighbors

from models.base import build_config
from models.baselines.classic import PooledModel
from models.presets import preset_values
from models.registry import register


@dataclass(frozen=True)
class MLkNNConfig:
    k: int = 10
    smoothing: float = 1.0  # Laplace smoothing s of priors and likelihoods (s=1: Laplace)

    def __post_init__(self):
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if not self.smoothing > 0:
            raise ValueError(f"smoothing must be > 0, got {self.smoothing}")


MLKNN_PRESETS = {"paper": dict(k=10, smoothing=1.0), "small": dict(k=10, smoothing=1.0)}


class MLkNN(PooledModel):
    """ML-kNN on standardised pooled features; the score is the posterior P(label | neighbour count)."""

    def _fit_pooled(self, x, y):
        k, s, n = self.config.k, self.config.smoothing, len(x)
        if n <= k:
            raise ValueError(f"ML-kNN with k={k} needs more than {k} training samples, got {n}")
        self.neighbours_ = NearestNeighbors(n_neighbors=k).fit(x)
        self.train_labels_ = y
        # Without a query, kneighbors leaves each training sample out of its own neighbourhood.
        counts = self._neighbour_label_counts(self.neighbours_.kneighbors(return_distance=False))
        self.prior_positive_ = (s + y.sum(axis=0)) / (2 * s + n)  # (C,)
        # count_is[i, l, j]: sample i has exactly j neighbours carrying label l.
        count_is = counts[..., None] == np.arange(k + 1)
        has_label = y.astype(bool)[..., None]
        with_label = (count_is & has_label).sum(axis=0)  # (C, k+1): c[j] of the paper
        without_label = (count_is & ~has_label).sum(axis=0)  # (C, k+1): c'[j]
        self.likelihood_positive_ = (s + with_label) / (s * (k + 1) + with_label.sum(axis=1, keepdims=True))
        self.likelihood_negative_ = (s + without_label) / (s * (k + 1) + without_label.sum(axis=1, keepdims=True))

    def _pooled_scores(self, x):
        counts = self._neighbour_label_counts(self.neighbours_.kneighbors(x, return_distance=False))
        label = np.arange(counts.shape[1])
        positive = self.prior_positive_ * self.likelihood_positive_[label, counts]
        negative = (1.0 - self.prior_positive_) * self.likelihood_negative_[label, counts]
        return positive / (positive + negative)

    def _count_parameters(self):
        return int(self.prior_positive_.size + self.likelihood_positive_.size + self.likelihood_negative_.size)

    def _neighbour_label_counts(self, neighbour_index: np.ndarray) -> np.ndarray:
        """(N, C) number of the k neighbours of each sample that carry each label."""
        return self.train_labels_[neighbour_index].sum(axis=1)


@register
def mlknn(spec, preset="small", **overrides):
    """ML-kNN: Bayesian posterior of each label given how many of the k nearest neighbours carry it."""
    config = build_config(MLkNNConfig, preset_values(MLKNN_PRESETS, preset, "mlknn"), overrides, "mlknn")
    return MLkNN(spec, config)
