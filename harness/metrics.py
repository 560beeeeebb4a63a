"""Multi-label metrics as CARAT.md section 6 defines them (vectorised numpy).

Inputs are plain arrays: ``y_true`` (N, C) of 0/1 and ``scores`` (N, C) in [0, 1]. A label is
predicted when its score is strictly greater than the threshold (CARAT.md step 14), the
threshold being one number or one per label.

Conventions, stated once because the line of work is inconsistent about them:

* ``acc`` is the example-based Jaccard index |y & y_hat| / |y | y_hat| averaged over
  samples; a sample with no true and no predicted label scores 0 (as in CARAT's reference).
* ``example_f1`` is 2 |y & y_hat| / (|y| + |y_hat|) averaged over samples, with the same
  empty-vs-empty convention (0); this equals scikit-learn's
  ``f1_score(average="samples", zero_division=0)``.
* Every precision, recall or F1 whose denominator is 0 is 0 (scikit-learn's
  ``zero_division=0``); macro values average the per-label values.
* Precision is computed against the predictions and recall against the truth -- the
  reference swaps the two because it calls its helper with the arguments reversed
  (CARAT.md section 5); this module does not.
"""

from __future__ import annotations

import numpy as np

METRIC_NAMES = (
    "acc",
    "hamming_loss",
    "micro_precision",
    "micro_recall",
    "micro_f1",
    "macro_precision",
    "macro_recall",
    "macro_f1",
    "subset_acc",
    "example_f1",
)

# The one place a metric's direction is stated: every metric above is higher-is-better except these
# (reports, verdicts and the CLI read it through ``higher_is_better``).
LOWER_IS_BETTER = frozenset({"hamming_loss"})
# Short titles, as the report's tables and the CLI's verdict lines print them.
METRIC_TITLES = {
    "acc": "Acc",
    "hamming_loss": "HL",
    "micro_precision": "micro-P",
    "micro_recall": "micro-R",
    "micro_f1": "micro-F1",
    "macro_precision": "macro-P",
    "macro_recall": "macro-R",
    "macro_f1": "macro-F1",
    "subset_acc": "subset acc",
    "example_f1": "example-F1",
}

