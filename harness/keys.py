"""The names the MLflow write side (``harness.run``, ``harness.tracking``) and the read side
(``harness.results``, ``reports``, the command's summary) must agree on: tags, phases, metric keys.

A name used by both sides is spelled here once; adding a run tag is one line in ``RUN_TAGS``
(written by the runner, read into every results table).
"""

from __future__ import annotations

# -- phases: the ``phase`` tag of a run ----------------------------------------------------------
PHASE = "phase"
TUNE = "tune"  # an Optuna trial: tuning only, never a result
REPEAT = "repeat"  # a seeded repeat at the chosen parameters: a unit's result
SUMMARY = "summary"  # mean/std/n over a configuration's finished seeds: an aggregate, never a result

# -- tags ------------------------------------------------------------------------------------------
CONFIG_HASH = "config_hash"
DEVICE = "device"  # where the run trained: cpu or cuda:N (its worker's placement, harness.devices)
GPU_NAME = "gpu_name"  # that GPU's model name, "none" on the CPU
FAILURE_REASON = "failure_reason"
DEGENERATE = "degenerate"  # the reasons a result is no finding, as a sentence ("; "-separated)
DEGENERATE_KINDS = "degenerate_kinds"  # the same reasons as short kinds ("; "-separated): what to group on
RESUMED_FROM_EPOCH = "resumed_from_epoch"
OPTUNA_TRIAL = "optuna_trial"
OPTUNA_STUDY = "optuna_study"
UNIT = ("variant", "dataset", "setting", "seed")  # with config_hash: what makes a unit's result
# Experiment tag: the phases the last command on a study planned ("tune", "repeat" or "tune repeat"),
# so that the report does not call the absent repeats of a tune-only study missing.
PLANNED_PHASES = "planned_phases"

# Tags every training run is created with (``storage`` is for a person to read, not read back).
STORAGE = "storage"
RUN_TAGS = (
    "study",
    "variant",
    "dataset",
    "seed",
    PHASE,
    "setting",
    OPTUNA_TRIAL,
    OPTUNA_STUDY,
    CONFIG_HASH,
    "data_fingerprint",
    "code_version",
    STORAGE,
    DEVICE,
    GPU_NAME,
)
# Tags set when a run ends, where they apply.
OUTCOME_TAGS = (FAILURE_REASON, DEGENERATE, RESUMED_FROM_EPOCH, DEGENERATE_KINDS)
# What ``harness.results`` reads into every row of its tables.
READ_TAGS = (*(tag for tag in RUN_TAGS if tag != STORAGE), *OUTCOME_TAGS)

# -- experiment tags: how a study's results are judged (written by the runner, read by the report) ------
REFERENCE = "reference"  # the variant the others are compared with
EQUIVALENCE_MARGIN = "equivalence_margin"  # the ± band of an "equivalent" verdict
SEQUENTIAL_LOOKS = "sequential_looks"  # --until-settled: the seeds at each look so far ("5 10 15")
SEQUENTIAL_MAX_SEEDS = "sequential_max_seeds"  # --until-settled: the most seeds it may add up to

# -- metric keys -----------------------------------------------------------------------------------
MICRO_F1 = "micro_f1"  # the selection and tuning objective (validation), and the headline (test)
VAL_MICRO_F1 = f"val_{MICRO_F1}"
TEST_MICRO_F1 = f"test_{MICRO_F1}"
TEST_PREFIX = "test_"


def degenerate_kinds(reasons: str | None) -> str | None:
    """The short kinds of a ``degenerate`` sentence ("constant predictor (...); no better than ... (...)"
    -> "constant predictor; no better than ..."), for runs tracked before the trainer gave the kinds
    (``TrainResult.degenerate_kinds``) and the runner wrote them as their own tag."""
    if not isinstance(reasons, str) or not reasons:  # None, or NaN in a table
        return None
    return "; ".join(dict.fromkeys(part.split(" (")[0] for part in reasons.split("; ")))


def degenerate_tags(reasons: str | None, kinds: tuple[str, ...] = ()) -> dict[str, str]:
    """The tags of a result that is no finding (none for a result that is one): the sentence, and its
    kinds as the trainer gave them (read back from the sentence only where none are given)."""
    joined = "; ".join(kinds) if kinds else degenerate_kinds(reasons)
    return {DEGENERATE: reasons, DEGENERATE_KINDS: joined} if reasons and joined else {}
