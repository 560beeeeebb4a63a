"""What a tuning study found, for the report and for ``invoke tune``'s last lines.

A tuning study of the harness is one Optuna study per (variant, data set), named
``<experiment>.<config_hash>.tune.<variant>`` (``runner.Plan.tune_queue_names``, and the tag
``optuna_study`` of every tuning run in MLflow). Its trials maximise the validation micro-F1; a
COMPLETE trial's value is that score at its kept epoch, a PRUNED one stopped early.

Everything here is a pure function of Optuna studies (or a storage URL and those names) and an
output folder: ``summarise`` reads one study, ``trials_table`` / ``best_params_table`` lay the
summaries out, ``figures`` draws Optuna's own optimisation history and parameter importances
(``optuna.visualization.matplotlib``, ``optuna.importance``), and ``answer_lines`` is what the
command prints: per variant and data set the best value and parameters, how many trials completed
or were pruned, and the commands to go on with.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

Key = tuple[str, str]  # (variant, data set)
IMPORTANCE_MIN_TRIALS = 2  # fANOVA needs two complete trials that differ


@dataclass(frozen=True)
class TuningSummary:
    """One Optuna study of a tuning run: its counts, its best trial and every trial."""

    variant: str
    dataset: str
    study_name: str
    counts: dict[str, int]  # trial state name (COMPLETE, PRUNED, FAIL, RUNNING, WAITING) -> trials
    best_trial: int | None  # its number; None without a complete trial
    best_value: float | None  # validation micro-F1 of the best trial
    best_params: dict = field(default_factory=dict)
    trials: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)  # number, state, value, params

    @property
    def n_complete(self) -> int:
        return self.counts.get("COMPLETE", 0)

    @property
    def n_pruned(self) -> int:
        return self.counts.get("PRUNED", 0)


@dataclass
class TuningSection:
    """What the report's tuning section shows, for one study."""

    summaries: dict[Key, TuningSummary]
    trials: pd.DataFrame  # trials_table
    best: pd.DataFrame  # best_params_table
    figures: dict[Key, dict[str, Path | str]]  # figures: paths, or why one was not drawn
    notes: list[str] = field(default_factory=list)  # studies named but absent from the storage


def build_section(storage, names: Mapping[Key, str], folder: Path | str) -> TuningSection:
    """The tuning section of a report: every named study of ``storage`` summarised, laid out and
    drawn into ``folder`` (``names`` as ``names_from_runs`` or ``Plan.tune_queue_names`` give them)."""
    studies = load_studies(storage, names)
    summaries = {key: summarise(study, *key) for key, study in studies.items()}
    notes = [
        f"No Optuna study {name!r} for {key[0]} on {key[1]} in the storage."
        for key, name in names.items()
        if key not in studies
    ]
    return TuningSection(
        summaries=summaries,
        trials=trials_table(summaries.values()),
        best=best_params_table(summaries.values()),
        figures=figures(studies, folder),
        notes=notes,
    )


def names_from_runs(runs: pd.DataFrame) -> dict[Key, str]:
    """(variant, data set) -> Optuna study name, from the ``optuna_study`` tag of the tuning runs
    of an MLflow runs frame (``harness.results.runs``), in first-seen order."""
    if runs.empty or "phase" not in runs or "optuna_study" not in runs:
        return {}
    tuning = runs[(runs["phase"] == "tune") & runs["optuna_study"].notna()]
    return dict(tuning.groupby(["variant", "dataset"], sort=False)["optuna_study"].first().items())


def load_studies(storage, names: Mapping[Key, str]) -> dict[Key, object]:
    """The named Optuna studies in ``storage`` (a URL or path as the harness takes it, or an
    Optuna storage); a name with no study in the store is left out."""
    import optuna

    from harness.storage import open_optuna_storage

    backend = open_optuna_storage(storage) if isinstance(storage, str) or storage is None else storage
    out = {}
    for key, name in names.items():
        try:
            out[key] = optuna.load_study(study_name=name, storage=backend)
        except KeyError:  # no such study: nothing was tuned under this configuration
            continue
    return out


def load(storage, names: Mapping[Key, str]) -> dict[Key, TuningSummary]:
    """Summaries of the named studies (see ``load_studies``)."""
    return {key: summarise(study, *key) for key, study in load_studies(storage, names).items()}


def summarise(study, variant: str, dataset: str) -> TuningSummary:
    """One Optuna study as a ``TuningSummary`` (maximised value: the validation micro-F1)."""
    trials = study.get_trials(deepcopy=False)
    counts: dict[str, int] = {}
    for trial in trials:
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    complete = [t for t in trials if t.state.name == "COMPLETE" and t.value is not None and math.isfinite(t.value)]
    best = max(complete, key=lambda t: (t.value, -t.number)) if complete else None  # ties: the earlier trial
    rows = [
        {"number": t.number, "state": t.state.name, "value": t.value, **{f"params.{k}": v for k, v in t.params.items()}}
        for t in trials
        if t.state.name in ("COMPLETE", "PRUNED")
    ]
    return TuningSummary(
        variant=variant,
        dataset=dataset,
        study_name=study.study_name,
        counts=counts,
        best_trial=best.number if best else None,
        best_value=float(best.value) if best else None,
        best_params=dict(best.params) if best else {},
        trials=pd.DataFrame(rows),
    )


