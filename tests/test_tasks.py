"""The command line as a user meets it: typed options in the help, short flags that mean what they
say, one clear error for a bad number, `invoke ui` links that open a study ready to compare, and
`invoke dashboard` serving the Optuna storage."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers.commands import invoke_in_process

REPO = Path(__file__).resolve().parents[1]


def _invoke(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def test_help_shows_types_and_chosen_short_flags(capsys):
    text = invoke_in_process(capsys, "--help", "ablate")[1]
    for flag in (
        "-n INT, --seeds=INT",
        "-e INT, --epochs=INT",
        "-w INT, --workers=INT",
        "-t INT, --trials=INT",
        "-s STRING, --study=STRING",
        "-d STRING, --dataset=STRING",
        "-q, --quick",
        "-v, --verbose",
    ):
        assert flag in text, flag
    assert "(default: the study's" in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["ablate", "--seeds", "three"], "error: --seeds must be a whole number, got 'three'"),
        (["tune", "-w", "2x"], "error: --workers must be a whole number, got '2x'"),
        (["ablate", "--study", "nope"], "error: unknown study 'nope'; valid: ablation"),
    ],
)
def test_a_bad_option_is_one_line_and_exit_2(capsys, args, message):
    code, _, err = invoke_in_process(capsys, *args)
    assert code == 2
    assert err.strip().startswith(message) and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.integration  # a subprocess: the exit status and stderr as a shell sees them
def test_a_bad_option_from_the_shell_is_one_line_and_exit_2():
    done = _invoke("ablate", "--seeds", "three")
    assert done.returncode == 2
    assert done.stderr.strip() == "error: --seeds must be a whole number, got 'three'"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, process, timeout=180) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited"
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                return reply.read()
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer")


@pytest.mark.integration  # starts a server in a subprocess
def test_ui_prints_links_to_shared_views_of_every_study(tmp_path):
    from harness import tracking
    from harness.storage import prepare_tracking

    uri = prepare_tracking(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = tracking.client_for(uri)
    experiment_id = tracking.ensure_experiment(client, uri, "demo", "a demo study", tracking.view_tags())
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "invoke", "ui", "--tracking-uri", uri, "-p", str(port)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        _wait(f"http://127.0.0.1:{port}/health", process)
        experiment = json.loads(
            _wait(f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/experiments/get?experiment_id={experiment_id}", process)
        )["experiment"]
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        output = process.communicate(timeout=60)[0]
    links = dict(re.findall(r"demo\s+(\w+)\s+(http\S+)", output))
    assert sorted(links) == ["results", "summaries"]
    tags = {t["key"]: t["value"] for t in experiment["tags"]}
    assert tags["mlflow.note.content"] == "a demo study"
    for _view, link in links.items():
        assert link.startswith(f"http://127.0.0.1:{port}/#/experiments/{experiment_id}/runs?viewStateShareKey=")
        state = json.loads(tags[f"mlflow.sharedViewState.{link.rsplit('=', 1)[1]}"])  # the view the link opens
        assert "params.`variant`" in state["selectedColumns"]
    assert json.loads(tags[next(k for k in tags if "harness-results" in k)])["groupBy"]["groupByKeys"] == [
        {"mode": "param", "groupByData": "variant"}
    ]


@pytest.mark.integration  # starts a server in a subprocess
def test_dashboard_serves_the_optuna_storage(tmp_path):
    import optuna

    from harness.storage import open_optuna_storage

    journal = tmp_path / "optuna.journal"
    optuna.create_study(study_name="demo.tune", storage=open_optuna_storage(str(journal)))
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "invoke", "dashboard", "--storage", str(journal), "-p", str(port)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        studies = json.loads(_wait(f"http://127.0.0.1:{port}/api/studies", process))
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.communicate(timeout=60)
    assert [s["study_name"] for s in studies["study_summaries"]] == ["demo.tune"]
