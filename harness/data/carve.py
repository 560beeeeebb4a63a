"""Validation carved from the training split: stratified over the labels, seeded per run.

Files without a validation split (MULAN ARFF pairs such as emotions, ``.npz`` files with
only train and test) get one carved from their training split. Two choices matter:

* **Stratified.** With a few hundred samples and labels of 10-30 % prevalence, a plain
  random 20 % can leave a label with half its share (or none) in validation, and the
  best-epoch choice then follows that label's noise. Iterative stratification (Sechidis,
  Tsoumakas, Vlahavas, ECML PKDD 2011; the ``iterative-stratification`` package) keeps
  every label's share in validation close to its share in training.
* **Seeded by the run.** The loaders take ``split_seed``; a study runner passes each
  run's seed, so repeats differ in their validation split as well as in their weights,
  and deterministic baselines (kNN, BR...) show a real spread instead of zero. The same
  ``split_seed`` always gives the same split.

A loader that carves lists ``split_seed`` among its options (``harness.data.describe()``);
that is how a runner decides whether to pass one.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np
from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

from harness.data.dataset import DataFormatError

SPLIT_SEED_OPTION = "split_seed"  # the option name that marks a loader as carving
DEFAULT_VALID_FRACTION = 0.2
DEFAULT_SPLIT_SEED = 0


@dataclass(frozen=True)
class Carve:
    """Row indices (sorted, into the original training rows) of the two carved parts."""

    train: np.ndarray
    valid: np.ndarray
    valid_fraction: float
    split_seed: int

    def notes(self) -> dict:
        """What ``dataset.notes`` records about the carve (nothing about a split is implicit)."""
        return {
            "valid_split": "carved from train (iterative multi-label stratification)",
            "valid_fraction": self.valid_fraction,
            "split_seed": self.split_seed,
            "carved_sizes": {"train": int(len(self.train)), "valid": int(len(self.valid))},
        }


def check_options(valid_fraction, split_seed) -> tuple[float, int]:
    """The two carve options, validated (one clear ValueError naming the option)."""
    if isinstance(valid_fraction, bool) or not isinstance(valid_fraction, numbers.Real):
        raise ValueError(f"valid_fraction must be a number in (0, 1), got {valid_fraction!r}")
    if not 0.0 < float(valid_fraction) < 1.0:
        raise ValueError(f"valid_fraction must be in (0, 1), got {valid_fraction}")
    if isinstance(split_seed, bool) or not isinstance(split_seed, numbers.Integral) or split_seed < 0:
        raise ValueError(f"split_seed must be a non-negative int, got {split_seed!r}")
    return float(valid_fraction), int(split_seed)


def carve_validation(labels: np.ndarray, valid_fraction: float, split_seed: int, source) -> Carve:
    """Split the training rows into (train, valid), stratified over the labels of ``labels`` (N, C).

    The validation part has exactly ``round(valid_fraction * N)`` rows: iterative
    stratification places whole samples greedily, label by label, and can miss the size
    by a few rows (73 instead of 78 on emotions for one seed); those few rows are then
    moved one at a time, each time the row whose move keeps the validation label counts
    closest to their target. So every seed gives the same split sizes, and runs compare.
    Refused, naming ``source`` and split train, when either part would be empty.
    """
    valid_fraction, split_seed = check_options(valid_fraction, split_seed)
    y = np.asarray(labels) >= 0.5
    n = y.shape[0]
    n_valid = int(round(valid_fraction * n))
    if not 1 <= n_valid < n:
        raise DataFormatError(source, "train", f"cannot carve a validation share {valid_fraction} from {n} rows")
    if y.shape[1] == 1:
        # The stratifier wants a multi-label indicator matrix: one label and its complement.
        y = np.concatenate([y, ~y], axis=1)
    splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=n_valid, random_state=split_seed)
    _, valid = next(splitter.split(np.zeros((n, 1)), y.astype(np.int64)))
    in_valid = np.zeros(n, dtype=bool)
    in_valid[valid] = True
    _fix_size(in_valid, y.astype(np.float64), n_valid, valid_fraction)
    return Carve(
        train=np.flatnonzero(~in_valid),
        valid=np.flatnonzero(in_valid),
        valid_fraction=valid_fraction,
        split_seed=split_seed,
    )


def _fix_size(in_valid: np.ndarray, y: np.ndarray, n_valid: int, valid_fraction: float) -> None:
    """Move rows between the parts (in place) until validation has ``n_valid`` rows.

    Each move takes the row whose move leaves the validation label counts closest (squared
    error) to ``valid_fraction`` of each label's total; ties go to the lowest row index, so
    the result is a function of the stratifier's output alone.
    """
    target = valid_fraction * y.sum(axis=0)
    while in_valid.sum() != n_valid:
        grow = in_valid.sum() < n_valid
        candidates = np.flatnonzero(~in_valid if grow else in_valid)
        counts = y[in_valid].sum(axis=0)
        moved = counts + y[candidates] if grow else counts - y[candidates]
        best = candidates[np.argmin(((moved - target) ** 2).sum(axis=1))]
        in_valid[best] = grow
