"""A real (quick) study run through the runner, then reported: the CSV matches the MLflow runs."""

import pandas as pd
import pytest

import reports
from harness import runner, studies
from harness.tracking import client_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # whole quick studies, one through `invoke`


def test_quick_study_report_matches_its_runs(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    study = studies.load("no_shuffle").with_options(quick=True, seeds=2)
    outcome = runner.run(
        study, runner.RunOptions(storage=str(tmp_path / "optuna.journal"), tracking_uri=uri, progress=False)
    )
    assert outcome.ok

    summary = reports.generate(
        ["no_shuffle.quick"], tracking_uri=uri, storage=str(tmp_path / "optuna.journal"), out_dir=tmp_path / "build"
    )
    assert summary["no_shuffle.quick"]["missing"] == {}  # the 2 seeds the command asked for are there
    assert summary["no_shuffle.quick"]["status"] == "complete"

    client = client_for(uri)
    experiment = client.get_experiment_by_name("no_shuffle.quick").experiment_id
    runs = client.search_runs([experiment], "tags.phase = 'repeat' and attributes.status = 'FINISHED'")
    by_variant = {}
    for run in runs:
        by_variant.setdefault(run.data.tags["variant"], []).append(run.data.metrics)
    table = pd.read_csv(tmp_path / "build" / "no_shuffle.quick" / "results.csv").set_index("variant")
    assert set(table.index) == {"carat", "no_shuffle"} == set(by_variant)
    for variant, metrics in by_variant.items():
        values = pd.DataFrame(metrics)
        assert table.loc[variant, "n_seeds"] == 2
        for metric in ("acc", "hamming_loss", "micro_f1", "macro_f1", "micro_precision", "example_f1"):
            assert table.loc[variant, f"{metric}_mean"] == pytest.approx(values[f"test_{metric}"].mean())
            assert table.loc[variant, f"{metric}_std"] == pytest.approx(values[f"test_{metric}"].std(ddof=1))
    page = (tmp_path / "build" / "index.html").read_text()
    assert "no_shuffle.quick/latents_tsne.png" in page and "no_shuffle.quick/significance" in page
    assert "SMOKE TEST" in page  # a report of a smoke test says so at the top


def test_the_benchmark_smoke_test_gives_a_cross_data_set_verdict(repo_root, tmp_path, emotions_dir):
    """`invoke ablate --study benchmark --quick && invoke report --study benchmark.quick`, as a user runs it."""
    import subprocess
    import sys

    stores = ["--storage", str(tmp_path / "optuna.journal"), "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]

    def invoke(*args):
        done = subprocess.run(
            [sys.executable, "-m", "invoke", *args], cwd=repo_root, capture_output=True, text=True, timeout=1200
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done

    invoke("ablate", "--study", "benchmark", "--quick", *stores)
    invoke("report", "--study", "benchmark.quick", *stores, "--out", str(tmp_path / "build"))
    folder = tmp_path / "build" / "benchmark.quick"
    assert (folder / "critical_difference.png").stat().st_size > 10_000
    ranks = pd.read_csv(folder / "ranks.csv")
    micro = ranks[ranks["metric"] == "micro_f1"]
    assert sorted(micro["variant"]) == sorted(
        ["carat", "no_contrastive", "no_reconstruction", "prior", "mlknn", "early_fusion"]
    )
    assert (micro["n_datasets"] == 4).all()
    assert micro["average_rank"].sum() == pytest.approx(21.0)  # ranks 1..6 average to 3.5 on every data set
    for dataset in ("synthetic", "synthetic_unaligned", "synthetic_tabular", "emotions"):
        assert (folder / dataset / "results.csv").exists()
