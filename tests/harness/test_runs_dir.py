"""The runs folder: runs/ at the repository root by default, CARAT_RUNS_DIR when set."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHOW = "from harness import storage as s; print(s.RUNS_DIR); print(s.DEFAULT_STORAGE); print(s.DEFAULT_TRACKING_URI)"


def _defaults(env: dict) -> list[str]:
    out = subprocess.run([sys.executable, "-c", SHOW], capture_output=True, text=True, cwd=REPO, env=env, check=True)
    return out.stdout.split()


@pytest.mark.integration  # a fresh interpreter: the folder is read when the harness is imported
def test_the_runs_folder_defaults_to_runs_and_follows_CARAT_RUNS_DIR(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CARAT_RUNS_DIR"}
    assert _defaults(env)[0] == str(REPO / "runs")
    runs, storage, tracking = _defaults({**env, "CARAT_RUNS_DIR": str(tmp_path / "elsewhere")})
    assert runs == str(tmp_path / "elsewhere")
    assert storage == str(tmp_path / "elsewhere" / "optuna.journal")
    assert tracking == f"sqlite:///{tmp_path / 'elsewhere' / 'mlflow.db'}"
