"""MLflow tracking: one experiment per study, one flat run per training run.

Uses ``MlflowClient`` (explicit run ids, no fluent global "active run"), logs in batches,
and always ends a run with a status: FINISHED, KILLED (pruned) or FAILED (with the reason
as the ``failure_reason`` tag). Per-epoch metrics sit at integer epoch steps; the kept
epoch's values are their own metrics (``best_epoch``, ``best_val_micro_f1``), so no curve
gets a second point. Each run records the data it read as an MLflow dataset input (name
and content digest, shown in the UI's Datasets column). After a command, one summary run
per (variant, data set, setting) carries mean, std and n of every test metric over the
finished seeds, tagged ``phase=summary`` so that it never counts as a result.
Reading results back is ``harness.results``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import tempfile
import time
from dataclasses import asdict, is_dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import yaml
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag, ViewType
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from harness import keys
from harness.storage import artifact_location, redact_text, split_credentials

FINAL_METRICS = (
    "acc",
    "hamming_loss",
    "micro_f1",
    "macro_f1",
    "micro_precision",
    "micro_recall",
    "macro_precision",
    "macro_recall",
    "subset_acc",
    "example_f1",
)
LATENT_SAMPLES = 400  # test samples kept for the t-SNE plot (enough for a readable picture)


def client_for(tracking_uri: str) -> MlflowClient:
    """A client for the store. Credentials in an http(s) URI (a server behind basic auth) are taken
    out of the URI, because MLflow echoes the server URI to stdout ("View run ... at: <uri>") after
    every run, and handed to MLflow the one way its public API takes them (see ``_basic_auth``)."""
    bare, username, password = split_credentials(tracking_uri)
    if urlsplit(tracking_uri).scheme in ("http", "https") and password is not None:
        _basic_auth(username or "", password)
        tracking_uri = bare
    return MlflowClient(tracking_uri=tracking_uri)


def _basic_auth(username: str, password: str) -> None:
    """The one place the harness writes MLflow's credentials into the environment. MLflow's public
    API has no credentials argument: its REST client reads ``MLFLOW_TRACKING_USERNAME`` and
    ``MLFLOW_TRACKING_PASSWORD`` from ``os.environ`` on every request (MLflow's documented way to
    reach a server behind basic auth), so they must stay set while the client is used (the
    alternative, a RestStore with its own credentials, is MLflow-internal API)."""
    os.environ["MLFLOW_TRACKING_USERNAME"] = username
    os.environ["MLFLOW_TRACKING_PASSWORD"] = password


def ensure_experiment(
    client: MlflowClient, tracking_uri: str, name: str, description: str = "", tags: dict | None = None
) -> str:
    """The id of the experiment ``name``, created (with a local artifact folder) if missing; its
    description (shown on the experiment page) and tags are set from the study."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            experiment_id = client.create_experiment(name, artifact_location=artifact_location(tracking_uri, name))
        except Exception:  # another worker created it first
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
            experiment_id = experiment.experiment_id
    else:
        experiment_id = experiment.experiment_id
    # "custom_model_development": MLflow 3's UI then opens the experiment on its runs table (model
    # training), not on its GenAI traces overview.
    wanted = {
        "mlflow.experimentKind": "custom_model_development",
        **(tags or {}),
        **({"mlflow.note.content": description} if description else {}),
    }
    current = experiment.tags if experiment is not None else {}
    for key, value in wanted.items():
        if current.get(key) != str(value):
            _retrying_races(lambda key=key, value=value: client.set_experiment_tag(experiment_id, key, str(value)))
    return experiment_id


# -- saved views of the MLflow UI ----------------------------------------------------------------
# The UI keeps its runs-table state (columns, grouping, filter) in the browser, not in the URL,
# but it opens a view shared as an experiment tag ``mlflow.sharedViewState.<key>`` when the URL
# says ``?viewStateShareKey=<key>`` (what its "Share" button writes). The harness writes two such
# views on every study's experiment, so ``invoke ui`` can print links that open the study ready to
# compare: no column picking by hand.
SHARED_VIEW_PREFIX = "mlflow.sharedViewState."
VIEW_METRICS = ("test_micro_f1", "test_macro_f1", "test_acc", "test_hamming_loss", "test_example_f1")


def _column(kind: str, key: str) -> str:
    return f"{kind}.`{key}`"  # the UI's canonical column key


