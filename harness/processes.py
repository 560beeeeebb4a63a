"""Processes that end with the command that started them.

A scheduler stops a job with SIGTERM (then SIGKILL), a closed terminal sends SIGHUP, Ctrl-C sends
SIGINT. Each must reach every worker and server a command started, and leave the stores in states
from which a re-run resumes. Three pieces:

* ``stop_on_signals()``: inside it, SIGTERM and SIGHUP raise ``Stopped`` (a ``KeyboardInterrupt``),
  so the same ``except``/``finally`` blocks that handle Ctrl-C run: a training unit fails its
  Optuna trial and its MLflow run (both retried by the next run, from the unit's checkpoint).
* ``run_workers(target, n)``: ``target(i)`` in ``n`` fresh worker processes. When the parent is
  stopped it forwards SIGTERM to every live worker, waits up to ``grace`` seconds, then kills what
  is left. A worker whose parent vanished (``kill -9`` of the command) stops by itself.
* ``serve(command)``: a server (``mlflow server``, with its uvicorn and job consumers) in its own
  process group, which is terminated as a whole when the command stops.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue as queue_lib
import signal
import subprocess
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
GRACE_SECONDS = 10.0
_ORPHAN_CHECK_SECONDS = 2.0


class Stopped(KeyboardInterrupt):
    """The process received a stop signal (SIGTERM or SIGHUP); handled like Ctrl-C."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


class WorkerError(RuntimeError):
    """A worker process raised; the message carries its traceback."""


def _raise_stopped(signum, _frame):
    raise Stopped(signum)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP raise ``Stopped`` in the main thread while the block runs.

    Outside the main thread (where Python cannot install handlers) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _raise_stopped) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def exit_code(stopped: KeyboardInterrupt) -> int:
    """The shell's convention: 128 + the signal number (130 for Ctrl-C)."""
    return 128 + getattr(stopped, "signum", signal.SIGINT)


def run_workers(
    target: Callable[[int], object], n: int, grace: float = GRACE_SECONDS, context: str = "spawn"
) -> list[object]:
    """``[target(0), ..., target(n - 1)]``, each call in its own process.

    ``target`` must be picklable (a module-level function, or a ``functools.partial`` of one). A
    worker that raises makes this raise ``WorkerError`` once the others have finished. Stopped
    (a signal, Ctrl-C), or a worker stopped by one, it stops every worker within ``grace`` seconds
    and raises ``Stopped`` (``KeyboardInterrupt`` for Ctrl-C here)."""
    ctx = multiprocessing.get_context(context)
    results = ctx.Queue()
    workers = [
        ctx.Process(target=_worker_main, args=(target, index, os.getpid(), results), name=f"worker-{index}")
        for index in range(n)
    ]
    values: dict[int, object] = {}
    errors: list[str] = []
    try:
        with stop_on_signals():
            for worker in workers:
                worker.start()
            while len(values) + len(errors) < n:
                try:
                    index, ok, value = results.get(timeout=0.5)
                except queue_lib.Empty:
                    if all(worker.exitcode is not None for worker in workers):
                        _drain(results, values, errors)
                        silent = n - len(values) - len(errors)
                        errors.extend(["a worker ended without reporting (killed?)"] * silent)
                    continue
                _record(values, errors, index, ok, value)
            for worker in workers:
                worker.join()
    except BaseException:
        stop(workers, grace)
        raise
    finally:
        results.close()
    if errors:
        raise WorkerError("\n".join(errors))
    return [values[index] for index in range(n)]


def _drain(results, values: dict, errors: list) -> None:
    while True:
        try:
            index, ok, value = results.get_nowait()
        except queue_lib.Empty:
            return
        _record(values, errors, index, ok, value)


def _record(values: dict, errors: list, index: int, ok: bool | None, value) -> None:
    if ok is None:  # the worker was stopped by a signal (Ctrl-C reaches it first, a scheduler may
        raise Stopped(value)  # signal every process): the command is being stopped, all of it
    if ok:
        values[index] = value
    else:
        errors.append(value)


def stop(processes: Sequence, grace: float = GRACE_SECONDS) -> None:
    """SIGTERM every live process, wait up to ``grace`` seconds in all, SIGKILL the rest."""
    live = [p for p in processes if p.is_alive()]
    for process in live:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)
    deadline = _now() + grace
    for process in live:
        process.join(max(0.0, deadline - _now()))
    for process in live:
        if process.is_alive():
            process.kill()
            process.join()


def _now() -> float:
    import time

    return time.monotonic()


def _stop_once(signum, _frame):
    # Ctrl-C reaches the whole process group and the parent then forwards SIGTERM: the second
    # signal must not cut short the clean-up the first one started (the parent kills after grace).
    for other in (*STOP_SIGNALS, signal.SIGINT):
        signal.signal(other, signal.SIG_IGN)
    raise Stopped(signum)


def _worker_main(target, index: int, parent: int, results) -> None:
    for signum in (*STOP_SIGNALS, signal.SIGINT):
        signal.signal(signum, _stop_once)
    _watch_parent(parent)
    try:
        value = target(index)
    except KeyboardInterrupt as stopped:
        results.put((index, None, getattr(stopped, "signum", signal.SIGINT)))
        results.close()
        results.join_thread()
        # SystemExit, not os._exit: multiprocessing's finalizers still run, so the semaphores this
        # worker made (tqdm's lock) are released instead of reported leaked at shutdown.
        raise SystemExit(130) from None
    except BaseException as exc:  # reported to the parent, which raises WorkerError
        results.put((index, False, f"worker {index}: {type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
    else:
        results.put((index, True, value))
    results.close()
    results.join_thread()


def _watch_parent(parent: int) -> None:
    """A worker whose command was killed outright (SIGKILL) stops itself, as if sent SIGTERM."""

    def watch() -> None:
        import time

        while True:
            time.sleep(_ORPHAN_CHECK_SECONDS)
            if os.getppid() != parent:
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def serve(command: Sequence[str], env: dict | None = None, grace: float = 5.0) -> int:
    """Run a server in the foreground until it exits or this process is stopped.

    The server starts in a new session, so it and every process it forks (uvicorn workers, job
    consumers) form one process group; a stop signal or Ctrl-C terminates the whole group."""
    process = subprocess.Popen(list(command), env={**os.environ, **(env or {})}, start_new_session=True)
    try:
        with stop_on_signals():
            return process.wait()
    except KeyboardInterrupt as stopped:
        _stop_group(process, grace)
        return exit_code(stopped)
    finally:
        if process.poll() is None:
            _stop_group(process, grace)


def _stop_group(process: subprocess.Popen, grace: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        pass
    # Children of the server may outlive it: the group goes, whatever is left of it.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
