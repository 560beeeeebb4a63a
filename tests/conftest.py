"""Fixtures shared across test folders (keep small)."""

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def emotions_dir() -> Path:
    """The real MULAN emotions files (read only, outside the project)."""
    from harness.data.arff import default_emotions_dir

    folder = default_emotions_dir()
    if not (folder / "emotions-train.arff").is_file():
        pytest.skip(f"emotions data not found in {folder}")
    return folder


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server on 127.0.0.1 (see tests/helpers/postgres.py), stopped after the session.

    Skipped where the server binaries are missing, except under CI (env CI set), which installs
    them (.ci/run) and must exercise the multi-worker path."""
    import os

    from tests.helpers import postgres

    try:
        server = postgres.start()
    except postgres.PostgresUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PostgreSQL tests: {exc}")
        pytest.skip(str(exc))
    yield server
    server.stop()
