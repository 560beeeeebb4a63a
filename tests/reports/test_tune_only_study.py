"""`invoke tune` ends with its answer (the best trial's value and parameters, the trial counts, the
next commands), and the report of a tune-only study shows its tuning section and calls nothing
missing; from real tiny tuning runs in real Optuna and MLflow stores."""

import re
import shlex
import subprocess
import sys

import optuna
import pandas as pd
import pytest

import reports
from harness import keys
from harness.cli import repeat_options, tuning_status
from harness.storage import open_optuna_storage
from harness.tracking import TrackedRun, client_for, ensure_experiment
from tests.helpers.commands import REPO, invoke_in_process
from tests.helpers.study_runs import mlflow_runs, write_study

SPACE = {"lr": {"low": 1.0e-4, "high": 3.0e-3, "log": True}, "dropout": {"low": 0.0, "high": 0.5}}


def _stores(tmp_path) -> tuple[str, str]:
    return str(tmp_path / "optuna.journal"), f"sqlite:///{tmp_path / 'mlflow.db'}"


def _best_trial(storage: str):
    backend = open_optuna_storage(storage)
    [name] = [s.study_name for s in optuna.get_all_study_summaries(backend) if ".tune." in s.study_name]
    return name, optuna.load_study(study_name=name, storage=backend).best_trial


@pytest.mark.slow  # trains a tiny study's tuning trials, then its repeats, in this process
def test_tune_answers_and_its_report_shows_the_tuning_section(tmp_path, capsys):
    study = write_study(tmp_path, "tiny_tune", variants=("carat",), seeds=(1, 2), search_space=SPACE, trials=3)
    storage, uri = _stores(tmp_path)
    stores = ("--storage", storage, "--tracking-uri", uri, "--checkpoint-dir", str(tmp_path / "checkpoints"))
    code, tuned, err = invoke_in_process(capsys, "tune", "--study", str(study), *stores)
    assert code == 0, err
    name, best = _best_trial(storage)
    lines = tuned.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("carat: best"))
    assert lines[head].startswith(f"carat: best validation micro-F1 {best.value:.4f} (trial {best.number}; ")
    complete, pruned = map(int, re.search(r"(\d+) complete, (\d+) pruned", lines[head]).groups())
    assert complete + pruned == 3 and complete >= 1
    assert set(best.params) == {"lr", "dropout"}  # one line each, name = value
    assert lines[head + 1 : head + 3] == [f"    {param} = {value:.4g}" for param, value in best.params.items()]
    assert "3 tuning trial(s) trained by this command." in tuned
    assert "finished run(s)" not in tuned  # the repeats' line says nothing about a tune-only command
    assert f"invoke dashboard --storage {storage}   (Optuna study {name})" in tuned
    assert f"invoke report --study tiny_tune --tracking-uri {uri}" in tuned
    experiment = client_for(uri).get_experiment_by_name("tiny_tune")
    assert experiment.tags[keys.PLANNED_PHASES] == keys.TUNE

    out_dir = tmp_path / "build"
    report = ("report", "--study", "tiny_tune", "--tracking-uri", uri, "--storage", storage, "--out", str(out_dir))
    code, said, err = invoke_in_process(capsys, *report)
    assert code == 0, err
    assert said.splitlines()[0].split()[:3] == ["tiny_tune", "tuning", "only:"]
    assert f"carat best validation micro-F1 {best.value:.4f} ({complete} complete, {pruned} pruned)" in said
    assert "missing" not in said
    page = (out_dir / "index.html").read_text()
    assert "<h3>Tuning</h3>" in page and "TUNING ONLY" in page
    assert "Missing runs" not in page and "missing seeds" not in page
    assert f"<td>{best.params['lr']:.4g}</td>" in page
    assert (out_dir / "tiny_tune" / "tuning_history_carat_synthetic.png").stat().st_size > 5000
    trials = pd.read_csv(out_dir / "tiny_tune" / "tuning_trials.csv")
    assert len(trials) == 3 and trials.loc[trials["best"], "number"].tolist() == [best.number]

    # The command it printed repeats each seed at the best parameters, without tuning again.
    repeat = next(line for line in lines if "repeat at the best:" in line)
    command = shlex.split(repeat.split("repeat at the best:")[1].split("   (")[0])
    assert command[:2] == ["invoke", "ablate"]
    code, _, err = invoke_in_process(capsys, *command[1:])
    assert code == 0, err
    runs = mlflow_runs(uri, "tiny_tune")
    assert sum(r.data.tags["phase"] == keys.TUNE for r in runs) == 3
    repeats = [r for r in runs if r.data.tags["phase"] == keys.REPEAT]
    assert sorted(int(r.data.tags["seed"]) for r in repeats) == [1, 2]
    assert all(float(r.data.params["lr"]) == pytest.approx(best.params["lr"]) for r in repeats)
    code, said, _ = invoke_in_process(capsys, *report)
    assert said.startswith("tiny_tune            complete: 2 finished repeat runs")
    assert "<h3>Tuning</h3>" in (out_dir / "index.html").read_text()


