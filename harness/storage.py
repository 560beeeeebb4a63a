"""Where studies keep their state: the Optuna storage and the MLflow tracking store.

Defaults need no server and live under the runs folder: ``$CARAT_RUNS_DIR`` when set, else the
git-ignored ``runs/`` at the repository root (``RUNS_DIR``, read once when the harness is imported):

* Optuna: a journal file (``runs/optuna.journal``) with file locks -- safe for several
  processes, unlike a bare SQLite file, which Optuna advises against for parallel work.
* MLflow: a SQLite store ``runs/mlflow.db`` (WAL mode, MLflow's own busy timeout) with
  artifacts under ``runs/mlartifacts``. (MLflow 3 refuses its old file store.)

For several machines, point every worker at one PostgreSQL (``--storage
postgresql://...``) and one ``mlflow server`` (``--tracking-uri http://...``).
Passwords in URLs are never printed or logged: use :func:`redact`.
"""

from __future__ import annotations

import base64
import os
import sqlite3
import urllib.error
import urllib.request
import warnings
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import optuna

RUNS_DIR_ENV = "CARAT_RUNS_DIR"
RUNS_DIR = Path(os.environ.get(RUNS_DIR_ENV) or Path(__file__).resolve().parents[1] / "runs").expanduser().resolve()
DEFAULT_STORAGE = str(RUNS_DIR / "optuna.journal")
DEFAULT_TRACKING_URI = f"sqlite:///{RUNS_DIR / 'mlflow.db'}"
RDB_SCHEMES = ("postgresql", "postgres", "mysql", "sqlite")
SCHEMA_LOCK_KEY = 0x43415241  # any constant; "CARA"


class StorageError(RuntimeError):
    """A storage or tracking URI cannot be used; raised before any training starts."""


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe to print, log and tag)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username}:***@{host}" if parts.username else f"***@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


def open_optuna_storage(url: str | None, on_stale=None) -> optuna.storages.BaseStorage:
    """Open (and so check) an Optuna storage: an RDB URL, or else a journal file path.

    RDB storages (several machines) get Optuna's heartbeats: a worker silent for
    ``workqueue.STALE_AFTER_SECONDS`` has its trial failed and its unit re-queued, and
    ``on_stale(queue, trial number, unit, reason)`` is told (see ``harness.workqueue``)."""
    from harness import workqueue

    url = url or DEFAULT_STORAGE
    scheme = urlsplit(url).scheme.split("+")[0]
    try:
        if scheme in RDB_SCHEMES:
            rdb_url = with_shipped_driver(url)
            with (
                _schema_lock(rdb_url),
                warnings.catch_warnings(),
            ):  # the first to open a fresh database creates Optuna's tables
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats: stable since 2.9
                return optuna.storages.RDBStorage(
                    rdb_url,
                    engine_kwargs=_engine_kwargs(scheme),
                    heartbeat_interval=workqueue.HEARTBEAT_SECONDS,
                    grace_period=workqueue.STALE_AFTER_SECONDS,
                    heartbeat_stale_trial_callback=workqueue.StaleTrialCallback(on_stale),
                )
        path = Path(url.removeprefix("journal:"))
        path.parent.mkdir(parents=True, exist_ok=True)
        backend = optuna.storages.journal.JournalFileBackend(
            str(path), lock_obj=optuna.storages.journal.JournalFileOpenLock(str(path))
        )
        return optuna.storages.JournalStorage(backend)
    except Exception as exc:  # any driver error: say which storage, hide the password
        raise StorageError(f"cannot open Optuna storage {redact(url)}: {_first_line(exc)}") from None


def with_shipped_driver(url: str) -> str:
    """A database URL naming the PostgreSQL driver requirements.txt ships (psycopg2) when it names
    none: SQLAlchemy >= 2.1 reads a bare ``postgresql://`` as psycopg 3, which is not installed,
    and no longer accepts the old ``postgres://`` alias at all."""
    scheme, separator, rest = url.partition("://")
    if scheme in ("postgresql", "postgres"):
        return f"postgresql+psycopg2{separator}{rest}"
    return url


