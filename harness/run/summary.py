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
    tune_studies: dict = field(default_factory=dict)  # (variant, data set) -> its Optuna study name
    tune_only: bool = False  # `invoke tune`: the search alone, no repeats

    @property
    def ok(self) -> bool:
        return not self.failed and not self.missing


def metric_columns(table) -> list[str]:
    return [c for c in table.columns if c.startswith(keys.TEST_PREFIX)]


def outcome_of(plan: Plan, table) -> Outcome:
    """What the tracking store holds for the plan's repeat units (the one source of results)."""
    study = plan.study
    outcome = Outcome(study=study.name, experiment=study.experiment, tracking_uri=plan.tracking_uri)
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
    return outcome
