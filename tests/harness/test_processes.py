"""Signals end everything a command started (harness/processes.py), with real processes."""

import functools
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness import processes

REPO_ROOT = Path(__file__).resolve().parents[2]


def _square(index: int) -> int:
    return index * index


def _fail_on_one(index: int) -> int:
    if index == 1:
        raise ValueError("planted failure in worker 1")
    return index


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for every purpose here but still answers kill(0).
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def test_workers_return_their_values_in_order():
    assert processes.run_workers(_square, 3) == [0, 1, 4]


def test_a_failing_worker_raises_with_its_message_after_the_others_finish():
    with pytest.raises(processes.WorkerError, match="planted failure in worker 1"):
        processes.run_workers(functools.partial(_fail_on_one), 2)


def test_stop_on_signals_turns_sigterm_into_a_keyboard_interrupt():
    reached_finally = []
    with pytest.raises(processes.Stopped) as stopped:
        with processes.stop_on_signals():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
            finally:
                reached_finally.append(True)
    assert reached_finally == [True]
    assert isinstance(stopped.value, KeyboardInterrupt)
    assert processes.exit_code(stopped.value) == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored afterwards


COMMAND = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from harness import processes

    FOLDER = Path(sys.argv[1])

    def work(index):
        (FOLDER / f"worker{index}.pid").write_text(str(os.getpid()))
        try:
            time.sleep(300)
        finally:  # what a training unit does when interrupted: fail its records cleanly
            (FOLDER / f"worker{index}.cleaned").write_text("yes")

    if __name__ == "__main__":
        try:
            processes.run_workers(work, 2, grace=5)
        except KeyboardInterrupt as stopped:
            sys.exit(processes.exit_code(stopped))
    """
)


def _start_command(tmp_path: Path) -> tuple[subprocess.Popen, list[int]]:
    script = tmp_path / "command.py"
    script.write_text(COMMAND)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    parent = subprocess.Popen([sys.executable, str(script), str(tmp_path)], env=env)
    assert _wait_until(lambda: len(list(tmp_path.glob("worker*.pid"))) == 2, timeout=60), "workers never started"
    pids = [int(p.read_text()) for p in sorted(tmp_path.glob("worker*.pid"))]
    return parent, pids


@pytest.mark.integration
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_stop_signal_to_the_command_reaches_every_worker(tmp_path, signum):
    parent, pids = _start_command(tmp_path)
    parent.send_signal(signum)
    assert parent.wait(timeout=30) == 128 + signum
    assert _wait_until(lambda: not any(_alive(pid) for pid in pids), timeout=10)
    # Each worker ran its clean-up (its finally block), as an interrupted unit must.
    assert sorted(p.name for p in tmp_path.glob("*.cleaned")) == ["worker0.cleaned", "worker1.cleaned"]


@pytest.mark.integration
def test_a_worker_stopped_by_a_signal_stops_the_whole_command(tmp_path):
    parent, pids = _start_command(tmp_path)
    # Ctrl-C reaches the workers too (one process group), and a scheduler may signal each process:
    # a worker that is stopped is the command being stopped, not a worker error (exit 1).
    os.kill(pids[0], signal.SIGTERM)
    assert parent.wait(timeout=30) == 128 + signal.SIGTERM
    assert _wait_until(lambda: not any(_alive(pid) for pid in pids), timeout=10)
    assert sorted(p.name for p in tmp_path.glob("*.cleaned")) == ["worker0.cleaned", "worker1.cleaned"]


@pytest.mark.integration
def test_workers_of_a_command_killed_outright_stop_by_themselves(tmp_path):
    parent, pids = _start_command(tmp_path)
    parent.kill()  # SIGKILL: the command cannot forward anything
    parent.wait(timeout=10)
    assert _wait_until(lambda: not any(_alive(pid) for pid in pids), timeout=20)


SERVER = textwrap.dedent(
    """
    import subprocess, sys, time
    from pathlib import Path
    # A "server" with a child of its own, as mlflow server has uvicorn and job consumers.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    Path(sys.argv[1], "child.pid").write_text(str(child.pid))
    time.sleep(300)
    """
)


@pytest.mark.integration
def test_serve_stops_the_server_and_its_children(tmp_path):
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    runner = tmp_path / "serve.py"
    runner.write_text(
        "import sys\nfrom harness import processes\n"
        f"sys.exit(processes.serve([sys.executable, {str(script)!r}, {str(tmp_path)!r}]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    command = subprocess.Popen([sys.executable, str(runner)], env=env)
    assert _wait_until(lambda: (tmp_path / "child.pid").is_file(), timeout=30)
    child = int((tmp_path / "child.pid").read_text())
    command.send_signal(signal.SIGTERM)
    assert command.wait(timeout=15) == 128 + signal.SIGTERM
    assert _wait_until(lambda: not _alive(child), timeout=10)
