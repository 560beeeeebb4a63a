"""Numbers a researcher can believe, checked as a user meets them (`invoke ablate` in a separate
process): a changed data file is a new configuration that runs, and the command line and the
report then agree; a run killed mid-way resumes at its epoch and ends bit-identical; smoke tests
keep to their own experiment; bad study options stop with one line and create nothing."""

import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

import reports
from harness.data import load, save_npz
from tests.helpers.study_runs import ablate_command, kill_group, mlflow_runs, run, start, write_study

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # study runs in subprocesses


def _stores(folder: Path) -> tuple[str, str]:
    return str(folder / "optuna.journal"), f"sqlite:///{folder / 'mlflow.db'}"


def _cli_means(output: str) -> dict[str, float]:
    """variant -> mean test micro-F1, from the summary table `invoke ablate` prints."""
    table = output.split("test micro-F1 over seeds")[1]
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"^(\w+)\s+default\s+([\d.]+)", table, re.M)}


def test_a_changed_data_file_runs_again_and_the_cli_and_the_report_agree(tmp_path):
    data_file = save_npz(load("synthetic", size="tiny", seq_len=8), tmp_path / "data.npz")
    study = write_study(
        tmp_path,
        "changing",
        variants=("br", "knn_br"),
        seeds=(1, 2),
        dataset="npz",
        dataset_options={},
        data_path=str(data_file),
    )
    storage, tracking_uri = _stores(tmp_path)
    command = ablate_command(study, storage, tracking_uri)

    code, first = run(command, tmp_path / "first.log")
    assert code == 0, first
    assert "4 run(s) trained by this command" in first

    with np.load(data_file) as arrays:  # the same path, one test label flipped
        changed = dict(arrays)
    changed["test/labels"][0, 0] = 1 - changed["test/labels"][0, 0]
    np.savez(data_file, **changed)

    code, second = run(command, tmp_path / "second.log")
    assert code == 0, second
    assert "4 run(s) trained by this command" in second  # a new configuration: it ran
    before, after = _cli_means(first), _cli_means(second)
    assert before != after  # the numbers printed are the new data's

    reports.generate(["changing"], tracking_uri=tracking_uri, storage=storage, out_dir=tmp_path / "build")
    table = pd.read_csv(tmp_path / "build" / "changing" / "results.csv").set_index("variant")
    assert {v: round(table.loc[v, "micro_f1_mean"], 4) for v in table.index} == after
    fingerprints = {
        r.data.tags["data_fingerprint"]
        for r in mlflow_runs(tracking_uri, "changing")
        if r.data.tags.get("phase") == "repeat"
    }
    assert len(fingerprints) == 2  # each run knows which data it read
    page = (tmp_path / "build" / "index.html").read_text()
    assert "older) configurations of this study are not reported" in page


def _checkpoint_epoch(folder: Path) -> int:
    for path in folder.rglob("*.pt"):
        try:
            return int(torch.load(path, weights_only=True)["epoch"])
        except Exception:  # being replaced this instant
            return 0
    return 0


def test_a_run_killed_during_an_epoch_resumes_there_and_ends_bit_identical(tmp_path):
    study = write_study(tmp_path, "resume", variants=("carat",), seeds=(1,), epochs=4)
    killed_dir, clean_dir = tmp_path / "killed", tmp_path / "clean"
    killed_dir.mkdir(), clean_dir.mkdir()
    checkpoints = killed_dir / "checkpoints"
    command = ablate_command(study, *_stores(killed_dir), "--checkpoint-dir", str(checkpoints))

    process = start(command, tmp_path / "killed.log")
    try:
        deadline = time.monotonic() + 240
        while (saved := _checkpoint_epoch(checkpoints)) < 2:
            assert process.poll() is None, (tmp_path / "killed.log").read_text()
            assert time.monotonic() < deadline, "no checkpoint of epoch 2 appeared"
            time.sleep(0.05)
    finally:
        kill_group(process)  # SIGKILL during epoch saved + 1 >= 3
    saved = _checkpoint_epoch(checkpoints)
    assert 2 <= saved < 4

    code, output = run(command, tmp_path / "resumed.log")
    assert code == 0, output
    code, output = run(
        ablate_command(study, *_stores(clean_dir), "--checkpoint-dir", str(clean_dir / "ck")), tmp_path / "clean.log"
    )
    assert code == 0, output

    def repeat_run(folder):
        runs = [r for r in mlflow_runs(_stores(folder)[1], "resume") if r.data.tags.get("phase") == "repeat"]
        finished = [r for r in runs if r.info.status == "FINISHED"]
        assert len(finished) == 1
        return finished[0], runs

    resumed, attempts = repeat_run(killed_dir)
    clean, _ = repeat_run(clean_dir)
    assert int(resumed.data.tags["resumed_from_epoch"]) == saved  # it started at the epoch it was killed in
    assert sorted(r.info.status for r in attempts) == ["FAILED", "FINISHED"]  # the killed attempt is on record
    test_metrics = {k: v for k, v in clean.data.metrics.items() if k.startswith("test_")}
    assert {k: resumed.data.metrics[k] for k in test_metrics} == test_metrics  # bit-identical
    losses = [
        MlflowClient(_stores(f)[1]).get_metric_history(r.info.run_id, "train_loss")
        for f, r in ((killed_dir, resumed), (clean_dir, clean))
    ]
    assert [(m.step, m.value) for m in sorted(losses[0], key=lambda m: m.step)] == [
        (m.step, m.value) for m in sorted(losses[1], key=lambda m: m.step)
    ]
    assert not list(checkpoints.rglob("*.pt"))  # cleaned up once the run was in MLflow