def test_a_tune_only_study_is_tuning_only_and_misses_nothing(tmp_path):
    storage, uri = _stores(tmp_path)  # the Optuna storage is never written: the section says so
    client = client_for(uri)
    planned = {"planned_variants": "carat", "planned_seeds": "1 2"}
    for name, phases in (("searched", keys.TUNE), ("interrupted", "tune repeat")):
        experiment = ensure_experiment(client, uri, name, tags={**planned, keys.PLANNED_PHASES: phases})
        tags = {"study": name, "variant": "carat", "dataset": "synthetic", "seed": 1, keys.PHASE: keys.TUNE}
        tags |= {"setting": "default", keys.OPTUNA_STUDY: f"{name}.h.tune.carat", keys.CONFIG_HASH: "h"}
        with TrackedRun(client, experiment, "carat / tune 0", tags):
            pass
    summary = reports.generate(None, tracking_uri=uri, storage=storage, out_dir=tmp_path / "build")
    assert summary["searched"]["status"] == "tuning only" and summary["searched"]["missing"] == {}
    assert summary["interrupted"]["status"] == "no finished runs"  # repeats were planned: they are missing
    assert summary["interrupted"]["missing"] == {"carat": [1, 2]}
    page = (tmp_path / "build" / "index.html").read_text()
    searched = page[page.index('id="study-searched"') :]
    assert "TUNING ONLY" in searched and "Missing runs" not in searched
    assert f"Tuning section skipped: no Optuna storage at {storage} (pass --storage)." in searched


def test_the_repeat_command_carries_the_options_given():
    values = {
        "epochs": 2,
        "quick": True,
        "storage": "x.journal",
        "workers": 1,
        "tracking_uri": "postgresql://u:pw@h/db",
    }
    assert repeat_options(values) == "--epochs 2 --tracking-uri 'postgresql://u:***@h/db' --quick"
    assert repeat_options({}) == ""


def test_the_report_line_of_a_tune_only_study():
    found = {"carat": {"best_value": 0.61234, "best_params": {}, "complete": 3, "pruned": 1}}
    found["no_shuffle"] = {"best_value": None, "best_params": {}, "complete": 0, "pruned": 2}
    assert tuning_status({"tuning": found, "n_failed": 0}) == (
        "tuning only: carat best validation micro-F1 0.6123 (3 complete, 1 pruned); no_shuffle: no complete trial, "
        "0 failed"
    )
    assert tuning_status({"tuning": {}, "n_failed": 1}) == "tuning only: no tuning study found, 1 failed"


@pytest.mark.integration  # the shipped study through the command line, as the issue tried it
def test_the_shipped_tune_study_answers_from_the_shell(tmp_path):
    storage, uri = _stores(tmp_path)
    stores = ["--storage", storage, "--tracking-uri", uri]
    tune = [sys.executable, "-m", "invoke", "tune", "--study", "tune", "--quick", *stores]
    tune += ["--checkpoint-dir", str(tmp_path / "checkpoints")]
    done = subprocess.run(tune, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    _, best = _best_trial(storage)
    assert f"carat: best validation micro-F1 {best.value:.4f}" in done.stdout
    for param in ("lr", "dropout", "gamma_s", "gamma_sf", "threshold"):
        assert f"    {param} = " in done.stdout
    report = [sys.executable, "-m", "invoke", "report", "--study", "tune.quick", *stores, "--out", str(tmp_path / "r")]
    said = subprocess.run(report, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert said.returncode == 0, said.stderr[-3000:]
    assert said.stdout.startswith("tune.quick           tuning only: carat best validation micro-F1")
    assert "missing" not in said.stdout
    assert "<h3>Tuning</h3>" in (tmp_path / "r" / "index.html").read_text()
