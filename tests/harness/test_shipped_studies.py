"""Every shipped study runs end to end in its quick form (tiny data, 1 epoch, 1 seed)."""

import pytest
from mlflow.tracking import MlflowClient

from harness import runner, studies

pytestmark = pytest.mark.slow  # every shipped study, run whole (quick)


# The benchmark's smoke test runs, as a user runs it, in tests/reports/test_end_to_end.py; the paper
# study's, on files written in the public layouts, in tests/harness/data/test_paper_study.py.
@pytest.mark.parametrize("name", [n for n in studies.names() if n not in ("benchmark", "paper")])
def test_shipped_study_runs_quick(tmp_path, request, name):
    study = studies.load(name).with_options(quick=True, seeds=1)
    if any(d.loader == "emotions" for d in study.datasets):
        request.getfixturevalue("emotions_dir")  # the real data lives outside the project (skips if absent)
    tracking_uri = f"sqlite:///{tmp_path}/mlflow.db"
    options = runner.RunOptions(storage=str(tmp_path / "optuna.journal"), tracking_uri=tracking_uri, progress=False)

    outcome = runner.run(study, options)

    assert outcome.ok, (outcome.failed, outcome.missing)
    expected = {
        (v, d.name, s, seed)
        for v in study.variants
        for d in study.datasets
        for s in study.settings()
        for seed in study.seeds
    }
    assert {(u["variant"], u["dataset"], u["setting"], u["seed"]) for u in outcome.finished} == expected
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(f"{name}.quick")  # smoke tests keep to their own experiment
    runs = client.search_runs([experiment.experiment_id], "tags.phase = 'repeat'", max_results=1000)
    assert len(runs) == len(expected)
    assert all(r.info.status == "FINISHED" and "test_micro_f1" in r.data.metrics for r in runs)
    if study.tuned:
        tune_runs = client.search_runs([experiment.experiment_id], "tags.phase = 'tune'", max_results=1000)
        assert len(tune_runs) == study.trials * len(study.variants) * len(study.datasets)
