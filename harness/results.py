"""Results, read back from MLflow: the one source of every number the harness prints.

MLflow is the home of results. Optuna only schedules work and keeps the tuning objective,
so the command-line summary, the report and the checks that run each unit exactly once
all read results here, through :func:`runs`: one row per MLflow run with its id, name,
status and start time, the tags the runner sets, every metric's latest value and every
parameter as ``params.NAME``, and the data it read (its MLflow dataset input: ``input_digest``,
``input_profile`` as JSON text with the split sizes). A unit's result is its FINISHED ``phase=repeat`` run
(:func:`finished`); summary runs (``phase=summary``) are aggregates, never results.
"""

from __future__ import annotations

import pandas as pd
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from harness import keys
from harness.studies import DEFAULT_SETTING

TAGS = keys.READ_TAGS
UNIT = list(keys.UNIT)  # with config_hash: what makes a unit's result
PAGE = 1000


def experiment_names(client: MlflowClient) -> list[str]:
    """Every live experiment in the store, except an empty MLflow 'Default'."""
    names, token = [], None
    while True:
        page = client.search_experiments(max_results=PAGE, page_token=token)
        for experiment in page:
            if experiment.name == "Default" and not _search(client, experiment.experiment_id, max_results=1):
                continue
            names.append(experiment.name)
        token = page.token
        if not token:
            return sorted(names)


def runs(client: MlflowClient, experiment: str, filter_string: str = "") -> pd.DataFrame:
    """Every live run of the experiment ``experiment`` (none if it does not exist), as a table."""
    found = client.get_experiment_by_name(experiment)
    return _table(_search(client, found.experiment_id, filter_string=filter_string) if found else [])


def finished(table: pd.DataFrame, config_hashes=None) -> pd.DataFrame:
    """The result of every unit: its FINISHED repeat run (the latest, should a unit have been run
    twice), of the given configurations (all when None)."""
    done = table[(table[keys.PHASE] == keys.REPEAT) & (table["status"] == "FINISHED")]
    if config_hashes is not None:
        done = done[done[keys.CONFIG_HASH].isin(list(config_hashes))]
    return done.sort_values("start_time").drop_duplicates([*UNIT, keys.CONFIG_HASH], keep="last")


def has_finished_run(client: MlflowClient, experiment: str, unit: dict) -> bool:
    """Whether the unit (variant, dataset, setting, seed, config_hash) has a FINISHED repeat run: one
    filtered query, cheap whatever the size of the experiment."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return False
    conditions = [f"tags.{k} = '{unit[k]}'" for k in (*UNIT, keys.CONFIG_HASH)]
    query = " and ".join([*conditions, f"tags.{keys.PHASE} = '{keys.REPEAT}'", "attributes.status = 'FINISHED'"])
    return bool(_search(client, found.experiment_id, max_results=1, filter_string=query))


def _search(client: MlflowClient, experiment_id: str, max_results: int | None = None, filter_string: str = "") -> list:
    found, token = [], None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string=filter_string,
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=max_results or PAGE,
            page_token=token,
        )
        found.extend(page)
        token = page.token
        if not token or max_results:
            return found


def _table(found: list) -> pd.DataFrame:
    rows = []
    for run in found:
        tags = run.data.tags
        rows.append(
            {
                "run_id": run.info.run_id,
                "run_name": run.info.run_name,
                "status": run.info.status,
                "start_time": run.info.start_time,
                **{tag: tags.get(tag) for tag in TAGS},
                **_input(run),
                **run.data.metrics,
                **{f"params.{k}": v for k, v in run.data.params.items()},
            }
        )
    empty = ["run_id", "run_name", "status", "start_time", *TAGS, "input_digest", "input_profile"]
    table = pd.DataFrame(rows, columns=None if rows else empty)
    table["seed"] = pd.to_numeric(table["seed"], errors="coerce").astype("Int64")
    table["setting"] = table["setting"].fillna(DEFAULT_SETTING)
    # Runs tracked before the kinds were their own tag: the same kinds, from the reasons.
    table[keys.DEGENERATE_KINDS] = [
        kinds if isinstance(kinds, str) else keys.degenerate_kinds(reasons)
        for kinds, reasons in zip(table[keys.DEGENERATE_KINDS], table[keys.DEGENERATE])
    ]
    return table


def _input(run) -> dict:
    """The run's (first) dataset input: its content digest and profile (JSON text), None when it has none."""
    inputs = run.inputs.dataset_inputs if run.inputs is not None else []
    dataset = inputs[0].dataset if inputs else None
    return {"input_digest": getattr(dataset, "digest", None), "input_profile": getattr(dataset, "profile", None)}