def shared_views(several_datasets: bool) -> dict[str, dict]:
    """name -> view state: ``results`` (every finished repeat run, grouped by variant: the group rows
    show each variant's mean over seeds) and ``summaries`` (the summary runs: mean, std, n)."""
    unit = ["variant", *(["dataset"] if several_datasets else []), "setting", "seed"]
    results = {
        "searchFilter": f"tags.{keys.PHASE} = '{keys.REPEAT}' and attributes.status = 'FINISHED'",
        "orderByKey": _column("params", "variant"),
        "orderByAsc": True,
        "selectedColumns": [_column("attributes", "Dataset")]
        + [_column("params", k) for k in unit]
        + [_column("metrics", m) for m in (*VIEW_METRICS, "best_epoch", "test_score_spread")]
        + [_column("tags", keys.DEGENERATE)],
        "groupBy": {
            "aggregateFunction": "average",
            "groupByKeys": [{"mode": "param", "groupByData": k} for k in unit[: 1 + several_datasets]],
        },
        "runsHiddenMode": "SHOW_ALL",
    }
    summaries = {
        "searchFilter": f"tags.{keys.PHASE} = '{keys.SUMMARY}'",
        "orderByKey": _column("params", "variant"),
        "orderByAsc": True,
        "selectedColumns": [_column("params", k) for k in unit[:-1]]
        + [_column("metrics", "n_seeds")]
        + [_column("metrics", f"{m}_{s}") for m in VIEW_METRICS for s in ("mean", "std")],
        "groupBy": None,
        "runsHiddenMode": "SHOW_ALL",
    }
    return {"results": results, "summaries": summaries}


def view_tags(several_datasets: bool = False) -> dict[str, str]:
    """The experiment tags holding the shared views (key: a hash of the view, so a change is a new key)."""
    out = {}
    for name, state in shared_views(several_datasets).items():
        body = json.dumps(state, sort_keys=True)
        key = f"harness-{name}-{hashlib.sha1(body.encode()).hexdigest()[:8]}"
        out[f"{SHARED_VIEW_PREFIX}{key}"] = body
    return out


def view_links(experiment, ui_url: str) -> dict[str, str]:
    """Links that open an experiment's shared views in the UI at ``ui_url``."""
    base = f"{ui_url.rstrip('/')}/#/experiments/{experiment.experiment_id}/runs"
    links = {}
    for tag in experiment.tags:
        if tag.startswith(f"{SHARED_VIEW_PREFIX}harness-"):
            key = tag.removeprefix(SHARED_VIEW_PREFIX)
            links[key.split("-")[1]] = f"{base}?viewStateShareKey={key}"
    return links


def _retrying_races(call, attempts: int = 4) -> None:
    """Run an MLflow write that its stores implement as check-then-insert (a dataset, an experiment
    tag): machines writing the same row at the same moment collide on its unique key, and the
    loser's retry finds the row there and updates it."""
    for attempt in range(attempts):
        try:
            call()
            return
        except MlflowException:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