def trials_table(summaries: Iterable[TuningSummary]) -> pd.DataFrame:
    """Every complete or pruned trial: variant, data set, number, state, value, its parameters, and
    whether it is its study's best."""
    frames = [
        s.trials.assign(variant=s.variant, dataset=s.dataset, best=s.trials["number"] == s.best_trial)
        for s in summaries
        if len(s.trials)
    ]
    if not frames:
        return pd.DataFrame(columns=["variant", "dataset", "number", "state", "value", "best"])
    table = pd.concat(frames, ignore_index=True)
    leading = ["variant", "dataset", "number", "state", "value", "best"]
    return table[leading + [c for c in table.columns if c not in leading]]


def best_params_table(summaries: Iterable[TuningSummary]) -> pd.DataFrame:
    """One row per variant and data set: the best trial, its validation micro-F1 and parameters,
    and the trial counts."""
    rows = [
        {
            "variant": s.variant,
            "dataset": s.dataset,
            "best_trial": s.best_trial,
            "best_val_micro_f1": s.best_value,
            "complete": s.n_complete,
            "pruned": s.n_pruned,
            **s.best_params,
        }
        for s in summaries
    ]
    return pd.DataFrame(rows)


def figures(studies: Mapping[Key, object], folder: Path | str) -> dict[Key, dict[str, Path | str]]:
    """Per (variant, data set): Optuna's optimisation history and parameter importances
    (``optuna.visualization.matplotlib``) written to ``folder`` as PNGs. Each entry maps
    "history" / "importances" to a path, or to a one-line reason it was not drawn."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as optuna_plots

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[Key, dict[str, Path | str]] = {}
    for (variant, dataset), study in studies.items():
        stem = _safe(f"{variant}_{dataset}")
        complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        drawn: dict[str, Path | str] = {}
        if not complete:
            drawn["history"] = drawn["importances"] = "no complete trial"
            out[variant, dataset] = drawn
            continue
        with _quiet(optuna):
            axes = optuna_plots.plot_optimization_history(study, target_name="validation micro-F1")
        drawn["history"] = _save(axes, folder / f"tuning_history_{stem}.png", plt)
        if len(complete) < IMPORTANCE_MIN_TRIALS or not complete[0].params:
            drawn["importances"] = f"needs {IMPORTANCE_MIN_TRIALS} complete trials with parameters"
        else:
            try:
                evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
                with _quiet(optuna):
                    axes = optuna_plots.plot_param_importances(study, evaluator=evaluator)
                drawn["importances"] = _save(axes, folder / f"tuning_importances_{stem}.png", plt)
            except (RuntimeError, ValueError) as exc:  # e.g. every complete trial has the same value
                drawn["importances"] = f"unavailable: {exc}"
        out[variant, dataset] = drawn
    return out


def importances(study) -> dict[str, float]:
    """Parameter importances (fANOVA, seeded) of a study with enough complete trials, else {}."""
    import optuna

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < IMPORTANCE_MIN_TRIALS:
        return {}
    try:
        return dict(
            optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)
            )
        )
    except (RuntimeError, ValueError):
        return {}


def answer_lines(
    summaries: Mapping[Key, TuningSummary],
    study: str,
    several_datasets: bool = False,
    extra_options: str = "",
    storage: str | None = None,
) -> list[str]:
    """What ``invoke tune`` prints at the end: per variant (and data set) the best trial's validation
    micro-F1 and the trial counts, its parameters one per line (``name = value``), then how to repeat
    at the best (``invoke ablate`` on the same study: its repeats use each variant's best parameters)
    and how to explore (``invoke dashboard``, on the Optuna studies named). ``study`` is what was
    passed to ``--study``; ``extra_options`` the options to repeat (``--quick``, ``--tracking-uri
    ...``); ``storage`` the ``--storage`` given."""
    lines = []
    if not summaries:
        return ["No tuning study of this configuration was found in the Optuna storage."]
    for (variant, dataset), s in summaries.items():
        where = f"{variant} on {dataset}" if several_datasets else variant
        counts = f"{s.n_complete} complete, {s.n_pruned} pruned"
        others = {k: v for k, v in s.counts.items() if k not in ("COMPLETE", "PRUNED") and v}
        if others:
            counts += ", " + ", ".join(f"{v} {k.lower()}" for k, v in sorted(others.items()))
        if s.best_trial is None:
            lines.append(f"{where}: no complete trial yet ({counts}; Optuna study {s.study_name})")
            continue
        lines.append(
            f"{where}: best validation micro-F1 {s.best_value:.4f} (trial {s.best_trial}; {counts}), parameters:"
        )
        lines += [f"    {k} = {_short(v)}" for k, v in s.best_params.items()] or ["    (no parameters)"]
    options = f" {extra_options.strip()}" if extra_options.strip() else ""
    store = f" --storage {storage}" if storage else ""
    lines += [
        f"  repeat at the best:  invoke ablate --study {study}{options}{store}   (its repeats use these parameters)",
        f"  explore the trials:  invoke dashboard{store}   (Optuna {_plural('study', summaries)} "
        f"{', '.join(s.study_name for s in summaries.values())})",
    ]
    return lines


@contextlib.contextmanager
def _quiet(optuna):
    """Optuna marks its matplotlib plots experimental; that warning says nothing about a report."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def _plural(word: str, items) -> str:
    return word if len(items) == 1 else word.removesuffix("y") + "ies"


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _save(axes, path: Path, plt) -> Path:
    figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in text)
