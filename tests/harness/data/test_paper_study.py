"""The shipped `paper` study as a user runs it: the three public files in $CARAT_DATA, or one missing."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import test_mosei
import torch
from mlflow.tracking import MlflowClient
from test_mosei import M3ED_DIMS, aligned_layout, unaligned_files

from harness import studies

REPO = Path(__file__).resolve().parents[3]
PAPER_DATASETS = ("mosei_aligned", "mosei_unaligned", "m3ed")


# More training samples than the k-NN baselines' k = 10 neighbours, few enough for a quick run.
SIZES = {"train": 16, "valid": 4, "test": 4}


def write_public_files(folder: Path, monkeypatch) -> None:
    """Small files in the three public layouts, under their public names."""
    folder.mkdir(parents=True, exist_ok=True)
    monkeypatch.setattr(test_mosei, "SIZES", SIZES)  # aligned_layout's split sizes
    unaligned_files(folder, SIZES)  # mosei_senti_data_noalign.pkl, and train_valid_test.pt with its labels
    torch.save(aligned_layout(), folder / "train_valid_test.pt")  # the aligned file (same split sizes)
    torch.save(aligned_layout(M3ED_DIMS, n_labels=7), folder / "m3ed_data.pt")


def ablate_paper(tmp_path: Path, data: Path, *extra: str, timeout: int = 1500) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "invoke", "ablate", "--study", "paper", "--quick", "--seeds", "1"]
    command += ["--storage", str(tmp_path / "optuna.journal"), "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"]
    command += ["--checkpoint-dir", str(tmp_path / "checkpoints"), *extra]
    env = {**os.environ, "CARAT_DATA": str(data), "PYTHONUNBUFFERED": "1"}
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def test_the_paper_study_names_every_section_7_variant_and_the_paper_data():
    study = studies.load("paper")
    assert study.preset == "paper" and tuple(d.name for d in study.datasets) == PAPER_DATASETS
    section_7 = {"carat", "no_contrastive", "no_shuffle", "no_sample_shuffle", "no_modality_shuffle"}
    section_7 |= {"no_reconstruction", "no_maxpool", "no_aggregation"}
    assert section_7 <= set(study.variants) and {"prior", "mlknn", "mult", "early_fusion"} <= set(study.variants)
    assert all(d.options == {"size": "tiny"} for d in study.with_options(quick=True).datasets)


@pytest.mark.integration
def test_a_missing_file_stops_the_paper_study_with_one_line_and_creates_nothing(tmp_path, monkeypatch):
    data = tmp_path / "data"
    write_public_files(data, monkeypatch)
    (data / "m3ed_data.pt").unlink()
    done = ablate_paper(tmp_path, data, timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == [
        f"error: m3ed: no file m3ed_data.pt at {data / 'm3ed_data.pt'} (looked in CARAT_DATA={data}; put the "
        "public file there, set CARAT_DATA to the folder holding it, or pass --data-path)"
    ]
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "optuna.journal").exists()  # nothing created


@pytest.mark.integration
@pytest.mark.slow
def test_the_paper_study_runs_quick_on_the_three_public_layouts(tmp_path, monkeypatch):
    """All 17 variants on the three layouts, at the small preset: at the paper preset the same quick run
    took 30-46 s per CARAT unit and 75 s for MulT on aligned MOSEI here (2 shared CPU cores, 5 training
    samples), too long for a test (51 units; the unaligned ones are longer)."""
    data = tmp_path / "data"
    write_public_files(data, monkeypatch)
    done = ablate_paper(tmp_path, data, "--preset", "small")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    study = studies.load("paper")
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("paper.quick")
    runs = client.search_runs([experiment.experiment_id], "tags.phase = 'repeat'", max_results=1000)
    got = {(r.data.tags["variant"], r.data.tags["dataset"]) for r in runs if r.info.status == "FINISHED"}
    assert got == {(v, d) for v in study.variants for d in PAPER_DATASETS} and len(runs) == len(got)
    assert all(r.data.params["preset"] == "small" for r in runs)
    # The side-by-side main table from these runs (what the report shows, see reports.tables).
    from harness import results
    from reports import tables

    table = tables.paper_main_table(results.runs(client, "paper.quick"))
    assert [row[0].text.split(" ")[0] for row in table.rows] == list(study.variants)
    assert all(row[-1].text == "1 / 1" for row in table.rows)