class TrackedRun:
    """One MLflow run for one training run; use as a context manager."""

    def __init__(self, client: MlflowClient, experiment_id: str, run_name: str, tags: dict):
        self.client = client
        self.run = client.create_run(experiment_id, run_name=run_name, tags={k: str(v) for k, v in tags.items()})
        self.run_id = self.run.info.run_id
        self._ended = False

    def log_params(self, params: dict) -> None:
        flat = _flatten(params)
        items = [Param(k, str(v)[:6000]) for k, v in sorted(flat.items())]
        for start in range(0, len(items), 100):  # MLflow accepts at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[start : start + 100])

    def log_epoch(self, epoch: int, row: dict) -> None:
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, int(epoch)) for k, v in row.items() if k != "epoch" and np.isfinite(v)]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def log_dataset(self, name: str, digest: str, source: str, profile: dict) -> None:
        """The data this run read, as an MLflow dataset input (the UI's Datasets column)."""
        dataset = Dataset(
            name=name,
            digest=digest[:36],
            source_type="harness",
            source=json.dumps({"source": source}),
            profile=json.dumps(profile),
        )
        inputs = [DatasetInput(dataset, [InputTag("mlflow.data.context", "train")])]
        _retrying_races(lambda: self.client.log_inputs(self.run_id, inputs))

    def log_metrics(self, values: dict) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, 0) for k, v in values.items()])

    def set_tags(self, tags: dict) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_result(self, result, label_names, modality_names, config: dict, keep_latents: bool) -> None:
        """Final metrics (one batch, at step 0) and the artifacts: resolved config, test
        predictions, per-epoch history and, where asked, test latents for the t-SNE plot."""
        now = int(time.time() * 1000)
        values = {f"test_{k}": result.test_metrics[k] for k in FINAL_METRICS}
        values.update({f"test_f1_{name}": f1 for name, f1 in zip(label_names, result.test_per_label_f1)})
        values.update(
            best_val_micro_f1=result.val_metrics[keys.MICRO_F1],
            best_epoch=result.best_epoch,
            train_seconds=result.train_seconds,
            n_parameters=result.n_parameters,
        )
        values.update(result.diagnostics)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, 0) for k, v in values.items()])
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            (folder / "config.yaml").write_text(yaml.safe_dump(_plain(config), sort_keys=True))
            np.savez_compressed(
                folder / "predictions.npz",
                scores=result.test_scores.astype(np.float32),
                labels=result.test_labels.astype(np.uint8),
                thresholds=result.thresholds,
                label_names=np.array(label_names),
            )
            with open(folder / "history.csv", "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(result.history[0]))
                writer.writeheader()
                writer.writerows(result.history)
            if keep_latents and result.latents is not None:
                keep = np.arange(min(LATENT_SAMPLES, len(result.latents)))
                np.savez_compressed(
                    folder / "latents.npz",
                    z=result.latents[keep].astype(np.float16),  # (n, M, C, dz)
                    labels=result.test_labels[keep].astype(np.uint8),
                    label_names=np.array(label_names),
                    modality_names=np.array(modality_names),
                )
            self.client.log_artifacts(self.run_id, str(folder))

    def end(self, status: str = "FINISHED", reason: str | None = None) -> None:
        if self._ended:
            return
        if reason:
            self.client.set_tag(self.run_id, keys.FAILURE_REASON, redact_text(reason)[:5000])
        self.client.set_terminated(self.run_id, status)
        self._ended = True

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        # A run must never be left RUNNING: an exception the caller did not handle fails it.
        if kind is not None:
            self.end("FAILED", f"{kind.__name__}: {exc}")
        else:
            self.end("FINISHED")
        return False


def fail_runs_of_trial(client: MlflowClient, experiment_id: str, study_name: str, trial_number: int, reason: str):
    """End FAILED the run(s) of an Optuna trial that will never complete (its worker died).

    Runs are found by the tags they are created with, so this also catches a run whose worker
    died before the trial recorded the run's id, and one ended FINISHED just before the trial
    would have completed: only a COMPLETE trial makes its run count."""
    found = client.search_runs(
        [experiment_id], filter_string=f"tags.{keys.OPTUNA_TRIAL} = '{int(trial_number)}'", run_view_type=ViewType.ALL
    )
    for run in found:
        if run.data.tags.get(keys.OPTUNA_STUDY) == study_name and run.info.status in ("RUNNING", "FINISHED"):
            client.set_tag(run.info.run_id, keys.FAILURE_REASON, redact_text(reason))
            client.set_terminated(run.info.run_id, "FAILED")


def write_summaries(client: MlflowClient, experiment_id: str, finished: pd.DataFrame, metrics: list[str]) -> int:
    """One summary run per (config, variant, data set, setting) with the mean, std (sample, ddof 1)
    and n of every test metric over its finished seeds; returns how many were written or updated.

    Tagged ``phase=summary`` (never a result: ``harness.results`` reads only repeat runs), and
    named like the runs it summarises, so MLflow's runs table grouped by variant reads like the
    paper's table. An existing summary run is updated: its values are logged again at step n."""
    if finished.empty:
        return 0
    existing = {
        (
            r.data.tags.get(keys.CONFIG_HASH),
            r.data.tags.get("variant"),
            r.data.tags.get("dataset"),
            r.data.tags.get("setting"),
        ): r.info.run_id
        for r in client.search_runs([experiment_id], f"tags.{keys.PHASE} = '{keys.SUMMARY}'", max_results=10_000)
    }
    written = 0
    for (config, variant, dataset, setting), group in finished.groupby(
        [keys.CONFIG_HASH, "variant", "dataset", "setting"]
    ):
        n = len(group)
        now = int(time.time() * 1000)
        values = {"n_seeds": n}
        for metric in metrics:
            column = pd.to_numeric(group.get(metric), errors="coerce")
            if column is None or column.isna().all():
                continue
            values[f"{metric}_mean"] = column.mean()
            if n > 1:
                values[f"{metric}_std"] = column.std(ddof=1)
        run_id = existing.get((config, variant, dataset, setting))
        if run_id is None:
            tags = {
                keys.PHASE: keys.SUMMARY,
                "variant": variant,
                "dataset": dataset,
                "setting": setting,
                keys.CONFIG_HASH: config,
                "study": group["study"].iloc[0],
            }
            datasets = group["dataset"].nunique() > 1 or finished["dataset"].nunique() > 1
            name = f"{variant} / {dataset} / {setting} / mean" if datasets else f"{variant} / {setting} / mean"
            run = client.create_run(experiment_id, run_name=name, tags={k: str(v) for k, v in tags.items()})
            run_id = run.info.run_id
            client.log_batch(run_id, params=[Param(k, str(tags[k])) for k in ("variant", "dataset", "setting")])
        client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), now, n) for k, v in values.items()],
            tags=[RunTag("seeds", " ".join(str(int(s)) for s in sorted(group["seed"])))],
        )
        client.set_terminated(run_id, "FINISHED")
        written += 1
    return written


def _flatten(params: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in params.items():
        if is_dataclass(value):
            value = asdict(value)
        if isinstance(value, dict) and value and all(isinstance(k, str) for k in value):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _plain(value):
    """YAML-safe plain data (tuples -> lists, numpy scalars -> Python)."""
    if is_dataclass(value):
        value = asdict(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