def test_smoke_tests_keep_to_their_own_experiment(tmp_path):
    study = write_study(tmp_path, "apart", variants=("br",), seeds=(1, 2), epochs=2)
    storage, tracking_uri = _stores(tmp_path)
    for extra in (["--quick"], []):
        code, output = run(ablate_command(study, storage, tracking_uri, *extra), tmp_path / "out.log")
        assert code == 0, output
    real = [r for r in mlflow_runs(tracking_uri, "apart") if r.data.tags.get("phase") == "repeat"]
    quick = [r for r in mlflow_runs(tracking_uri, "apart.quick") if r.data.tags.get("phase") == "repeat"]
    assert len(real) == 2 and len(quick) == 2
    assert len({r.data.tags["config_hash"] for r in real}) == 1
    assert not {r.data.tags["config_hash"] for r in real} & {r.data.tags["config_hash"] for r in quick}
    assert all(r.data.params["epochs"] == "2" for r in real)


@pytest.mark.parametrize(
    "options, expected",
    [
        ({"colour": "red"}, r"field 'dataset_options': unknown option\(s\) \['colour'\] for data set 'synthetic'"),
        ({"size": "huge"}, r"data set 'synthetic' \(synthetic\): size must be one of"),
    ],
)
def test_bad_study_options_stop_with_one_line_and_create_nothing(tmp_path, options, expected):
    study = write_study(tmp_path, "bad", dataset_options=options)
    storage, tracking_uri = _stores(tmp_path)
    code, output = run(ablate_command(study, storage, tracking_uri), tmp_path / "out.log")
    assert code == 2, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {study}"), output
    assert re.search(expected, lines[0])
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "optuna.journal").exists()


CONSTANT_MODEL = '''
"""A model that ignores its input: one learned logit per label (what a collapsed CARAT does)."""
from dataclasses import dataclass

import torch
import torch.nn.functional as F

import models
from models.base import LossOutput, NeuralModel


@dataclass(frozen=True)
class ConstantConfig:
    pass


class Constant(NeuralModel):
    def __init__(self, spec):
        super().__init__()
        self.config = ConstantConfig()
        self.bias = torch.nn.Parameter(torch.zeros(spec.n_labels))

    def forward(self, inputs, masks):
        batch = next(iter(inputs.values())).shape[0]
        return torch.sigmoid(self.bias).expand(batch, -1)

    def training_loss(self, inputs, masks, labels):
        batch = labels.shape[0]
        loss = F.binary_cross_entropy_with_logits(self.bias.expand(batch, -1), labels)
        return LossOutput(loss, {"bce": loss})


@models.register
def constant_scores(spec, preset="small", **overrides):
    """The same scores for every sample."""
    return Constant(spec)
'''


def test_a_run_that_predicts_a_constant_is_flagged_in_mlflow_and_the_cli(tmp_path):
    (tmp_path / "constant.py").write_text(CONSTANT_MODEL)
    study = write_study(
        tmp_path,
        "flags",
        variants=("constant_scores", "br"),
        seeds=(1, 2),
        epochs=2,
        plugins=["constant.py"],
        dataset="synthetic_tabular",
        dataset_options={"n_train": 300, "n_valid": 100, "n_test": 100},
    )
    storage, tracking_uri = _stores(tmp_path)
    code, output = run(ablate_command(study, storage, tracking_uri), tmp_path / "out.log")
    assert code == 0, output
    assert re.search(
        r"WARNING: constant_scores / default: 2 of 2 runs are no finding \(seeds 1, 2\): constant "
        r"predictor",
        output,
    )
    assert "WARNING: br" not in output  # a model that uses its input is not flagged
    runs = {
        (r.data.tags["variant"], r.data.tags["seed"]): r
        for r in mlflow_runs(tracking_uri, "flags")
        if r.data.tags.get("phase") == "repeat"
    }
    for seed in ("1", "2"):
        flagged = runs[("constant_scores", seed)]
        assert flagged.data.tags["degenerate"].startswith("constant predictor")
        assert flagged.data.metrics["test_score_spread"] < 1e-6
        assert "degenerate" not in runs[("br", seed)].data.tags
        assert runs[("br", seed)].data.metrics["test_score_spread"] > 0.05

    reports.generate(["flags"], tracking_uri=tracking_uri, storage=storage, out_dir=tmp_path / "build")
    table = (tmp_path / "build" / "flags" / "results.md").read_text()
    assert re.search(r"^\| constant_scores ⚠ 2 of 2 runs flagged \|", table, re.M)  # a marked row
    assert re.search(r"^\| br \|", table, re.M)  # the model that learns is not marked
    assert "constant predictor" in (tmp_path / "build" / "index.html").read_text()
