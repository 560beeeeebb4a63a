"""The options of a study run (``invoke ablate``, ``invoke tune``), declared once.

Each row of ``RUN_OPTIONS`` is one option: its name, default, help and whether it changes the
study (``STUDY``: the configuration, applied by :func:`apply_to_study`, part of the results'
identity where it changes them) or only how the command runs it (``RUN``: a field of
:class:`RunOptions`). The invoke tasks, their help, ``RunOptions`` and ``Study.with_options`` are
all made from this table, so adding an option is one row here (tests/harness/test_options.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, make_dataclass, replace
from pathlib import Path
from typing import Any

from harness.config import epochs_problem, precision_problem
from harness.studies import Study, StudyError
from models.presets import PRESETS, preset_problem

STUDY, RUN = "study", "run"


@dataclass(frozen=True)
class RunOption:
    name: str
    default: Any
    help: str
    target: str  # STUDY or RUN
    type: Any = None  # RUN: the type of the RunOptions field
    # STUDY: (the study as loaded, the study so far, the value) -> the study with it applied
    apply: Callable[[Study, Study, Any], Study] | None = field(default=None, repr=False)


def _dataset(original: Study, study: Study, name: str) -> Study:
    return replace(study, datasets=(study._narrowed_to(name),))


def _data_path(original: Study, study: Study, path: str) -> Study:
    if len(study.datasets) != 1:
        names = ", ".join(d.name for d in study.datasets)
        raise StudyError(f"--data-path needs --dataset: study {original.name!r} has several data sets ({names})")
    return replace(study, datasets=(replace(study.datasets[0], data_path=str(Path(path).expanduser().resolve())),))


def _seeds(original: Study, study: Study, count: int) -> Study:
    """The first ``count`` seeds of the file's list; beyond it, further seeds follow its largest one."""
    if count < 1:
        raise StudyError(f"--seeds must be >= 1, got {count}")
    seeds = original.seeds
    extra = tuple(range(max(seeds) + 1, max(seeds) + 1 + count - len(seeds)))
    return replace(study, seeds=(seeds + extra)[:count])


def _epochs(original: Study, study: Study, epochs: int) -> Study:
    if problem := epochs_problem(epochs):
        raise StudyError(f"--epochs {problem}")
    return replace(study, epochs=epochs)


def _trials(original: Study, study: Study, trials: int) -> Study:
    if trials < 0:
        raise StudyError(f"--trials must be >= 0, got {trials}")
    return replace(study, trials=trials)


def _preset(original: Study, study: Study, preset: str) -> Study:
    if problem := preset_problem(preset):
        raise StudyError(f"--preset: {problem}")
    return replace(study, preset=preset)


def _precision(original: Study, study: Study, precision: str) -> Study:
    if problem := precision_problem(precision):
        raise StudyError(f"--precision: {problem}")
    return replace(study, overrides={**study.overrides, "precision": precision})  # part of the configuration


def _quick(original: Study, study: Study, quick: bool) -> Study:
    return study.as_quick() if quick else study


