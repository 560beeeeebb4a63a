"""`invoke ablate` as a user runs it, under the failures that happen at scale: several local
workers on the embedded stores, a worker killed mid-run, a loss that blows up, an unreachable
store, and the MLflow UI's network exposure."""

import re
import socket
import subprocess
import sys
import time

import optuna
import pytest
from mlflow.tracking import MlflowClient

from harness.storage import open_optuna_storage
from harness.tracking import FINAL_METRICS
from tests.helpers.study_runs import (
    REPO,
    ablate_command,
    assert_each_unit_done_once,
    kill_group,
    mlflow_runs,
    repeat_trials,
    run,
    start,
    wait_for_http,
    write_study,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # workers and servers in subprocesses


def _stores(tmp_path):
    return str(tmp_path / "optuna.journal"), f"sqlite:///{tmp_path / 'mlflow.db'}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_four_local_workers_on_the_embedded_stores_lose_nothing(tmp_path):
    study = write_study(tmp_path, "local4", epochs=2)
    storage, tracking_uri = _stores(tmp_path)
    code, output = run(ablate_command(study, storage, tracking_uri, "--workers", "4"), tmp_path / "out.log")
    assert code == 0, output
    assert "database is locked" not in output.lower()

    runs = assert_each_unit_done_once(storage, tracking_uri, "local4", ("carat", "no_shuffle"), (1, 2))
    client = MlflowClient(tracking_uri=tracking_uri)
    for r in runs:
        assert {f"test_{k}" for k in FINAL_METRICS} <= set(r.data.metrics), r.data.tags["variant"]
        losses = client.get_metric_history(r.info.run_id, "train_loss")
        assert sorted(m.step for m in losses) == [1, 2]  # one point per epoch
        artifacts = {a.path for a in client.list_artifacts(r.info.run_id)}
        assert artifacts >= {"config.yaml", "history.csv", "predictions.npz"}
    # Four processes really shared the work (one worker doing everything would prove nothing).
    pids = {t.user_attrs["worker_pid"] for t in repeat_trials(storage, "local4")}
    assert len(pids) >= 2


def _running_trial_with_run(storage_url: str, tracking_uri: str, study: str):
    """The repeat trial now RUNNING whose MLflow run exists and is RUNNING, once another unit has
    finished (so the re-run must also leave that one alone); else None."""
    try:
        storage = open_optuna_storage(storage_url)
        summaries = optuna.get_all_study_summaries(storage)
    except Exception:  # the journal is being created
        return None
    names = [s.study_name for s in summaries]
    names = [n for n in names if n.startswith(f"{study}.") and n.endswith(".repeat")]
    if not names:
        return None
    trials = optuna.load_study(study_name=names[0], storage=storage).get_trials(deepcopy=False)
    if not any(t.state.name == "COMPLETE" for t in trials):
        return None
    for trial in trials:
        run_id = trial.user_attrs.get("mlflow_run_id")
        if trial.state.name == "RUNNING" and run_id:
            if MlflowClient(tracking_uri=tracking_uri).get_run(run_id).info.status == "RUNNING":
                return trial
    return None


def test_a_worker_killed_mid_run_is_failed_and_the_rerun_completes_every_unit_once(tmp_path):
    study = write_study(tmp_path, "killed", seeds=(1,), epochs=4)
    storage, tracking_uri = _stores(tmp_path)
    command = ablate_command(study, storage, tracking_uri)
    process = start(command, tmp_path / "first.log")
    try:
        deadline = time.monotonic() + 240
        while (victim := _running_trial_with_run(storage, tracking_uri, "killed")) is None:
            assert process.poll() is None, f"ended before the kill:\n{(tmp_path / 'first.log').read_text()}"
            assert time.monotonic() < deadline, "no repeat trial started running"
            time.sleep(0.1)
    finally:
        kill_group(process)  # SIGKILL: no handler runs, nothing is cleaned up
    left = [t for t in repeat_trials(storage, "killed") if t.state.name == "RUNNING"]
    assert [t.number for t in left] == [victim.number]  # the kill really landed mid-run

    code, output = run(command, tmp_path / "second.log")
    assert code == 0, output
    killed = repeat_trials(storage, "killed")[victim.number]
    assert killed.state.name == "FAIL"
    assert re.search(r"worker .*:\d+ died while running this trial", killed.user_attrs["fail_reason"])
    killed_run = MlflowClient(tracking_uri=tracking_uri).get_run(victim.user_attrs["mlflow_run_id"])
    assert killed_run.info.status == "FAILED" and "died" in killed_run.data.tags["failure_reason"]
    assert_each_unit_done_once(storage, tracking_uri, "killed", ("carat", "no_shuffle"), (1,))


def test_a_run_whose_loss_blows_up_fails_alone_with_epoch_and_step(tmp_path):
    # An absurd learning rate: after the first update the weights are ~1e30 and the next loss is
    # not finite. Batches of 8 give 4 steps per epoch of the 32 tiny training samples. (A fusion
    # baseline blows up: CARAT's contrastive term refuses NaN latents before its loss is formed.)
    study = write_study(
        tmp_path,
        "blowup",
        variants=("carat", "late_fusion"),
        seeds=(1,),
        variant_overrides={"late_fusion": {"lr": 1.0e30, "batch_size": 8}},
    )
    storage, tracking_uri = _stores(tmp_path)
    code, output = run(ablate_command(study, storage, tracking_uri), tmp_path / "out.log")
    assert code == 1, output
    expected = r"FAILED late_fusion seed 1 \(default\): NonFiniteLossError: loss became \S+ at epoch 1, step \d"
    assert re.search(expected, output)
    assert "1 run(s) failed and 0 are missing; run the same command again to retry them." in output

    trials = {t.user_attrs["variant"]: t for t in repeat_trials(storage, "blowup")}
    assert trials["carat"].state.name == "COMPLETE"  # the study went on with the other run
    assert trials["late_fusion"].state.name == "FAIL"
    reason = trials["late_fusion"].user_attrs["fail_reason"]
    assert re.fullmatch(r"NonFiniteLossError: loss became \S+ at epoch 1, step \d", reason)
    runs = {r.data.tags["variant"]: r for r in mlflow_runs(tracking_uri, "blowup")}
    assert runs["carat"].info.status == "FINISHED"
    assert runs["late_fusion"].info.status == "FAILED" and runs["late_fusion"].data.tags["failure_reason"] == reason


@pytest.mark.parametrize("broken", ["storage", "tracking"])
def test_an_unreachable_store_fails_before_any_training_with_one_clear_message(tmp_path, broken):
    study = write_study(tmp_path, "unreachable", variants=("carat",), seeds=(1,))
    storage, tracking_uri = _stores(tmp_path)
    port = _free_port()  # closed again: nothing listens there
    if broken == "storage":
        storage = f"postgresql://alice:s3cr3t-pw@127.0.0.1:{port}/optuna"
        expected = f"error: cannot open Optuna storage postgresql://alice:***@127.0.0.1:{port}/optuna: "
    else:
        tracking_uri = f"http://alice:s3cr3t-pw@127.0.0.1:{port}"
        expected = f"error: cannot reach MLflow tracking server http://alice:***@127.0.0.1:{port}: "
    code, output = run(ablate_command(study, storage, tracking_uri), tmp_path / "out.log")
    assert code == 2, output
    assert expected in output
    assert "Traceback" not in output and "s3cr3t-pw" not in output
    if broken == "storage":
        assert not (tmp_path / "mlflow.db").exists()  # tracking was never even opened
    else:
        assert optuna.get_all_study_summaries(open_optuna_storage(storage)) == []  # no study, no trial


def _listening_addresses(port: int) -> set[str]:
    """Addresses with a socket listening on ``port`` (from /proc, as `ss -ltn` reads them)."""
    found = set()
    for table, width in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        with open(table) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, hex_port = local.split(":")
                if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                    raw = bytes.fromhex(address)
                    words = b"".join(raw[i : i + 4][::-1] for i in range(0, width, 4))  # kernel order
                    found.add(socket.inet_ntop(socket.AF_INET if width == 4 else socket.AF_INET6, words))
    return found


def test_ui_listens_on_localhost_only_by_default(tmp_path):
    help_text = subprocess.run(
        [sys.executable, "-m", "invoke", "--help", "ui"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert "default 127.0.0.1" in help_text

    port = _free_port()
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    command = [sys.executable, "-m", "invoke", "ui", "--tracking-uri", store, "--port", str(port)]
    process = start(command, tmp_path / "ui.log")
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", process)
        assert _listening_addresses(port) == {"127.0.0.1"}
    finally:
        kill_group(process, sig=15)  # SIGTERM to the group: invoke and the server it started
    assert "http://127.0.0.1:" in (tmp_path / "ui.log").read_text()
