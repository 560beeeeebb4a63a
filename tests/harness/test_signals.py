"""A stop signal (what a scheduler sends before SIGKILL) to a real command ends everything it
started: `invoke ablate --workers 2` mid-training, and `invoke ui` with its MLflow server."""

import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.study_runs import (
    ablate_command,
    assert_each_unit_done_once,
    finish,
    kill_group,
    mlflow_runs,
    repeat_trials,
    run,
    start,
    wait_for_http,
    write_study,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # commands, workers and servers in subprocesses


def _processes() -> dict[int, tuple[int, int, int]]:
    """pid -> (parent pid, process group, session) of every live (non-zombie) process, from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z":
            found[int(entry.name)] = (int(fields[1]), int(fields[2]), int(fields[3]))
    return found


def _started_by(root: int) -> set[int]:
    """The live processes ``root`` started: its descendants, and whatever shares a process group or
    session with any of them (a server's children that were re-parented)."""
    table = _processes()
    family, grew = {root} & set(table), True
    while grew:
        more = {pid for pid, (parent, _, _) in table.items() if parent in family} - family
        family |= more
        grew = bool(more)
    return family | {pid for pid, (_, group, session) in table.items() if group in family or session in family}


def _alive(pids: set[int]) -> set[int]:
    return pids & set(_processes())


def _wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def _training(storage: str, study: str, workers: int) -> bool:
    """``workers`` repeat trials are RUNNING with an MLflow run each: every worker trains."""
    try:
        trials = repeat_trials(storage, study)
    except Exception:  # the journal is being created
        return False
    return sum(1 for t in trials if t.state.name == "RUNNING" and t.user_attrs.get("mlflow_run_id")) >= workers


def test_sigterm_to_ablate_with_two_workers_stops_everything_and_a_rerun_finishes_each_unit_once(tmp_path):
    study = write_study(tmp_path, "stopped", seeds=(1, 2), epochs=8)
    storage, tracking_uri = str(tmp_path / "optuna.journal"), f"sqlite:///{tmp_path / 'mlflow.db'}"
    command = ablate_command(study, storage, tracking_uri, "--workers", "2")
    process = start(command, tmp_path / "first.log")
    started: set[int] = set()
    try:
        deadline = time.monotonic() + 240
        while not _training(storage, "stopped", 2):
            assert process.poll() is None, f"ended before the signal:\n{(tmp_path / 'first.log').read_text()}"
            assert time.monotonic() < deadline, "the two workers never trained at once"
            started |= _started_by(process.pid)
            time.sleep(0.2)
        started |= _started_by(process.pid)
        assert len(started) >= 3  # the command and its two workers (at least)
        process.send_signal(signal.SIGTERM)  # to the command alone, as `kill <pid>` does
        code, output = finish(process, tmp_path / "first.log", timeout=30)
    finally:
        if process.poll() is None:
            kill_group(process)
    assert code == 128 + signal.SIGTERM, output
    assert _wait_until(lambda: not _alive(started), timeout=5), f"still alive: {_alive(started)}"
    stopped_lines = [line for line in output.splitlines() if line.startswith("stopped by SIGTERM")]
    assert len(stopped_lines) == 1 and stopped_lines[0].endswith("run the same command again to resume"), output
    assert "Traceback" not in output and "leaked" not in output, output
    assert not [r.info.run_id for r in mlflow_runs(tracking_uri, "stopped") if r.info.status == "RUNNING"]
    interrupted = [t for t in repeat_trials(storage, "stopped") if t.state.name == "FAIL"]
    assert len(interrupted) >= 2 and all("SIGTERM" in t.user_attrs["fail_reason"] for t in interrupted)

    code, output = run(command, tmp_path / "second.log")
    assert code == 0, output
    assert_each_unit_done_once(storage, tracking_uri, "stopped", ("carat", "no_shuffle"), (1, 2))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_free(port: int) -> bool:
    """Whether a new server could listen on ``port``: with SO_REUSEADDR, as servers bind, so the
    closed connections' TIME_WAIT does not count, and a socket still listening does."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


SERVERS = {  # task -> (store option, the store in tmp_path, the address that answers once it serves)
    "ui": ("--tracking-uri", "sqlite:///{tmp}/mlflow.db", "/health"),
    "dashboard": ("--storage", "{tmp}/optuna.journal", "/api/studies"),
}


@pytest.mark.parametrize("task", sorted(SERVERS))
def test_sigterm_to_a_server_task_stops_the_server_and_its_children_and_frees_the_port(tmp_path, task):
    option, store, health = SERVERS[task]
    port = _free_port()
    command = [sys.executable, "-m", "invoke", task, option, store.format(tmp=tmp_path), "--port", str(port)]
    process = start(command, tmp_path / "server.log")
    try:
        wait_for_http(f"http://127.0.0.1:{port}{health}", process)
        started = _started_by(process.pid)
        assert len(started) >= (3 if task == "ui" else 2)  # invoke and its server (mlflow: and uvicorn)
        process.send_signal(signal.SIGTERM)
        code, output = finish(process, tmp_path / "server.log", timeout=15)
    finally:
        if process.poll() is None:
            kill_group(process)
    assert code == 128 + signal.SIGTERM, output
    assert _wait_until(lambda: not _alive(started) and _port_free(port), timeout=2), f"alive: {_alive(started)}"
