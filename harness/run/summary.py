"""The outcome of a command, read from MLflow through ``harness.results``: the one source of results."""

from __future__ import annotations

from dataclasses import dataclass, field

from harness import keys, results
from harness.run.plan import Plan


@dataclass
class Outcome:
    study: str
    experiment: str
    tracking_uri: str
    finished: list[dict] = field(default_factory=list)  # one row per finished repeat unit, with test metrics
    failed: list[dict] = field(default_factory=list)  # units whose latest attempt failed, with the reason
    missing: list[dict] = field(default_factory=list)  # units with no finished run
    ran: int = 0  # units trained by this command
    reference: str | None = None  # the variant the others are compared with
    equivalence_margin: float | None = None
    verdicts: list[str] = field(default_factory=list)  # one line per comparison on the main metric
    settled: str = ""  # --until-settled: how many seeds it took, and whether every comparison settled
    tune_studies: dict = field(default_factory=dict)  # (variant, data set) -> its Optuna study name
    tune_only: bool = False  # `invoke tune`: the search alone, no repeats

    @property
    def ok(self) -> bool:
        return not self.failed and not self.missing


MAIN_METRIC = keys.MICRO_F1  # the metric a study's verdict lines and --until-settled are about


def families(finished: list[dict], reference: str | None) -> list[tuple[str, dict[str, dict[int, float]]]]:
    """The main metric's Holm families: per data set and setting, ``(where, {variant: {seed: value}})``
    with the reference first; ``where`` names the data set and setting where there are several."""
    import pandas as pd

    column = f"{keys.TEST_PREFIX}{MAIN_METRIC}"
    if not finished or reference is None:
        return []
    table = pd.DataFrame(finished)
    several = {key: table[key].nunique() > 1 for key in ("dataset", "setting")}
    out = []
    for (dataset, setting), rows in table.groupby(["dataset", "setting"], sort=False):
        values = {v: dict(zip(r["seed"].astype(int), r[column].astype(float))) for v, r in rows.groupby("variant")}
        if reference not in values or len(values) < 2:
            continue
        where = " / ".join(part for part, key in ((dataset, "dataset"), (setting, "setting")) if several[key])
        others = [v for v in rows["variant"].unique() if v != reference]
        out.append((where, {reference: values[reference], **{v: values[v] for v in others}}))
    return out


def main_comparisons(finished: list[dict], reference: str | None, margin: float) -> list[tuple[str, object]]:
    """(where, Comparison) per variant against the reference on the main test metric (``families``)."""
    from harness.verdicts import compare_seeds

    return [
        (where, c)
        for where, values in families(finished, reference)
        for c in compare_seeds(values, MAIN_METRIC, reference, margin)
    ]


def verdict_lines(comparisons) -> list[str]:
    from harness.metrics import METRIC_TITLES
    from harness.verdicts import verdict_line

    return [f"{where}: " * bool(where) + verdict_line(c, METRIC_TITLES[c.metric]) for where, c in comparisons]


def metric_columns(table) -> list[str]:
    return [c for c in table.columns if c.startswith(keys.TEST_PREFIX)]


def outcome_of(plan: Plan, table) -> Outcome:
    """What the tracking store holds for the plan's repeat units (the one source of results)."""
    study = plan.study
    outcome = Outcome(
        study=study.name,
        experiment=study.experiment,
        tracking_uri=plan.tracking_uri,
        reference=study.compared_with,
        equivalence_margin=study.margin,
    )
    outcome.tune_studies, outcome.tune_only = plan.tune_queue_names(), plan.options.tune_only
    if plan.options.tune_only:
        return outcome
    done = results.finished(table, plan.config_hashes.values()).set_index([*keys.UNIT, keys.CONFIG_HASH])
    failed_runs = table[(table[keys.PHASE] == keys.REPEAT) & (table["status"] == "FAILED")].sort_values("start_time")
    reasons = {}
    for r in failed_runs.itertuples():
        reasons[(r.variant, r.dataset, r.setting, int(r.seed), r.config_hash)] = r.failure_reason or "unknown"
    for unit in plan.repeat_units():
        row = {"variant": unit.variant, "dataset": unit.dataset, "setting": unit.setting, "seed": unit.seed}
        if unit.key in done.index:
            found = done.loc[unit.key]
            flags = (keys.DEGENERATE, keys.DEGENERATE_KINDS)
            metrics = {k: found[k] for k in found.index if str(k).startswith(keys.TEST_PREFIX) or k in flags}
            outcome.finished.append({**row, "run_id": found["run_id"], **metrics})
        elif unit.key in reasons:
            outcome.failed.append({**row, "reason": reasons[unit.key]})
        else:
            outcome.missing.append(row)
    outcome.verdicts = verdict_lines(main_comparisons(outcome.finished, outcome.reference, study.margin))
    return outcome
