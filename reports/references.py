"""Published figures shown beside our results: reported elsewhere, never re-run here.

They are hard-coded on purpose -- they are citations, not results of this project -- and
each row carries its source so a reader can check it. A value is a number or a
``(low, high)`` range (several reproductions of one script).
"""

from __future__ import annotations

from dataclasses import dataclass, field

Value = float | tuple[float, float]

MEKA_CITATION = (
    "MEKA 1.9.5, single train/test evaluation, threshold 0.5; results/*-emotions.log of "
    "henrygouk/meka-metric-learning (Gouk, Pfahringer, Cree, ACML 2016), "
    "as quoted in data/emotions/README.md"
)
ALIGNED_CITATION = "reproductions of the CARAT reference script on aligned CMU-MOSEI, one seed (CARAT.md section 5)"
UNALIGNED_CITATION = "published unaligned CMU-MOSEI figures, secondary source (CARAT.md section 8)"


@dataclass(frozen=True)
class ReferenceRow:
    method: str
    values: dict[str, Value] = field(default_factory=dict)  # metric key -> value or (low, high)
    source: str = ""


EMOTIONS = (
    ReferenceRow(
        "BR, 10-NN base learner (MEKA)",
        {
            "hamming_loss": 0.190,
            "acc": 0.586,
            "subset_acc": 0.332,
            "micro_f1": 0.706,
            "macro_f1": 0.697,
            "example_f1": 0.668,
        },
        MEKA_CITATION,
    ),
    ReferenceRow(
        "ECC, 50 chains, 10-NN (MEKA)",
        {
            "hamming_loss": 0.196,
            "acc": 0.573,
            "subset_acc": 0.366,
            "micro_f1": 0.691,
            "macro_f1": 0.680,
            "example_f1": 0.642,
        },
        MEKA_CITATION,
    ),
    ReferenceRow(
        "ML-kNN, threshold 0.4835 (MEKA)",
        {
            "hamming_loss": 0.195,
            "acc": 0.571,
            "subset_acc": 0.312,
            "micro_f1": 0.693,
            "macro_f1": 0.660,
            "example_f1": 0.657,
        },
        MEKA_CITATION,
    ),
)

MOSEI_ALIGNED = (
    ReferenceRow(
        "CARAT reference code (reproductions)", {"micro_f1": (0.565, 0.568), "acc": (0.475, 0.484)}, ALIGNED_CITATION
    ),
)

MOSEI_UNALIGNED = (
    ReferenceRow("CARAT (published)", {"micro_f1": 0.544}, UNALIGNED_CITATION),
    ReferenceRow("AMP (published)", {"micro_f1": 0.535}, UNALIGNED_CITATION),
    ReferenceRow("TAILOR (published)", {"micro_f1": 0.529}, UNALIGNED_CITATION),
)

_BY_DATASET = {"emotions": EMOTIONS, "mosei_aligned": MOSEI_ALIGNED, "mosei_unaligned": MOSEI_UNALIGNED}


def for_dataset(dataset: str | None) -> tuple[ReferenceRow, ...]:
    """The reference rows that apply to results on ``dataset`` (none for others)."""
    return _BY_DATASET.get(dataset or "", ())


def format_value(value: Value | None, digits: int = 3) -> str:
    if value is None:
        return ""
    if isinstance(value, tuple):
        return f"{value[0]:.{digits}f}–{value[1]:.{digits}f}"
    return f"{value:.{digits}f}"