@contextmanager
def _schema_lock(url: str):
    """Hold a PostgreSQL advisory lock (one per database) for the duration of the block.

    Machines started together on a fresh database would all try to create Optuna's or
    MLflow's tables at once, and all but one fail with "already exists"; under this lock one
    creates them and the others then find them. A killed holder's lock ends with its session."""
    scheme = urlsplit(url).scheme.split("+")[0]
    if not scheme.startswith("postgres"):
        yield
        return
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, **_engine_kwargs(scheme))
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": SCHEMA_LOCK_KEY})
    finally:
        engine.dispose()


def _engine_kwargs(scheme: str) -> dict:
    if scheme.startswith("postgres"):
        # Fail fast on an unreachable server instead of hanging.
        return {"connect_args": {"connect_timeout": 10}, "pool_pre_ping": True}
    return {}


def prepare_tracking(uri: str | None) -> str:
    """Check the MLflow tracking URI is usable and return it (the default store is created)."""
    uri = uri or DEFAULT_TRACKING_URI
    scheme = urlsplit(uri).scheme
    if scheme in ("http", "https"):
        try:
            with urllib.request.urlopen(_health_request(uri), timeout=10) as reply:
                if reply.status != 200:
                    raise StorageError(f"MLflow server {redact(uri)} answered {reply.status} on /health")
        except (urllib.error.URLError, OSError) as exc:
            raise StorageError(f"cannot reach MLflow tracking server {redact(uri)}: {_first_line(exc)}") from None
    elif scheme == "sqlite":
        path = Path(uri.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with sqlite3.connect(path) as db:
                # WAL lets readers and one writer work at once: several local workers log without
                # "database is locked" (MLflow itself waits up to 20 s for the write lock).
                db.execute("PRAGMA journal_mode=WAL")
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open MLflow store {uri}: {exc}") from None
    elif scheme.split("+")[0] in RDB_SCHEMES:
        from mlflow.tracking import MlflowClient

        given, uri = uri, with_shipped_driver(uri)
        try:
            with _schema_lock(uri):  # the first client creates MLflow's tables on a fresh database
                MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
        except Exception as exc:
            raise StorageError(f"cannot reach MLflow tracking database {redact(given)}: {_first_line(exc)}") from None
    else:
        raise StorageError(
            f"unsupported MLflow tracking URI {redact(uri)}: use sqlite:///PATH, postgresql://... or http(s)://..."
        )
    return uri


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """``url`` without its ``user:password@`` part, and the (unquoted) user name and password."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None, None
    bare = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    return bare, unquote(parts.username or ""), None if parts.password is None else unquote(parts.password)


def safe_name(text: str, keep: str = "._-", fill: str = "_") -> str:
    """``text`` as a file name: letters, digits and ``keep`` stay, anything else becomes ``fill``."""
    return "".join(ch if ch.isalnum() or ch in keep else fill for ch in text)


def _health_request(uri: str) -> urllib.request.Request:
    """GET <server>/health; credentials in the URL (an MLflow server behind basic auth) go in a
    header, since urllib would take ``user:password@host`` for the host name."""
    bare, username, password = split_credentials(uri)
    parts = urlsplit(bare)
    url = urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/health", query="", fragment=""))
    request = urllib.request.Request(url)
    if username is not None:
        token = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    return request


def artifact_location(tracking_uri: str, experiment: str) -> str | None:
    """Artifact folder for a new experiment in a local SQLite store (``mlartifacts/`` beside the
    database file); servers and shared databases choose their own."""
    if urlsplit(tracking_uri).scheme == "sqlite":
        db = Path(tracking_uri.removeprefix("sqlite:///")).resolve()
        return (db.parent / "mlartifacts" / experiment).as_uri()
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return redact_text(text[0] if text else type(exc).__name__)


def redact_text(text: str) -> str:
    """Redact every URL-embedded password in free text (driver errors quote the URL)."""
    import re

    return re.sub(r"(://[^:/@\s]+:)[^@\s]+@", r"\1***@", text)
