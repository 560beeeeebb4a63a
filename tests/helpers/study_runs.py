"""Helpers for the reliability tests: write a tiny study, run `invoke ablate` as a user would
(a separate process in the repository root), and read back what Optuna and MLflow hold."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
COMMAND_TIMEOUT = 300  # seconds; a hung command fails its test instead of stalling CI


def write_study(folder: Path, name: str, variants=("carat", "no_shuffle"), seeds=(1, 2), epochs=1, **fields) -> Path:
    """A study file on tiny synthetic data with short sequences: each run takes seconds on a CPU."""
    study = {
        "name": name,
        "variants": list(variants),
        "dataset": "synthetic",
        "dataset_options": {"size": "tiny", "seq_len": 8},
        "epochs": epochs,
        "seeds": list(seeds),
        **fields,
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def ablate_command(study: Path, storage: str, tracking_uri: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "invoke",
        "ablate",
        "--study",
        str(study),
        "--storage",
        storage,
        "--tracking-uri",
        tracking_uri,
        *extra,
    ]


def child_env() -> dict:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}  # output reaches the log as it is written


def start(command: list[str], log: Path) -> subprocess.Popen:
    """Start a command in its own process group (so it and its workers can be killed together),
    stdout and stderr going to ``log``."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            command, cwd=REPO, env=child_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def finish(process: subprocess.Popen, log: Path, timeout: float = COMMAND_TIMEOUT) -> tuple[int, str]:
    """Wait for a started command; on timeout kill its whole group. Returns (exit code, output)."""
    try:
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(process)
        raise AssertionError(f"command timed out after {timeout} s:\n{log.read_text()[-3000:]}") from None
    return code, log.read_text()


def run(command: list[str], log: Path, timeout: float = COMMAND_TIMEOUT) -> tuple[int, str]:
    return finish(start(command, log), log, timeout)


def kill_group(process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass
    process.wait(timeout=60)


def wait_for_http(url: str, process: subprocess.Popen | None = None, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} did not answer within {timeout} s")


# -- reading the stores back -------------------------------------------------------------------


def repeat_trials(storage_url: str, study: str) -> list:
    """Every trial of the study's repeat phase (all states)."""
    import optuna

    from harness.storage import open_optuna_storage

    storage = open_optuna_storage(storage_url)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage) if s.study_name.startswith(f"{study}.")]
    repeats = [n for n in names if n.endswith(".repeat")]
    assert len(repeats) == 1, f"expected one repeat study for {study}, found {names}"
    return optuna.load_study(study_name=repeats[0], storage=storage).get_trials(deepcopy=False)


def mlflow_runs(tracking_uri: str, experiment: str) -> list:
    """Every MLflow run (any status) of the experiment; [] if it does not exist."""
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    return client.search_runs([found.experiment_id], run_view_type=ViewType.ALL, max_results=10_000)


def unit(trial_or_run) -> tuple:
    """(variant, seed) of an Optuna trial or an MLflow run."""
    attrs = getattr(trial_or_run, "user_attrs", None)
    if attrs is not None:
        return attrs["variant"], int(attrs["seed"])
    tags = trial_or_run.data.tags
    return tags["variant"], int(tags["seed"])


def assert_each_unit_done_once(storage_url: str, tracking_uri: str, study: str, variants, seeds) -> list:
    """Every (variant, seed) has exactly one COMPLETE repeat trial and exactly one FINISHED repeat
    run, nothing is left RUNNING anywhere; returns the MLflow repeat runs."""
    expected = Counter({(v, s): 1 for v in variants for s in seeds})
    trials = repeat_trials(storage_url, study)
    complete = Counter(unit(t) for t in trials if t.state.name == "COMPLETE")
    assert complete == expected, f"COMPLETE trials per unit: {dict(complete)}"
    assert not [t.number for t in trials if t.state.name in ("RUNNING", "WAITING")]

    runs = mlflow_runs(tracking_uri, study)
    repeats = [r for r in runs if r.data.tags.get("phase") == "repeat"]
    finished = Counter(unit(r) for r in repeats if r.info.status == "FINISHED")
    assert finished == expected, f"FINISHED repeat runs per unit: {dict(finished)}"
    assert not [r.info.run_id for r in runs if r.info.status == "RUNNING"]
    # The trial and the run point at each other: the COMPLETE trial names the FINISHED run.
    finished_ids = {r.info.run_id for r in repeats if r.info.status == "FINISHED"}
    assert {t.user_attrs["mlflow_run_id"] for t in trials if t.state.name == "COMPLETE"} == finished_ids
    return repeats