RUN_OPTIONS: tuple[RunOption, ...] = (
    RunOption(
        "dataset",
        None,
        "run on this data set only: one of the study's, or a loader name instead (see `invoke data --help`)",
        STUDY,
        apply=_dataset,
    ),
    RunOption(
        "data_path", None, "folder (or file) holding the data set's files (with one data set)", STUDY, apply=_data_path
    ),
    RunOption(
        "seeds",
        None,
        "number of seeds: the study's first N, extended with further seeds beyond its list (default: all)",
        STUDY,
        apply=_seeds,
    ),
    RunOption(
        "epochs", None, "epochs per training run (default: the study's, else the preset's)", STUDY, apply=_epochs
    ),
    RunOption("trials", None, "Optuna tuning budget per variant (default: the study's)", STUDY, apply=_trials),
    RunOption(
        "preset",
        None,
        f"model/training preset: {' or '.join(PRESETS)} (default: the study's; see models/presets.py)",
        STUDY,
        apply=_preset,
    ),
    RunOption(
        "device",
        "cpu",
        "cpu (default), auto, cuda (every GPU, workers dealt round-robin) or a list like cuda:0,cuda:2",
        RUN,
        str,
    ),
    RunOption(
        "precision",
        None,
        "fp32 (reproducible on CPU), bf16 (autocast; losses, SupCon, prototypes, queue in fp32) or auto "
        "(bf16 where the device supports it) (default: the study's, else fp32)",
        STUDY,
        apply=_precision,
    ),
    RunOption(
        "workers", 1, "local worker processes, sharing the CPU threads or the --device GPUs (default 1)", RUN, int
    ),
    RunOption(
        "storage",
        None,
        "Optuna storage: postgresql://... or a journal file path (default runs/optuna.journal)",
        RUN,
        str | None,
    ),
    RunOption(
        "tracking_uri",
        None,
        "MLflow tracking URI: http://host:port, postgresql://..., sqlite:///... (default runs/mlflow.db)",
        RUN,
        str | None,
    ),
    RunOption(
        "quick",
        False,
        "smoke test: tiny data, 1 epoch, 2 seeds, in its own experiment <study>.quick; explicit options win",
        STUDY,
        apply=_quick,
    ),
    RunOption(
        "keep_checkpoints",
        False,
        "keep each finished run's last checkpoint (default: deleted once the run is in MLflow)",
        RUN,
        bool,
    ),
    RunOption(
        "checkpoint_dir",
        None,
        "where runs keep their per-epoch checkpoints (default runs/checkpoints)",
        RUN,
        str | None,
    ),
    RunOption("verbose", False, "show Optuna's and MLflow's INFO logs", RUN, bool),
    RunOption(
        "until_settled",
        False,
        "after the study's seeds, add 5 seeds a round until every comparison with the reference on test "
        "micro-F1 is settled (better, worse or equivalent; O'Brien-Fleming group-sequential) or --max-seeds",
        RUN,
        bool,
    ),
    RunOption("max_seeds", 30, "with --until-settled: the most seeds it goes up to (default 30)", RUN, int),
)
RUN_HELP = {option.name: option.help for option in RUN_OPTIONS}

# How a run is carried out: the RUN options, plus what the command (not the user) decides.
RunOptions = make_dataclass(
    "RunOptions",
    [(o.name, o.type, field(default=o.default)) for o in RUN_OPTIONS if o.target == RUN]
    + [
        ("progress", bool, field(default=True)),  # progress bars
        ("tune_only", bool, field(default=False)),  # `invoke tune`: the search alone, no repeats
    ],
    frozen=True,
)
RunOptions.__module__ = __name__  # pickled into worker processes by reference: harness.options.RunOptions
RunOptions.__doc__ = "How a study is run (device, workers, stores, checkpoints, logs): the RUN options of RUN_OPTIONS."


def apply_to_study(study: Study, **values) -> Study:
    """``study`` with the STUDY options applied (each None leaves the file's value).

    ``quick`` first shrinks the study to a smoke test; options given explicitly then win over
    its defaults (``--quick --seeds 3`` runs 3 seeds, ``--quick --epochs 2`` two epochs)."""
    options = {o.name: o for o in RUN_OPTIONS if o.target == STUDY}
    unknown = sorted(set(values) - set(options))
    if unknown:
        raise TypeError(f"unknown study option(s) {unknown}; valid: {', '.join(options)}")
    ordered = sorted(options.values(), key=lambda o: o.name != "quick")  # quick first: the others win over it
    result = study
    for option in ordered:
        value = values.get(option.name)
        if value is not None and value is not False:
            result = option.apply(study, result, value)
    return result


def split(values: dict) -> tuple[dict, dict]:
    """Command-line values -> (STUDY option values, RUN option values)."""
    targets = {o.name: o.target for o in RUN_OPTIONS}
    return (
        {k: v for k, v in values.items() if targets[k] == STUDY},
        {k: v for k, v in values.items() if targets[k] == RUN},
    )


__all__ = ["RUN", "RUN_HELP", "RUN_OPTIONS", "STUDY", "RunOption", "RunOptions", "apply_to_study", "split"]
