"""The run options are declared once (harness.options.RUN_OPTIONS): the invoke tasks, their help,
RunOptions and the study overrides are all made from that table."""

import dataclasses

import pytest
from invoke import Context

import tasks
from harness import keys, options, studies
from harness.cli import harness_task, with_options
from harness.options import RUN, RUN_OPTIONS, STUDY, RunOption, RunOptions


@pytest.mark.parametrize("task", [tasks.ablate, tasks.tune])
def test_every_option_of_the_table_is_an_option_of_the_task_with_its_help_and_default(task):
    arguments = {a.name: a for a in task.get_arguments()}
    for option in RUN_OPTIONS:
        assert option.name in arguments, option.name
        assert arguments[option.name].default == option.default
        assert arguments[option.name].help == option.help
    assert set(arguments) == {"study", *(o.name for o in RUN_OPTIONS)}


def test_run_options_are_the_fields_of_RunOptions_and_study_options_change_the_study():
    fields = {f.name: f.default for f in dataclasses.fields(RunOptions)}
    for option in RUN_OPTIONS:
        if option.target == RUN:
            assert fields[option.name] == option.default
        else:
            assert option.target == STUDY and option.apply is not None and option.name not in fields
    assert set(fields) - {o.name for o in RUN_OPTIONS} == {"progress", "tune_only"}  # set by the command
    study = studies.load("no_shuffle")
    changed = study.with_options(epochs=2, seeds=1, preset="paper", precision="bf16", trials=3, quick=True)
    assert (changed.epochs, changed.seeds, changed.preset, changed.trials, changed.quick) == (2, (1,), "paper", 3, True)
    assert changed.overrides["precision"] == "bf16"
    with pytest.raises(TypeError, match="unknown study option"):
        study.with_options(workers=2)  # a RUN option is no change of the study


def test_a_new_row_is_a_new_option_of_the_task_and_reaches_the_body():
    """Adding a run option touches one place: a row (here added to a copy of the table)."""
    new = RunOption("max_hours", None, "stop queueing units after this many hours", RUN, float | None)
    table = (*RUN_OPTIONS, new)
    seen = {}

    def body(c, study, **values):
        seen.update(values, study=study)

    task = harness_task(name="demo", help={o.name: o.help for o in table})(with_options(body, table, {"study": "x"}))
    parsed = {a.name: a.default for a in task.get_arguments()}  # what invoke's parser passes, defaults filled
    assert parsed["max_hours"] is None
    task(Context(), **{**parsed, "max_hours": 2.5})
    assert seen["max_hours"] == 2.5 and seen["study"] == "x" and set(seen) == {"study", *(o.name for o in table)}
    assert options.split({o.name: o.default for o in RUN_OPTIONS})[1].keys() == {
        o.name for o in RUN_OPTIONS if o.target == RUN
    }


def test_the_degenerate_kinds_are_structured_beside_the_reasons():
    reasons = "constant predictor (no label varies); no better than the label prior on validation (0.1 <= 0.2)"
    tags = keys.degenerate_tags(reasons)
    assert tags == {
        keys.DEGENERATE: reasons,
        keys.DEGENERATE_KINDS: "constant predictor; no better than the label prior on validation",
    }
    assert keys.degenerate_tags(None) == {} and keys.degenerate_kinds(float("nan")) is None
