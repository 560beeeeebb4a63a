"""The loader registry and the ``invoke data`` task (run as a user would, in a subprocess)."""

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
from invoke import Context
from invoke.exceptions import Exit

from harness import data


def test_names_and_descriptions():
    assert data.names() == [
        "synthetic",
        "synthetic_tabular",
        "mosei_aligned",
        "mosei_unaligned",
        "m3ed",
        "emotions",
        "arff",
        "npz",
    ]
    described = data.describe()
    assert "size" in described["synthetic"]["options"] and "truncate" in described["m3ed"]["options"]
    assert "mask_padding" in described["mosei_unaligned"]["options"]
    assert "n_labels" in described["synthetic_tabular"]["options"]
    assert all(entry["description"] for entry in described.values())


def test_unknown_name_and_option_are_refused_with_the_valid_ones():
    with pytest.raises(ValueError, match="unknown dataset 'mosi'; valid: synthetic, synthetic_tabular, mosei_aligned"):
        data.load("mosi")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['sizes'\]; valid options: size, aligned"):
        data.load("synthetic", sizes="tiny")


def invoke_data(repo_root, *args):
    return subprocess.run(
        [sys.executable, "-m", "invoke", "data", *args], cwd=repo_root, capture_output=True, text=True, timeout=120
    )


@pytest.mark.integration  # `invoke data` in a subprocess
def test_cli_json_for_synthetic(repo_root):
    done = invoke_data(repo_root, "--json", "--option", "size=tiny", "--option", "seq_len=12")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)  # exactly one JSON object
    assert summary["dataset"] == "synthetic"
    assert summary["modalities"] == {"text": [12, 300], "visual": [12, 35], "audio": [12, 74]}
    assert summary["labels"] == ["happy", "sad", "anger", "surprise", "disgust", "fear"]
    expected = data.load("synthetic", size="tiny", seq_len=12).summary()["splits"]
    assert summary["splits"] == expected and summary["splits"]["train"]["n"] == 32


@pytest.mark.integration  # `invoke data` in a subprocess
def test_cli_json_for_emotions(repo_root, emotions_dir):
    done = invoke_data(repo_root, "--dataset", "emotions", "--data-path", str(emotions_dir), "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["modalities"] == {"timbre": [1, 64], "rhythm": [1, 8]}
    splits = summary["splits"]
    train_total = [a + b for a, b in zip(splits["train"]["label_counts"], splits["valid"]["label_counts"])]
    assert train_total == [119, 107, 168, 89, 95, 131]
    assert splits["test"] == {"n": 202, "label_counts": [54, 59, 96, 59, 73, 58]}


@pytest.fixture(scope="module")
def data_task(repo_root):
    """The task function itself, for the cases that need no separate process."""
    spec = importlib.util.spec_from_file_location("project_tasks", repo_root / "tasks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return lambda **options: module.data.body(Context(), **options)


def test_cli_table(data_task, capsys):
    data_task(option=["size=tiny"])
    out = capsys.readouterr().out
    assert "text (T=60, D=300)" in out and "surprise" in out
    assert any(line.split()[:2] == ["train", "32"] for line in out.splitlines())


@pytest.mark.integration  # `invoke data` in a subprocess
def test_cli_bad_input_is_one_message_without_traceback(repo_root):
    done = invoke_data(repo_root, "--dataset", "mosei_aligned", "--data-path", "/nonexistent/folder")
    assert done.returncode == 1
    assert "train_valid_test.pt" in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(dataset="nope"), "unknown dataset 'nope'"),
        (dict(option=["size"]), "KEY=VALUE"),
        (dict(option=["size=huge"]), "size must be one of"),
        (dict(dataset="npz", data_path="BAD"), "bad.npz [split 'train']: missing split 'train'"),
    ],
)
def test_task_turns_bad_input_into_exit_1(data_task, tmp_path, options, message):
    np.savez(tmp_path / "bad.npz", modalities=np.array(["a"]), label_names=np.array(["x"]))
    if options.get("data_path") == "BAD":
        options = {**options, "data_path": str(tmp_path / "bad.npz")}
    with pytest.raises(Exit) as info:
        data_task(**options)
    assert info.value.code == 1 and message in info.value.message
