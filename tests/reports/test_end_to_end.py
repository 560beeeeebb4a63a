"""A real (quick) study run through the runner, then reported: the CSV matches the MLflow runs."""
import pandas as pd
import pytest

import reports
from harness import runner, studies
from harness.tracking import client_for


def test_quick_study_report_matches_its_runs(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    study = studies.load("no_shuffle").with_options(quick=True, seeds=2)
    outcome = runner.run(
        study, runner.RunOptions(storage=str(tmp_path / "optuna.journal"), tracking_uri=uri, progress=False)
    )
    assert outcome.ok

    summary = reports.generate(["no_shuffle.quick"], tracking_uri=uri, storage=str(tmp_path / "optuna.journal"),
                               out_dir=tmp_path / "build")  # fmt: skip
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
