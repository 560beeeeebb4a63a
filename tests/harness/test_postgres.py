"""The multi-machine recipe for real: one PostgreSQL server (Optuna), one `mlflow server` backed by
it, and three `invoke ablate` processes started at the same moment on the same study, as three
machines would be. Every unit runs exactly once and no password leaks anywhere."""

import json
import os
import signal
import subprocess
import sys

import pytest

from harness.storage import with_shipped_driver
from tests.helpers.study_runs import (
    REPO,
    ablate_command,
    assert_each_unit_done_once,
    finish,
    kill_group,
    repeat_trials,
    start,
    wait_for_http,
    write_study,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # a PostgreSQL server and worker processes

VARIANTS, SEEDS = ("carat", "no_shuffle"), (1, 2)


@pytest.fixture(scope="module")
def mlflow_server(postgres_server, tmp_path_factory):
    """`mlflow server` on 127.0.0.1 backed by its own PostgreSQL database; yields its URL."""
    from tests.helpers.postgres import free_port

    folder = tmp_path_factory.mktemp("mlflow-server")
    # The server needs the driver named: SQLAlchemy 2.1 would pick psycopg 3 (not installed).
    backend = with_shipped_driver(postgres_server.create_database("mlflow"))
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--artifacts-destination",
        str(folder / "mlartifacts"),
    ]
    log = open(folder / "server.log", "wb")
    # The backend URI (with its password) travels in the environment, never on a command line.
    process = subprocess.Popen(
        command,
        cwd=folder,
        env={**os.environ, "MLFLOW_BACKEND_STORE_URI": backend},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", process, timeout=180)
        yield f"http://127.0.0.1:{port}"
    finally:
        kill_group(process, sig=signal.SIGTERM)
        log.close()


def test_three_workers_on_postgres_run_each_unit_exactly_once_and_never_leak_the_password(
    postgres_server, mlflow_server, tmp_path
):
    study = write_study(tmp_path, "multi", variants=VARIANTS, seeds=SEEDS, epochs=1)
    storage = postgres_server.create_database("optuna")  # fresh: the three also race to create the schema
    # Credentials for an MLflow server behind basic auth (this one ignores them) must not leak either.
    tracking_password = "tr4cking-pw"
    command = ablate_command(study, storage, mlflow_server.replace("http://", f"http://alice:{tracking_password}@"))
    logs = [tmp_path / f"machine{i}.log" for i in range(3)]
    processes = [start(command, log) for log in logs]
    results = [finish(p, log) for p, log in zip(processes, logs)]
    for code, output in results:
        assert code == 0, output

    runs = assert_each_unit_done_once(storage, mlflow_server, "multi", VARIANTS, SEEDS)
    trials = repeat_trials(storage, "multi")
    assert len({t.user_attrs["worker_pid"] for t in trials if t.state.name == "COMPLETE"}) >= 2  # really shared
    # A unit queued by two machines at once runs once; its other copy is failed as a duplicate.
    extra = [t for t in trials if t.state.name != "COMPLETE"]
    assert all(t.state.name == "FAIL" and t.user_attrs["fail_reason"].startswith("duplicate") for t in extra)

    for password in (postgres_server.password, tracking_password):
        for _, output in results:
            assert password not in output
        for r in runs:
            assert password not in json.dumps(r.data.params) and password not in json.dumps(r.data.tags)
        assert password not in json.dumps([t.user_attrs for t in trials])
    assert all(r.data.tags["storage"] == storage.replace(postgres_server.password, "***") for r in runs)


def test_machines_starting_together_on_fresh_databases_all_get_in(postgres_server, tmp_path):
    # Each creates Optuna's and MLflow's tables if missing: without care, all but one would
    # fail with "relation already exists".
    optuna_url = postgres_server.create_database("optuna_fresh")
    mlflow_url = postgres_server.create_database("mlflow_fresh")
    script = (
        "import pathlib, sys, time\n"
        "from harness.storage import open_optuna_storage, prepare_tracking\n"
        "barrier = pathlib.Path(sys.argv[1]); (barrier / sys.argv[2]).touch()\n"
        "while len(list(barrier.iterdir())) < 3: time.sleep(0.01)  # all imported: go together\n"
        "open_optuna_storage(sys.argv[3]); prepare_tracking(sys.argv[4])\n"
    )
    machines = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path), str(i), optuna_url, mlflow_url],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(3)
    ]
    for machine in machines:
        output = machine.communicate(timeout=180)[0]
        assert machine.returncode == 0, output


def test_a_password_can_stay_out_of_the_url(postgres_server, monkeypatch):
    # libpq reads PGPASSWORD (or ~/.pgpass): the URL on the command line, visible in `ps`, needs none.
    import optuna

    from harness.storage import open_optuna_storage

    url = postgres_server.create_database("optuna_nopw").replace(f":{postgres_server.password}@", "@")
    monkeypatch.setenv("PGPASSWORD", postgres_server.password)
    optuna.create_study(study_name="s", storage=open_optuna_storage(url))
    assert [s.study_name for s in optuna.get_all_study_summaries(open_optuna_storage(url))] == ["s"]
