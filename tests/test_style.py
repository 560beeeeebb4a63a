"""The repository's own ruff configuration (pyproject.toml) holds: lint clean, formatted."""

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # runs ruff in a subprocess

REPO_ROOT = Path(__file__).resolve().parents[1]


def _ruff(*args: str) -> subprocess.CompletedProcess:
    ruff = shutil.which("ruff") or pytest.skip("ruff is not installed (pip install -r requirements.txt)")
    return subprocess.run([ruff, *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False)


def test_ruff_check_passes():
    result = _ruff("check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_leaves_every_file_unchanged():
    result = _ruff("format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr
