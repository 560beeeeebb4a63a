"""MLflow tracking: one experiment per study, one flat run per training run.

Uses ``MlflowClient`` (explicit run ids, no fluent global "active run"), logs in batches,
and always ends a run with a status: FINISHED, KILLED (pruned) or FAILED (with the reason
as the ``failure_reason`` tag).
"""
from __future__ import annotations

import csv
import os
import tempfile
import time
from dataclasses import asdict, is_dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import numpy as np
import yaml
from mlflow.entities import Metric, Param, ViewType
from mlflow.tracking import MlflowClient

from harness.storage import artifact_location, redact_text

FINAL_METRICS = (
    "acc", "hamming_loss", "micro_f1", "macro_f1", "micro_precision", "micro_recall",
    "macro_precision", "macro_recall", "subset_acc", "example_f1",
)  # fmt: skip
LATENT_SAMPLES = 400  # test samples kept for the t-SNE plot (enough for a readable picture)


def client_for(tracking_uri: str) -> MlflowClient:
    """A client for the store. Credentials in an http(s) URI (a server behind basic auth) are
    handed to MLflow through its own environment variables instead of the URI, because MLflow
    echoes the server URI to stdout ("View run ... at: <uri>") after every run."""
    parts = urlsplit(tracking_uri)
    if parts.scheme in ("http", "https") and parts.password is not None:
        os.environ["MLFLOW_TRACKING_USERNAME"] = unquote(parts.username or "")
        os.environ["MLFLOW_TRACKING_PASSWORD"] = unquote(parts.password)
        tracking_uri = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    return MlflowClient(tracking_uri=tracking_uri)


def ensure_experiment(client: MlflowClient, tracking_uri: str, name: str) -> str:
    """The id of the experiment ``name``, created (with a local artifact folder) if missing."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location(tracking_uri, name))
    except Exception:  # another worker created it first
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


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
        metrics = [Metric(k, float(v), now, epoch) for k, v in row.items() if k != "epoch" and np.isfinite(v)]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def log_result(self, result, label_names, modality_names, config: dict, keep_latents: bool) -> None:
        """Final metrics (one batch) and the artifacts: resolved config, test predictions, history."""
        now = int(time.time() * 1000)
        values = {f"test_{k}": result.test_metrics[k] for k in FINAL_METRICS}
        values.update({f"test_f1_{name}": f1 for name, f1 in zip(label_names, result.test_per_label_f1)})
        values.update(
            val_micro_f1=result.val_metrics["micro_f1"],
            best_epoch=result.best_epoch,
            train_seconds=result.train_seconds,
            n_parameters=result.n_parameters,
        )
        # MLflow shows a metric's value at the highest step (latest timestamp on ties): logging at
        # the last epoch's step makes the run's val_micro_f1 the kept epoch's, not the last epoch's.
        # The full curve is history.csv; this final point sits on top of the last epoch's.
        step = len(result.history)
        metrics = [Metric(k, float(v), now + 1, step) for k, v in values.items()]
        self.client.log_batch(self.run_id, metrics=metrics)
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
            self.client.set_tag(self.run_id, "failure_reason", redact_text(reason)[:5000])
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
    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.optuna_trial = '{int(trial_number)}'", run_view_type=ViewType.ALL
    )
    for run in runs:
        if run.data.tags.get("optuna_study") == study_name and run.info.status in ("RUNNING", "FINISHED"):
            client.set_tag(run.info.run_id, "failure_reason", redact_text(reason))
            client.set_terminated(run.info.run_id, "FAILED")


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
