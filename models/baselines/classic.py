"""Classic multi-label problem transformations on pooled features (scikit-learn).

Every model here sees one vector per sample: the masked time-mean of each modality,
concatenated in ``spec`` order (``models.base.pooled_numpy``), standardised by a
``StandardScaler`` fitted on the training split. Scores are probabilities in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.multioutput import ClassifierChain, MultiOutputClassifier
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

from models.base import ClassicModel, build_config, pooled_numpy
from models.baselines.common import check_binary_labels, check_inputs
from models.presets import preset_values
from models.registry import register


class PooledModel(ClassicModel):
    """Shared boundary of the classic baselines: validate, pool, standardise; subclasses see (N, F) arrays."""

    def __init__(self, spec, config):
        self.spec = spec
        self.config = config
        self.scaler_: StandardScaler | None = None

    def fit(self, inputs, masks, labels) -> PooledModel:
        check_inputs(self.spec, inputs, masks, labels)
        y = check_binary_labels(labels)
        pooled = pooled_numpy(inputs, masks, self.spec.modality_names)
        self.scaler_ = StandardScaler().fit(pooled)
        self._fit_pooled(self.scaler_.transform(pooled), y)
        return self

    @property
    def n_parameters(self) -> int:
        """Learned scalars of the fitted model (0 before fit), reported beside the neural models' counts."""
        return 0 if self.scaler_ is None else self._count_parameters()

    def predict_scores(self, inputs, masks) -> np.ndarray:
        if self.scaler_ is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit() first")
        check_inputs(self.spec, inputs, masks)
        pooled = self.scaler_.transform(pooled_numpy(inputs, masks, self.spec.modality_names))
        # Clipping only removes floating-point excursions such as 1 + 1e-16.
        return np.clip(self._pooled_scores(pooled), 0.0, 1.0).astype(np.float32)

    def _fit_pooled(self, x: np.ndarray, y: np.ndarray) -> None:
        raise NotImplementedError

    def _pooled_scores(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _count_parameters(self) -> int:
        return 0  # lazy learners (k-NN) keep the training set, not parameters


class BinaryLogistic(ClassifierMixin, BaseEstimator):
    """Logistic regression for one 0/1 target that also accepts a constant target.

    scikit-learn's LogisticRegression refuses a target with one class, yet a rare label absent from a small
    training split is common; such a label simply gets its constant as probability.
    ``classes_`` is always [0, 1] so the multi-output wrappers read column 1 as "positive".
    """

    def __init__(self, C: float = 1.0, max_iter: int = 1000):
        self.C = C
        self.max_iter = max_iter

    def fit(self, x, y):
        y = np.asarray(y).astype(np.int64)
        self.classes_ = np.array([0, 1])
        if np.unique(y).size == 1:
            self.constant_, self.model_ = float(y[0]), None
        else:
            self.constant_, self.model_ = None, LogisticRegression(C=self.C, max_iter=self.max_iter).fit(x, y)
        return self

    def predict_proba(self, x):
        if self.model_ is None:
            positive = np.full(len(x), self.constant_)
        else:
            positive = self.model_.predict_proba(x)[:, 1]
        return np.column_stack([1.0 - positive, positive])

    def predict(self, x):
        return (self.predict_proba(x)[:, 1] > 0.5).astype(np.int64)

    @property
    def n_parameters(self) -> int:
        return 0 if self.model_ is None else logistic_size(self.model_)


def logistic_size(model: LogisticRegression) -> int:
    return int(model.coef_.size + model.intercept_.size)


@dataclass(frozen=True)
class LogisticConfig:
    C: float = 1.0  # inverse L2 strength of each logistic regression
    max_iter: int = 1000

    def __post_init__(self):
        if not self.C > 0:
            raise ValueError(f"C must be > 0, got {self.C}")
        if self.max_iter < 1:
            raise ValueError(f"max_iter must be >= 1, got {self.max_iter}")


@dataclass(frozen=True)
class ClassifierChainConfig(LogisticConfig):
    n_chains: int = 10  # chains with different random label orders, scores averaged (1 = a single chain)
    # Seeds the label orders; None draws them from numpy's global RNG (as scikit-learn's
    # random_state=None does), which the trainer seeds with the run's seed, so repeats differ.
    seed: int | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.n_chains < 1:
            raise ValueError(f"n_chains must be >= 1, got {self.n_chains}")


@dataclass(frozen=True)
class KNNConfig:
    k: int = 10
    weights: str = "uniform"  # "uniform" or "distance", as in KNeighborsClassifier

    def __post_init__(self):
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if self.weights not in ("uniform", "distance"):
            raise ValueError(f"weights must be 'uniform' or 'distance', got {self.weights!r}")


LOGISTIC_PRESETS = {"paper": dict(C=1.0, max_iter=1000), "small": dict(C=1.0, max_iter=200)}
CHAIN_PRESETS = {
    "paper": dict(LOGISTIC_PRESETS["paper"], n_chains=10),
    "small": dict(LOGISTIC_PRESETS["small"], n_chains=3),
}
KNN_PRESETS = {"paper": dict(k=10), "small": dict(k=10)}


def positive_columns(estimators, probas) -> np.ndarray:
    """(N, C) probability of class 1 from per-label predict_proba outputs (0 if a label never was 1)."""
    columns = []
    for estimator, proba in zip(estimators, probas):
        classes = list(estimator.classes_)
        columns.append(proba[:, classes.index(1)] if 1 in classes else np.zeros(len(proba)))
    return np.column_stack(columns)


class BinaryRelevance(PooledModel):
    """One independent logistic regression per label."""

    def _fit_pooled(self, x, y):
        base = BinaryLogistic(C=self.config.C, max_iter=self.config.max_iter)
        self.model_ = MultiOutputClassifier(base).fit(x, y)

    def _pooled_scores(self, x):
        return positive_columns(self.model_.estimators_, self.model_.predict_proba(x))

    def _count_parameters(self):
        return sum(e.n_parameters for e in self.model_.estimators_)


class ClassifierChainEnsemble(PooledModel):
    """Classifier chains (Read et al. 2011): label j's regression also reads the predictions for earlier labels.

    Each chain gets its own random label order (``seed + chain``, or numpy's global RNG
    when ``seed`` is None); the scores of the chains are averaged. Unlike Read et al.'s ECC the chains share the full
    training set (no bootstrap), so they differ only in order.
    """

    def _fit_pooled(self, x, y):
        base = BinaryLogistic(C=self.config.C, max_iter=self.config.max_iter)
        seed = self.config.seed
        self.chains_ = [
            ClassifierChain(base, order="random", random_state=None if seed is None else seed + chain).fit(x, y)
            for chain in range(self.config.n_chains)
        ]

    def _pooled_scores(self, x):
        return np.mean([chain.predict_proba(x) for chain in self.chains_], axis=0)

    def _count_parameters(self):
        return sum(e.n_parameters for chain in self.chains_ for e in chain.estimators_)


class LabelPowerset(PooledModel):
    """Every label set seen in training is one class of a multinomial logistic regression.

    The score of a label is its marginal probability: the summed probability of the
    classes (label sets) that contain it. Label sets never seen in training get no mass.
    """

    def _fit_pooled(self, x, y):
        self.label_sets_, class_of_sample = np.unique(y, axis=0, return_inverse=True)
        class_of_sample = class_of_sample.reshape(-1)
        if len(self.label_sets_) == 1:
            self.model_ = None  # one label set only: it has probability 1
        else:
            self.model_ = LogisticRegression(C=self.config.C, max_iter=self.config.max_iter).fit(x, class_of_sample)

    def _pooled_scores(self, x):
        if self.model_ is None:
            return np.repeat(self.label_sets_.astype(np.float64), len(x), axis=0)
        # model_.classes_ is 0..K-1 in order (every class index occurs in training).
        return self.model_.predict_proba(x) @ self.label_sets_.astype(np.float64)

    def _count_parameters(self):
        return 0 if self.model_ is None else logistic_size(self.model_)


class KNNBinaryRelevance(PooledModel):
    """One k-nearest-neighbour classifier per label: the score is the (weighted) share of positive neighbours."""

    def _fit_pooled(self, x, y):
        base = KNeighborsClassifier(n_neighbors=self.config.k, weights=self.config.weights)
        self.model_ = MultiOutputClassifier(base).fit(x, y)

    def _pooled_scores(self, x):
        return positive_columns(self.model_.estimators_, self.model_.predict_proba(x))


# name: (model, its configuration, presets, the one-line difference `invoke variants` shows)
CLASSIC_MODELS = {
    "br": (
        BinaryRelevance,
        LogisticConfig,
        LOGISTIC_PRESETS,
        "Binary relevance: one logistic regression per label on pooled features.",
    ),
    "cc": (
        ClassifierChainEnsemble,
        ClassifierChainConfig,
        CHAIN_PRESETS,
        "Classifier chains: logistic regressions chained over labels, averaged over seeded random orders.",
    ),
    "lp": (
        LabelPowerset,
        LogisticConfig,
        LOGISTIC_PRESETS,
        "Label powerset: multinomial logistic regression over the label sets seen in training.",
    ),
    "knn_br": (
        KNNBinaryRelevance,
        KNNConfig,
        KNN_PRESETS,
        "k-NN binary relevance: one k-nearest-neighbour classifier per label on pooled features.",
    ),
}


def _builder(name: str):
    model_cls, config_cls, presets, doc = CLASSIC_MODELS[name]

    def build(spec, preset="small", **overrides):
        return model_cls(spec, build_config(config_cls, preset_values(presets, preset, name), overrides, name))

    build.__name__ = build.__qualname__ = name
    build.__doc__ = doc
    return build


for _name in CLASSIC_MODELS:
    register(_builder(_name), name=_name)
