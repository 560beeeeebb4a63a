"""The tuning section and `invoke tune`'s answer, from real Optuna studies in a journal storage."""

import math

import optuna
import pandas as pd
import pytest

from harness.storage import open_optuna_storage
from reports import tuning

EXPERIMENT, CONFIG_HASH = "tune.quick", "abc123"


def study_name(variant):  # as harness.runner.Plan.tune_queue_names names them
    return f"{EXPERIMENT}.{CONFIG_HASH}.tune.{variant}"


@pytest.fixture(scope="module")
def journal(tmp_path_factory):
    path = tmp_path_factory.mktemp("optuna") / "optuna.journal"
    storage = open_optuna_storage(str(path))
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial):
        lr = trial.suggest_float("lr", 1e-4, 1e-2, log=True)
        dropout = trial.suggest_float("dropout", 0.0, 0.5)
        trial.report(0.1, 1)
        if trial.number == 3:
            raise optuna.TrialPruned("pruned at epoch 1")
        return 0.9 + 0.05 * math.log10(lr) - 0.002 * dropout  # lr matters far more than dropout

    for variant, n in (("carat", 12), ("no_shuffle", 1)):
        study = optuna.create_study(
            study_name=study_name(variant),
            storage=storage,
            direction="maximize",
            sampler=optuna.samplers.RandomSampler(seed=0),
        )
        study.optimize(objective, n_trials=n)
    return path


def test_summaries_give_the_best_trial_and_the_counts(journal):
    names = {("carat", "synthetic"): study_name("carat"), ("no_shuffle", "synthetic"): study_name("no_shuffle")}
    names[("mult", "synthetic")] = study_name("mult")  # never tuned: left out
    summaries = tuning.load(str(journal), names)
    assert set(summaries) == {("carat", "synthetic"), ("no_shuffle", "synthetic")}
    carat = summaries["carat", "synthetic"]
    study = optuna.load_study(study_name=study_name("carat"), storage=open_optuna_storage(str(journal)))
    assert carat.n_complete == 11 and carat.n_pruned == 1
    assert carat.best_trial == study.best_trial.number and carat.best_value == pytest.approx(study.best_value)
    assert carat.best_params == study.best_params and set(carat.best_params) == {"lr", "dropout"}

    trials = tuning.trials_table(summaries.values())
    assert len(trials) == 13 and trials["best"].sum() == 2
    assert set(trials.loc[trials["variant"] == "carat", "state"]) == {"COMPLETE", "PRUNED"}
    best = tuning.best_params_table(summaries.values())
    assert list(best["variant"]) == ["carat", "no_shuffle"] and best.loc[0, "lr"] == study.best_params["lr"]
    assert best.loc[0, "complete"] == 11 and best.loc[0, "pruned"] == 1


def test_figures_are_optunas_own_history_and_importances(journal, tmp_path):
    storage = str(journal)
    studies = tuning.load_studies(storage, {("carat", "synthetic"): study_name("carat")})
    studies[("no_shuffle", "synthetic")] = tuning.load_studies(storage, {("x", "y"): study_name("no_shuffle")})[
        "x", "y"
    ]
    drawn = tuning.figures(studies, tmp_path / "figures")
    carat = drawn["carat", "synthetic"]
    assert carat["history"].is_file() and carat["importances"].is_file()
    assert carat["history"].stat().st_size > 5000  # a real plot, not an empty canvas
    assert "needs 2 complete trials" in drawn["no_shuffle", "synthetic"]["importances"]  # one trial only
    importance = tuning.importances(studies["carat", "synthetic"])
    assert set(importance) == {"lr", "dropout"} and importance["lr"] > importance["dropout"]


def test_answer_lines_name_the_best_and_the_next_commands(journal):
    summaries = tuning.load(str(journal), {("carat", "synthetic"): study_name("carat")})
    carat = summaries["carat", "synthetic"]
    lines = tuning.answer_lines(summaries, "tune", extra_options="--quick", storage="runs/optuna.journal")
    assert lines[0].startswith(f"carat: best validation micro-F1 {carat.best_value:.4f} (trial {carat.best_trial}; ")
    assert "11 complete, 1 pruned" in lines[0]
    # the parameters one per line, name = value
    assert lines[1:3] == [
        f"    lr = {carat.best_params['lr']:.4g}",
        f"    dropout = {carat.best_params['dropout']:.4g}",
    ]
    assert lines[3].strip().startswith("repeat at the best:  invoke ablate --study tune --quick --storage runs/")
    assert lines[4].strip() == (
        f"explore the trials:  invoke dashboard --storage runs/optuna.journal   (Optuna study {study_name('carat')})"
    )
    several = tuning.answer_lines(summaries, "tune", several_datasets=True)
    assert several[0].startswith("carat on synthetic: best")
    assert tuning.answer_lines({}, "tune") == ["No tuning study of this configuration was found in the Optuna storage."]


def test_study_names_come_from_the_tuning_runs_tags():
    runs = pd.DataFrame(
        {
            "variant": ["carat", "carat", "carat", "no_shuffle"],
            "dataset": ["synthetic"] * 4,
            "phase": ["tune", "tune", "repeat", "tune"],
            "optuna_study": [
                study_name("carat"),
                study_name("carat"),
                f"{EXPERIMENT}.repeat",
                study_name("no_shuffle"),
            ],
        }
    )
    assert tuning.names_from_runs(runs) == {
        ("carat", "synthetic"): study_name("carat"),
        ("no_shuffle", "synthetic"): study_name("no_shuffle"),
    }
    assert tuning.names_from_runs(pd.DataFrame()) == {}


def test_the_section_of_a_tuning_study_in_one_call(journal, tmp_path):
    names = {("carat", "synthetic"): study_name("carat"), ("mult", "synthetic"): study_name("mult")}
    section = tuning.build_section(str(journal), names, tmp_path)
    assert list(section.summaries) == [("carat", "synthetic")] and len(section.trials) == 12
    assert section.best.loc[0, "best_trial"] == section.summaries["carat", "synthetic"].best_trial
    assert section.figures["carat", "synthetic"]["history"].is_file()
    assert section.notes == [f"No Optuna study {study_name('mult')!r} for mult on synthetic in the storage."]
