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
