"""A checkpoint damaged mid-study (a full disk, a copy cut short) costs epochs, never the unit."""

import time

import pytest

from tests.helpers.study_runs import ablate_command, assert_each_unit_done_once, kill_group, run, start, write_study


@pytest.mark.integration
def test_a_checkpoint_truncated_mid_study_is_set_aside_and_the_rerun_finishes_every_unit_once(tmp_path):
    study = write_study(tmp_path, "cut", variants=("carat",), seeds=(1,), epochs=40)
    storage, tracking_uri = str(tmp_path / "optuna.journal"), f"sqlite:///{tmp_path / 'mlflow.db'}"
    checkpoints = tmp_path / "checkpoints"
    command = ablate_command(study, storage, tracking_uri, "--checkpoint-dir", str(checkpoints))
    process = start(command, tmp_path / "first.log")
    try:
        deadline = time.monotonic() + 240
        while not list(checkpoints.rglob("*.pt.prev")):  # two epochs saved: a current one and the previous
            assert process.poll() is None, f"ended before the cut:\n{(tmp_path / 'first.log').read_text()}"
            assert time.monotonic() < deadline, "no second checkpoint was written"
            time.sleep(0.05)
    finally:
        kill_group(process)  # SIGKILL mid-unit
    (current,) = checkpoints.rglob("*.pt")
    current.write_bytes(current.read_bytes()[: current.stat().st_size // 2])  # cut in half

    code, output = run(command, tmp_path / "second.log")
    assert code == 0, output
    assert "cannot be read" in output and f"{current.name}.corrupt" in output
    assert "resuming from the previous checkpoint" in output or "this run starts at epoch 1" in output
    assert current.with_name(current.name + ".corrupt").is_file()
    repeats = assert_each_unit_done_once(storage, tracking_uri, "cut", ("carat",), (1,))
    (finished,) = [r for r in repeats if r.info.status == "FINISHED"]
    assert int(finished.data.tags.get("resumed_from_epoch", 0)) >= 1  # it went on from a readable checkpoint