DEFAULT_THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.05), 2)
# A label whose scores vary across samples by less than this (standard deviation) is
# treated as constant: collapsed CARAT runs measured below 0.003, learning ones above 0.05.
CONSTANT_SCORE_TOL = 0.01


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` (``micro_f1`` or ``test_micro_f1``) is better."""
    name = metric.removeprefix("test_").removeprefix("valid_")
    if name not in METRIC_NAMES:
        raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRIC_NAMES)}")
    return name not in LOWER_IS_BETTER


def multilabel_metrics(y_true, scores, threshold: float | np.ndarray = 0.25) -> dict[str, float]:
    """All section-6 metrics of ``scores > threshold`` against ``y_true``, as plain floats."""
    y, s = _check_pair(y_true, scores)
    return metrics_from_predictions(y, s > _check_threshold(threshold, y.shape[1]))


def metrics_from_predictions(y_true, y_pred) -> dict[str, float]:
    """The same metrics for an already binarised (N, C) prediction matrix."""
    y = _check_binary(y_true, "y_true").astype(bool)
    p = _check_binary(y_pred, "y_pred").astype(bool)
    _check_same_shape(y, p, "y_pred")

    tp, fp, fn = _label_counts(y, p)
    intersection = (y & p).sum(axis=1)
    union = (y | p).sum(axis=1)
    size_sum = y.sum(axis=1) + p.sum(axis=1)
    per_label_precision = _safe_ratio(tp, tp + fp)
    per_label_recall = _safe_ratio(tp, tp + fn)
    return {
        "acc": float(_safe_ratio(intersection, union).mean()),
        "hamming_loss": float((y != p).mean()),
        "micro_precision": float(_safe_ratio(tp.sum(), tp.sum() + fp.sum())),
        "micro_recall": float(_safe_ratio(tp.sum(), tp.sum() + fn.sum())),
        "micro_f1": float(_safe_ratio(2 * tp.sum(), 2 * tp.sum() + fp.sum() + fn.sum())),
        "macro_precision": float(per_label_precision.mean()),
        "macro_recall": float(per_label_recall.mean()),
        "macro_f1": float(_f1(tp, fp, fn).mean()),
        "subset_acc": float((y == p).all(axis=1).mean()),
        "example_f1": float(_safe_ratio(2 * intersection, size_sum).mean()),
    }


def per_label_f1(y_true, scores, threshold: float | np.ndarray = 0.25) -> np.ndarray:
    """F1 of every label (C,), 0 where a label is neither true nor predicted anywhere."""
    y, s = _check_pair(y_true, scores)
    p = s > _check_threshold(threshold, y.shape[1])
    return _f1(*_label_counts(y.astype(bool), p))


def tune_thresholds(y_true, scores, grid=None, default: float = 0.25) -> np.ndarray:
    """Per-label thresholds (C,) from ``grid`` that maximise each label's F1 on the given data.

    Pass validation data, never test data. Among thresholds with equal F1 the one closest to
    ``default`` wins, so a label without evidence (e.g. no positives in the data, where every
    threshold scores 0) keeps the default rather than drifting to an end of the grid.
    """
    y, s = _check_pair(y_true, scores)
    grid = np.asarray(DEFAULT_THRESHOLD_GRID if grid is None else grid, dtype=np.float64)
    if grid.ndim != 1 or grid.size == 0 or not np.all((grid > 0) & (grid < 1)):
        raise ValueError(f"grid must be a non-empty 1-D sequence of values in (0, 1), got {grid!r}")
    if not 0 < default < 1:
        raise ValueError(f"default must be in (0, 1), got {default}")
    truth = y.astype(bool)[None]  # (1, N, C)
    predicted = s[None] > grid[:, None, None]  # (G, N, C)
    tp = (predicted & truth).sum(axis=1)
    fp = (predicted & ~truth).sum(axis=1)
    fn = (~predicted & truth).sum(axis=1)
    f1 = _f1(tp, fp, fn)  # (G, C)
    # Lexicographic choice: highest F1 first, then smallest distance to the default.
    is_best = np.isclose(f1, f1.max(axis=0, keepdims=True), rtol=0, atol=1e-12)
    distance = np.where(is_best, np.abs(grid - default)[:, None], np.inf)
    return grid[distance.argmin(axis=0)]


def score_spread(scores) -> float:
    """How much the scores vary across samples: the mean over labels of their standard deviation.

    A degenerate model predicts (nearly) the same scores for every sample -- for instance
    the label prior, which a collapsed CARAT run reaches when its latents stop carrying
    anything about the input. Its micro-F1 can still look plausible (the prior-only
    predictor's), so the metrics alone do not show it; this number does: about 0 for a
    constant predictor, typically 0.1-0.3 for a model that uses its input. ``scores`` is
    (N, C) in [0, 1], N >= 1 (one sample has spread 0).
    """
    s = _check_scores(scores)
    return float(s.std(axis=0).mean())


def is_constant_predictor(scores, tol: float = CONSTANT_SCORE_TOL) -> bool:
    """True when NO label's scores vary across samples by more than ``tol`` (standard deviation).

    That is a run that ignores its input and predicts one score vector for everyone (a
    collapsed CARAT run predicts the label prior): flag it, whatever its micro-F1. A model
    that learnt even one label is not constant; ``score_spread`` gives the overall amount.
    """
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    s = _check_scores(scores)
    return bool(s.std(axis=0).max() <= tol)


def _check_scores(scores) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] == 0 or s.shape[1] == 0:
        raise ValueError(f"scores must be a non-empty (N, C) matrix, got shape {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or infinite values")
    return s


def _label_counts(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    tp = (y & p).sum(axis=0)
    fp = (~y & p).sum(axis=0)
    fn = (y & ~p).sum(axis=0)
    return tp, fp, fn


def _f1(tp, fp, fn) -> np.ndarray:
    return _safe_ratio(2 * tp, 2 * tp + fp + fn)


def _safe_ratio(numerator, denominator) -> np.ndarray:
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.zeros(np.broadcast(numerator, denominator).shape)
    return np.divide(numerator, denominator, out=out, where=denominator > 0)


def _check_pair(y_true, scores) -> tuple[np.ndarray, np.ndarray]:
    y = _check_binary(y_true, "y_true")
    s = np.asarray(scores, dtype=np.float64)
    _check_same_shape(y, s, "scores")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or infinite values")
    if s.min() < 0 or s.max() > 1:
        raise ValueError(f"scores must lie in [0, 1] (probabilities), got range [{s.min():.4g}, {s.max():.4g}]")
    return y, s


def _check_binary(a, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty (N, C) matrix, got shape {arr.shape}")
    if arr.dtype != bool and not np.isin(arr, (0, 1)).all():
        raise ValueError(f"{name} must contain only 0/1 values")
    return arr


def _check_same_shape(reference: np.ndarray, other: np.ndarray, name: str) -> None:
    if other.shape != reference.shape:
        raise ValueError(f"{name} has shape {other.shape}, y_true has shape {reference.shape}")


def _check_threshold(threshold, n_labels: int) -> np.ndarray:
    t = np.asarray(threshold, dtype=np.float64)
    if t.ndim == 0:
        t = np.full(n_labels, float(t))
    if t.shape != (n_labels,):
        raise ValueError(f"threshold must be a number or one per label ({n_labels},), got shape {t.shape}")
    if not np.all((t >= 0) & (t < 1)):
        raise ValueError(f"thresholds must lie in [0, 1), got {t.tolist()}")
    return t
