"""``--until-settled``: run a study's seeds, then add seeds in rounds until every comparison is settled.

Each round is one call of the orchestrator (``harness.run.orchestrate.run``) with the seeds
extended as ``--seeds N`` extends them, so finished runs are reused: an interrupted command
resumes where it stopped, and a re-run replays its earlier looks from MLflow without training
them again. After each round ``harness.sequential.settle`` re-reads every look so far from the
finished runs (it is stateless), per data set and setting, on the main metric (test micro-F1),
against the study's reference, under the O'Brien-Fleming group-sequential boundary for looks at
the study's seeds, then every ``ROUND`` more, the last at ``--max-seeds``. The looks so far are
recorded as experiment tags (``keys.SEQUENTIAL_LOOKS``) so the report can say how the verdict
was reached.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from harness import keys, tracking
from harness.options import RunOptions
from harness.run.orchestrate import run
from harness.run.summary import MAIN_METRIC, Outcome, families, main_comparisons
from harness.studies import Study, StudyError

ROUND = 5  # seeds added per look


def looks_for(start: int, max_seeds: int, round_size: int = ROUND) -> tuple[int, ...]:
    """The planned looks: at the study's seeds, then every ``round_size`` more, the last at ``max_seeds``."""
    if start < 2:
        raise StudyError(f"--until-settled needs at least 2 seeds to compare, got --seeds {start}")
    if max_seeds < start:
        raise StudyError(f"--max-seeds ({max_seeds}) must be at least the study's seeds ({start})")
    return (*range(start, max_seeds, round_size), max_seeds)


def run_study(study: Study, options: RunOptions, say: Callable[[str], None] = print) -> Outcome:
    """``invoke ablate``: the study once, or (``--until-settled``) in rounds until settled."""
    if not options.until_settled:
        return run(study, options)
    if options.tune_only:
        raise StudyError("--until-settled adds seeded repeats: use it with invoke ablate, not invoke tune")
    if len(study.variants) < 2:
        raise StudyError(f"--until-settled compares variants: study {study.name!r} has one ({study.variants[0]})")
    looks = looks_for(len(study.seeds), options.max_seeds)
    reference, margin = study.compared_with, study.margin
    ran = 0
    for k, n in enumerate(looks):
        seeds_study = study.with_options(seeds=n)
        outcome = run(seeds_study, options)
        ran += outcome.ran
        outcome.ran = ran
        if not outcome.ok:
            outcome.settled = f"until-settled stopped at {n} seeds: runs failed or are missing (see above)."
            return outcome
        _record_looks(outcome, looks[: k + 1], options.max_seeds)
        verdicts = sequential_verdicts(
            outcome.finished, seeds_study.seeds, looks[: k + 1], options.max_seeds, reference, margin
        )
        open_ = [name for name, v in verdicts.items() if not v.settled]
        say(_progress(k, n, options.max_seeds, verdicts))
        if not open_ or n == looks[-1]:
            break
    outcome.verdicts = _lines(outcome, verdicts, margin)
    state = "every comparison settled" if not open_ else f"{len(open_)} comparison(s) still open at the maximum"
    outcome.settled = (
        f"until-settled: {state} after {n} seeds ({k + 1} look(s): {', '.join(map(str, looks[: k + 1]))})."
    )
    return outcome


def sequential_verdicts(
    finished: list[dict], seeds: tuple[int, ...], looks: tuple[int, ...], max_seeds: int, reference: str, margin: float
) -> dict[str, object]:
    """``harness.sequential.settle`` per family of the main metric: {where+variant label: SequentialVerdict},
    over the paired differences of the first ``looks[-1]`` seeds in the study's seed order."""
    from harness.sequential import settle

    out = {}
    for where, values in families(finished, reference):
        base = values[reference]
        diffs = {
            v: [by_seed[s] - base[s] for s in seeds[: looks[-1]]] for v, by_seed in values.items() if v != reference
        }
        settled, _ = settle(diffs, looks, max_seeds, MAIN_METRIC, margin)
        out.update({_label(where, v): verdict for v, verdict in settled.items()})
    return out


def _label(where: str, variant: str) -> str:
    return f"{where}: {variant}" if where else variant


def _progress(k: int, n: int, max_seeds: int, verdicts: dict) -> str:
    parts = [f"{name} {v.verdict if v.settled else 'open'}" for name, v in verdicts.items()]
    return f"until-settled, look {k + 1} at {n} of at most {max_seeds} seeds: {', '.join(parts)}"


def _lines(outcome: Outcome, verdicts: dict, margin: float) -> list[str]:
    """The verdict lines with the sequential verdict in place of the fixed-sample one, and where it settled."""
    from harness.metrics import METRIC_TITLES
    from harness.verdicts import verdict_line

    lines = []
    for where, c in main_comparisons(outcome.finished, outcome.reference, margin):
        v = verdicts[_label(where, c.variant)]
        when = f"settled at {v.n_pairs} seeds" if v.settled else f"not settled by {v.n_pairs} seeds"
        line = verdict_line(replace(c, verdict=v.verdict), METRIC_TITLES[c.metric])
        lines.append(f"{where}: " * bool(where) + f"{line} [sequential: {when}]")
    return lines


def _record_looks(outcome: Outcome, looks: tuple[int, ...], max_seeds: int) -> None:
    """The looks so far as experiment tags: the report says a verdict was reached sequentially."""
    client = tracking.client_for(outcome.tracking_uri)
    experiment = client.get_experiment_by_name(outcome.experiment)
    client.set_experiment_tag(experiment.experiment_id, keys.SEQUENTIAL_LOOKS, " ".join(map(str, looks)))
    client.set_experiment_tag(experiment.experiment_id, keys.SEQUENTIAL_MAX_SEEDS, str(max_seeds))
