"""Study-wide ``overrides:`` reach the variants that have the field (harness/run/overrides.py); a
field no variant has is refused in one line; what reached each variant is logged and reported, and
so is the queue size CARAT chose from the data."""

import pandas as pd
import pytest

from harness import runner, studies
from harness.run import make_plan
from harness.run.overrides import applied_text
from harness.run.plan import build_run
from models.carat import auto_queue_size
from reports.configuration import _configuration_table
from tests.helpers.study_runs import mlflow_runs

TINY = {"dataset": "synthetic", "dataset_options": {"size": "tiny", "seq_len": 8}}


def _study(**fields):
    return studies.from_dict({"name": "mixed", "variants": ["carat", "early_fusion"], "seeds": [1], **TINY, **fields})


def _plan(study):
    return make_plan(study, runner.RunOptions(progress=False))


def test_a_study_wide_model_field_reaches_only_the_variants_that_have_it():
    plan = _plan(_study(overrides={"queue_size": 8192, "lr": 0.01}))
    assert plan.study.params_for("carat", "default")["queue_size"] == 8192
    assert "queue_size" not in plan.study.params_for("early_fusion", "default")
    # a training field is a field of every variant
    assert plan.study.params_for("early_fusion", "default")["lr"] == 0.01
    assert applied_text(plan.study, "carat") == "lr=0.01, queue_size=8192"
    assert applied_text(plan.study, "early_fusion") == "lr=0.01"


def test_variant_overrides_still_win_over_study_wide_ones():
    plan = _plan(_study(overrides={"dropout": 0.2}, variant_overrides={"carat": {"dropout": 0.3}}))
    assert plan.study.params_for("carat", "default")["dropout"] == 0.3
    assert applied_text(plan.study, "carat") == "dropout=0.3"


def test_deciding_where_overrides_go_leaves_the_configuration_hash_alone():
    study = _study(overrides={"queue_size": 8192})
    plan = _plan(study)
    assert plan.study.override_targets == {"carat": ("queue_size",), "early_fusion": ()}
    assert plan.study.fingerprint() == study.fingerprint()


def test_a_field_no_variant_has_is_refused_in_one_line_naming_it_and_the_variants():
    with pytest.raises(studies.StudyError) as refused:
        _plan(_study(overrides={"queue_sise": 8192, "queue_size": 8192}))
    message = str(refused.value)
    assert "\n" not in message
    assert "'queue_sise'" in message and "carat, early_fusion" in message and "'queue_size'" not in message


def _runs(rows: list[dict]) -> pd.DataFrame:
    base = {"setting": "default", "phase": "repeat", "status": "FINISHED", "seed": 1}
    return pd.DataFrame([{**base, **row} for row in rows])


def test_the_configuration_table_shows_per_variant_what_applied_and_the_queue_size():
    runs = _runs(
        [
            {"variant": "carat", "params.overrides": "queue_size=8192", "params.queue_size": "8192"},
            {"variant": "early_fusion", "params.overrides": "none"},
        ]
    )
    rows = {row[0].text: row[1].text for row in _configuration_table(runs, runs, "h").rows}
    assert rows["Overrides applied (study file)"] == "queue_size=8192 (carat); none (early_fusion)"
    assert rows["Contrastive queue size"] == "8192 (carat); n/a (no queue) (early_fusion)"


def test_without_a_queue_in_the_study_the_table_has_no_queue_row():
    runs = _runs([{"variant": "early_fusion", "params.overrides": "none"}])
    titles = [row[0].text for row in _configuration_table(runs, runs, "h").rows]
    assert "Contrastive queue size" not in titles and "Overrides applied (study file)" in titles


@pytest.mark.slow  # a whole (tiny) study through runner.run
def test_a_mixed_study_runs_and_logs_what_applied_and_the_queue_size_chosen_from_the_data(tmp_path):
    study = _study(epochs=1, overrides={"min_queue_size": 64})
    options = runner.RunOptions(
        storage=str(tmp_path / "optuna.journal"),
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        progress=False,
        checkpoint_dir=str(tmp_path / "checkpoints"),
    )
    outcome = runner.run(study, options)
    assert outcome.ok and len(outcome.finished) == 2
    params = {r.data.tags["variant"]: r.data.params for r in mlflow_runs(options.tracking_uri, "mixed")}
    assert params["carat"]["overrides"] == "min_queue_size=64"
    assert params["early_fusion"]["overrides"] == "none" and "queue_size" not in params["early_fusion"]
    # the size CARAT chose is logged, not the None of the study: one push of the tiny data's batch
    data = runner.load_data(study, "synthetic")
    plan = _plan(study)
    _, model = build_run(plan.study, "carat", data.spec, plan.study.params_for("carat", "default"), 1, options)
    batch = min(int(params["carat"]["batch_size"]), data.splits["train"].n)
    assert params["carat"]["queue_size"] == str(auto_queue_size(model.push_size(batch), 64))
