"""The bring-your-own-model example runs as the README tells a user to run it: `invoke ablate` on the
example study (whose plugin defines its own model) and `invoke report` on what it tracked."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # `invoke ablate` and `report` in subprocesses: a whole study

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "my_study.yaml"


def _invoke(*args, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def test_the_example_plugin_runs_through_ablate_and_report(tmp_path):
    stores = ["--storage", str(tmp_path / "optuna.journal"), "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]
    done = _invoke("ablate", "--study", str(EXAMPLE), "--workers", "2", *stores)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "mean_pool_mlp" in done.stdout and "4 run(s) trained by this command" in done.stdout

    done = _invoke("report", "--study", "my_study", "--tracking-uri", stores[3], "--out", str(tmp_path / "build"))
    assert done.returncode == 0, done.stdout + done.stderr
    table = pd.read_csv(tmp_path / "build" / "my_study" / "results.csv").set_index("variant")
    assert sorted(table.index) == ["carat", "mean_pool_mlp"] and (table["n_seeds"] == 2).all()
