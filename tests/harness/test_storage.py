"""Storage and tracking URIs: passwords are redacted, defaults open, bad URIs fail with one clear message."""

import socket
import sqlite3

import optuna
import pytest

from harness.storage import StorageError, open_optuna_storage, prepare_tracking, redact, redact_text


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


@pytest.mark.parametrize(
    "url, expected",
    [
        ("postgresql://alice:hunter2@db.lan:5432/optuna", "postgresql://alice:***@db.lan:5432/optuna"),
        ("postgresql+psycopg2://alice:hunter2@db.lan/optuna", "postgresql+psycopg2://alice:***@db.lan/optuna"),
        ("http://bob:p%40ss@mlflow.lan:5000", "http://bob:***@mlflow.lan:5000"),
        ("postgresql://alice@db.lan/optuna", "postgresql://alice@db.lan/optuna"),  # no password: unchanged
        ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
        ("runs/optuna.journal", "runs/optuna.journal"),
    ],
)
def test_redact_hides_only_the_password(url, expected):
    assert redact(url) == expected


def test_redact_text_hides_every_password_in_free_text():
    text = "could not use postgresql://a:pw1@h1/x, then http://b:pw2@h2:80/ and sqlite:///f.db"
    redacted = redact_text(text)
    assert "pw1" not in redacted and "pw2" not in redacted
    assert "postgresql://a:***@h1/x" in redacted and "http://b:***@h2:80/" in redacted
    assert "sqlite:///f.db" in redacted


def test_journal_path_opens_a_usable_storage_creating_its_folder(tmp_path):
    path = tmp_path / "nested" / "optuna.journal"
    storage = open_optuna_storage(str(path))
    study = optuna.create_study(study_name="s", storage=storage)
    study.enqueue_trial({"x": 1.0})
    assert path.is_file()
    reopened = optuna.load_study(study_name="s", storage=open_optuna_storage(f"journal:{path}"))
    assert [t.state.name for t in reopened.get_trials()] == ["WAITING"]


def test_sqlite_tracking_store_is_created_in_wal_mode(tmp_path):
    db = tmp_path / "deep" / "mlflow.db"
    uri = f"sqlite:///{db}"
    assert prepare_tracking(uri) == uri
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.parametrize("uri", ["ftp://host/store", "file:///tmp/mlruns", "/tmp/mlruns"])
def test_unsupported_tracking_scheme_is_refused_naming_the_valid_ones(uri):
    valid = r"sqlite:///PATH, postgresql://\.\.\. or http"
    with pytest.raises(StorageError, match=rf"unsupported MLflow tracking URI .*{valid}"):
        prepare_tracking(uri)


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+psycopg2"])
def test_unreachable_tracking_database_names_the_redacted_url(scheme):
    uri = f"{scheme}://user:topsecret@127.0.0.1:{_closed_port()}/mlflow"
    with pytest.raises(StorageError) as info:
        prepare_tracking(uri)
    message = str(info.value)
    assert message.startswith(f"cannot reach MLflow tracking database {scheme}://user:***@127.0.0.1:")
    assert "Connection refused" in message and "topsecret" not in message


def test_unreachable_tracking_server_names_the_redacted_url():
    uri = f"http://user:topsecret@127.0.0.1:{_closed_port()}"
    with pytest.raises(StorageError) as info:
        prepare_tracking(uri)
    message = str(info.value)
    assert message.startswith("cannot reach MLflow tracking server http://user:***@127.0.0.1:")
    # Refused by the closed port: the credentials were not taken for part of the host name.
    assert "Connection refused" in message
    assert "topsecret" not in message


def test_unreachable_postgres_storage_names_the_redacted_url():
    url = f"postgresql://user:topsecret@127.0.0.1:{_closed_port()}/optuna"
    with pytest.raises(StorageError) as info:
        open_optuna_storage(url)
    message = str(info.value)
    assert message.startswith("cannot open Optuna storage postgresql://user:***@127.0.0.1:")
    assert "Connection refused" in message  # the driver is there and the server is not
    assert "topsecret" not in message and "\n" not in message
