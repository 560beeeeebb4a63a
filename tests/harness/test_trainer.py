"""The trainer on a tiny hand-made data set and a tiny model defined here."""

import re

import numpy as np
import pytest
import torch

from harness import checkpoints, trainer
from harness.config import TrainConfig
from harness.data.dataset import MultimodalDataset, Split
from models.base import LossOutput, NeuralModel, masked_mean


def _split(n, rng):
    a = rng.normal(size=(n, 3, 4)).astype(np.float32)
    b = rng.normal(size=(n, 1, 2)).astype(np.float32)
    labels = np.stack([a[:, :, 0].mean(1) > 0, b[:, 0, 1] > 0], axis=1).astype(np.float32)
    masks = {"a": np.ones((n, 3), bool), "b": np.ones((n, 1), bool)}
    return Split(features={"a": a, "b": b}, masks=masks, labels=labels)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return MultimodalDataset(
        name="toy",
        modalities=("a", "b"),
        label_names=("x", "y"),
        splits={"train": _split(96, rng), "valid": _split(32, rng), "test": _split(32, rng)},
    )


class Linear(NeuralModel):
    def __init__(self, blow_up_at: int | None = None, nan_grad_at: int | None = None):
        super().__init__()
        self.head = torch.nn.Linear(6, 2)
        self.zero = torch.nn.Parameter(torch.zeros(()))
        self.config = {"blow_up_at": blow_up_at}
        self.calls = 0
        self.blow_up_at = blow_up_at
        self.nan_grad_at = nan_grad_at
        self.batch_sizes = []

    def logits(self, inputs, masks):
        return self.head(torch.cat([masked_mean(inputs[m], masks[m]) for m in ("a", "b")], 1))

    def forward(self, inputs, masks):
        return torch.sigmoid(self.logits(inputs, masks))

    def training_loss(self, inputs, masks, labels):
        self.calls += 1
        self.batch_sizes.append(len(labels))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(self.logits(inputs, masks), labels)
        if self.blow_up_at is not None and self.calls >= self.blow_up_at:
            loss = loss * float("nan")
        if self.nan_grad_at is not None and self.calls >= self.nan_grad_at:
            loss = loss + 0.0 * torch.sqrt(self.zero)  # the loss stays finite, its gradient is NaN
        return LossOutput(loss, {"bce": loss})


def _cfg(**kw):
    return TrainConfig(**{"lr": 0.05, "batch_size": 16, "epochs": 4, "progress": False, **kw})


@pytest.mark.parametrize("optimizer", ["reference", "adamw"])
def test_fit_learns_keeps_best_epoch_and_scores_test_once(data, optimizer):
    rows = []
    torch.manual_seed(0)
    cfg = _cfg(optimizer=optimizer)
    result = trainer.fit(Linear(), data, cfg, on_epoch=lambda e, row: rows.append((e, row["val_micro_f1"])))
    assert [e for e, _ in rows] == [1, 2, 3, 4]
    best = max(f1 for _, f1 in rows)
    kept = [e for e, f1 in rows if f1 == best][-1]  # ties go to the later epoch
    assert result.best_epoch == kept
    assert result.val_metrics["micro_f1"] == pytest.approx(best)  # the reloaded model is the kept one
    assert result.test_scores.shape == (32, 2) and result.test_metrics["micro_f1"] > 0.6
    assert result.n_parameters == 15


def test_same_seed_same_scores(data):
    def once():
        trainer.seed_everything(3)
        return trainer.fit(Linear(), data, _cfg(seed=3)).test_scores

    np.testing.assert_array_equal(once(), once())


def test_nan_loss_names_epoch_and_step(data):
    # 96 samples / batch 16 = 6 steps per epoch: call 8 is epoch 2, step 2.
    with pytest.raises(trainer.NonFiniteLossError, match="epoch 2, step 2") as info:
        trainer.fit(Linear(blow_up_at=8), data, _cfg())
    assert (info.value.epoch, info.value.step) == (2, 2)


@pytest.mark.parametrize("optimizer", ["reference", "adamw"])
def test_nan_gradient_with_finite_loss_names_epoch_and_step(data, optimizer):
    with pytest.raises(trainer.NonFiniteLossError, match="gradient norm became nan at epoch 1, step 3"):
        trainer.fit(Linear(nan_grad_at=3), data, _cfg(optimizer=optimizer))


@pytest.mark.parametrize("drop_last, sizes", [(True, [20] * 4), (False, [20] * 4 + [16])])
def test_steps_per_epoch_follow_drop_last(data, drop_last, sizes):
    # 96 training samples in batches of 20: 4 full batches and 16 left over.
    assert trainer.steps_per_epoch(96, 20, drop_last) == len(sizes)
    model = Linear()
    trainer.fit(model, data, _cfg(batch_size=20, epochs=2, drop_last=drop_last))
    assert model.batch_sizes == sizes * 2


def test_a_split_smaller_than_one_batch_still_trains_one_step():
    assert trainer.steps_per_epoch(40, 64, drop_last=True) == 1
    assert trainer.steps_per_epoch(128, 64, drop_last=True) == 2
    assert trainer.steps_per_epoch(129, 64, drop_last=False) == 3


class Picky(Linear):
    """Refuses batches over 50 samples, as CARAT refuses a queue shorter than one push."""

    def check_training(self, batch_size):
        self.checked = batch_size
        if batch_size > 50:
            raise ValueError(f"batch {batch_size} is too large")


def test_check_training_runs_before_any_step_with_the_largest_batch(data):
    model = Picky()
    with pytest.raises(ValueError, match="batch 64 is too large"):
        trainer.fit(model, data, _cfg(batch_size=64))
    assert model.calls == 0  # refused before the first training step
    model = Picky()
    with pytest.raises(ValueError, match="batch 96 is too large"):  # 96 training samples: the batch is 96
        trainer.fit(model, data, _cfg(batch_size=500))
    model = Picky()
    trainer.fit(model, data, _cfg(batch_size=48, epochs=1))
    assert model.checked == 48 and model.calls == 2


def test_tuned_thresholds_come_from_validation_only(data):
    torch.manual_seed(0)
    result = trainer.fit(Linear(), data, _cfg(tune_threshold=True))
    assert result.thresholds.shape == (2,)
    # Corrupting the test labels must not move the thresholds (they are chosen on valid).
    flipped = MultimodalDataset(
        name="toy",
        modalities=data.modalities,
        label_names=data.label_names,
        splits={
            **data.splits,
            "test": Split(data.splits["test"].features, data.splits["test"].masks, 1 - data.splits["test"].labels),
        },
    )
    torch.manual_seed(0)
    np.testing.assert_array_equal(
        trainer.fit(Linear(), flipped, _cfg(tune_threshold=True)).thresholds, result.thresholds
    )


def test_cuda_request_without_cuda_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(ValueError, match="CUDA is not available"):
        trainer.resolve_device("cuda")


class _Interrupted(Exception):
    pass


@pytest.mark.slow  # three CARAT runs of 3 epochs
def test_a_run_resumed_from_its_checkpoint_ends_bit_identical(tmp_path):
    """CARAT (dropout, shuffles, queue, prototypes: every kind of state) interrupted during epoch 2
    of 3 and resumed from its checkpoint ends exactly like an uninterrupted run."""
    import models
    from harness.data import load

    data = load("synthetic", size="tiny", seq_len=8)
    cfg = TrainConfig.from_preset("small", epochs=3, batch_size=16, progress=False, seed=3)

    def fresh():
        trainer.seed_everything(3)
        return models.create("carat", data.spec, preset="small", hidden_size=16, latent_size=4, queue_size=4096)

    whole = trainer.fit(fresh(), data, cfg)

    checkpoint = tmp_path / "unit.pt"

    def stop_in_epoch_2(epoch, row):
        if epoch == 2:  # epoch 2 trained, its checkpoint not yet written: as if killed during it
            raise _Interrupted

    with pytest.raises(_Interrupted):
        trainer.fit(fresh(), data, cfg, on_epoch=stop_in_epoch_2, checkpoint=checkpoint)
    seen = []
    resumed = trainer.fit(fresh(), data, cfg, on_epoch=lambda e, row: seen.append(e), checkpoint=checkpoint)

    assert resumed.resumed_from_epoch == 1 and seen == [1, 2, 3]  # the restored row replayed, then 2 and 3
    assert resumed.history == whole.history  # every loss and validation score, bit for bit
    assert resumed.test_metrics == whole.test_metrics
    assert np.array_equal(resumed.test_scores, whole.test_scores)
    assert whole.history[0]["train_loss"] != whole.history[-1]["train_loss"]  # it really trained


def test_a_checkpoint_of_another_configuration_is_set_aside_not_resumed(tmp_path, data, capsys):
    cfg = TrainConfig.from_preset("small", epochs=1, progress=False)
    checkpoint = tmp_path / "unit.pt"
    trainer.fit(Linear(), data, cfg, checkpoint=checkpoint)
    other = TrainConfig.from_preset("small", epochs=2, lr=0.5, progress=False)
    seen = []
    trainer.seed_everything(0)
    resumed = trainer.fit(Linear(), data, other, on_epoch=lambda e, row: seen.append(e), checkpoint=checkpoint)
    assert resumed.resumed_from_epoch == 0 and seen == [1, 2]  # trained from scratch, nothing replayed
    assert (tmp_path / "unit.pt.stale").is_file()  # set aside, not deleted
    assert "written by another configuration" in capsys.readouterr().out
    trainer.seed_everything(0)
    whole = trainer.fit(Linear(), data, other)
    assert (
        resumed.history == whole.history and resumed.history[0]["train_loss"] == whole.history[0]["train_loss"]
    )  # the same as a fresh run


# -- damaged checkpoints -------------------------------------------------------------------------


def _stop_at(last_saved: int):
    """An on_epoch that interrupts the run in the epoch after ``last_saved`` (before its checkpoint)."""

    def on_epoch(epoch, row):
        if epoch == last_saved + 1:
            raise _Interrupted

    return on_epoch


def _fit_linear(data, cfg, **kw):
    trainer.seed_everything(0)
    return trainer.fit(Linear(), data, cfg, **kw)


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _random_bytes(path):
    path.write_bytes(np.random.default_rng(1).bytes(path.stat().st_size))


@pytest.mark.parametrize("damage", [_truncate, _random_bytes], ids=["truncated", "random_bytes"])
def test_a_damaged_checkpoint_is_set_aside_and_the_run_resumes_from_the_previous_one(tmp_path, data, capsys, damage):
    cfg = TrainConfig.from_preset("small", epochs=4, progress=False)
    whole = _fit_linear(data, cfg)
    checkpoint = tmp_path / "unit.pt"
    with pytest.raises(_Interrupted):
        _fit_linear(data, cfg, on_epoch=_stop_at(2), checkpoint=checkpoint)
    assert checkpoint.is_file() and (tmp_path / "unit.pt.prev").is_file()  # epoch 2, and epoch 1 behind it
    damage(checkpoint)
    seen = []
    resumed = _fit_linear(data, cfg, on_epoch=lambda e, row: seen.append(e), checkpoint=checkpoint)
    out = capsys.readouterr().out
    assert resumed.resumed_from_epoch == 1 and seen == [1, 2, 3, 4]  # epoch 1 restored, 2-4 trained again
    assert resumed.history == whole.history and resumed.test_metrics == whole.test_metrics
    assert (tmp_path / "unit.pt.corrupt").is_file()  # set aside, not deleted
    line = next(line for line in out.splitlines() if "cannot be read" in line)
    assert "unit.pt.corrupt" in line and "trying the previous checkpoint unit.pt.prev" in line
    assert "resuming from the previous checkpoint unit.pt.prev (epoch 1)" in out


@pytest.mark.parametrize("damage", [_truncate, _random_bytes], ids=["truncated", "random_bytes"])
def test_a_damaged_checkpoint_with_none_behind_it_means_a_fresh_start(tmp_path, data, capsys, damage):
    cfg = TrainConfig.from_preset("small", epochs=2, progress=False)
    whole = _fit_linear(data, cfg)
    checkpoint = tmp_path / "unit.pt"
    with pytest.raises(_Interrupted):
        _fit_linear(data, cfg, on_epoch=_stop_at(1), checkpoint=checkpoint)
    assert not (tmp_path / "unit.pt.prev").exists()  # only one epoch was saved
    damage(checkpoint)
    resumed = _fit_linear(data, cfg, checkpoint=checkpoint)
    assert resumed.resumed_from_epoch == 0 and resumed.history == whole.history
    assert "this run starts at epoch 1" in capsys.readouterr().out and (tmp_path / "unit.pt.corrupt").is_file()
    assert checkpoint.is_file()  # the fresh run writes its own again


def test_both_checkpoints_damaged_or_not_a_checkpoint_start_afresh(tmp_path, data, capsys):
    cfg = TrainConfig.from_preset("small", epochs=2, progress=False)
    checkpoint = tmp_path / "unit.pt"
    torch.save({"something": "else"}, checkpoint)  # readable, but no checkpoint of this harness
    (tmp_path / "unit.pt.prev").write_bytes(b"")
    resumed = _fit_linear(data, cfg, checkpoint=checkpoint)
    out = capsys.readouterr().out
    assert resumed.resumed_from_epoch == 0 and len(resumed.history) == 2
    assert "it lacks identity" in out and "unit.pt.prev cannot be read" in out
    assert (tmp_path / "unit.pt.corrupt").is_file() and (tmp_path / "unit.pt.prev.corrupt").is_file()
    checkpoints.remove_checkpoint(checkpoint)
    assert not checkpoint.exists() and not (tmp_path / "unit.pt.prev").exists()


def test_saving_keeps_the_previous_checkpoint_readable(tmp_path, data):
    cfg = TrainConfig.from_preset("small", epochs=3, progress=False)
    checkpoint = tmp_path / "unit.pt"
    _fit_linear(data, cfg, checkpoint=checkpoint)
    current = torch.load(checkpoint, weights_only=True)
    previous = torch.load(tmp_path / "unit.pt.prev", weights_only=True)
    assert (current["epoch"], previous["epoch"]) == (3, 2)
    assert not list(tmp_path.glob("*.partial"))


# -- best-epoch selection and the one scoring of test, on a scripted validation curve -----------
#
# ``Scripted`` is a real NeuralModel trained by the real trainer through the public fit(). Its
# predictions depend only on a buffer ``stage`` (part of its state_dict, so the trainer's copy of
# the best weights keeps it) that each training step advances by one; with one step per epoch,
# after epoch e the model is at stage e. At stage s it predicts the right 0/1 label for the
# samples whose draw ``u`` (feature channel 1) is below QUALITY[s] and the wrong one for the
# others, so the validation micro-F1 of every epoch is scripted. Its scores carry 0.01 * stage
# on top, which moves no prediction at threshold 0.5 but tells the epochs apart in test_scores.

SPLIT_CODE = {"train": 0.0, "valid": 1.0, "test": 2.0}


def _scripted_split(name, n, rng):
    labels = (rng.random((n, 2)) < 0.5).astype(np.float32)
    a = np.zeros((n, 1, 4), np.float32)
    a[:, 0, 0] = labels[:, 0]
    a[:, 0, 1] = (np.arange(n) + 0.5) / n  # u: evenly spread, so QUALITY[s] is the share predicted right
    a[:, 0, 2] = labels[:, 1]
    a[:, 0, 3] = SPLIT_CODE[name]  # lets the model count which split it is asked to score
    masks = {"a": np.ones((n, 1), bool)}
    return Split(features={"a": a}, masks=masks, labels=labels)


@pytest.fixture
def scripted_data():
    rng = np.random.default_rng(1)
    sizes = {"train": 32, "valid": 40, "test": 40}
    return MultimodalDataset(
        name="scripted",
        modalities=("a",),
        label_names=("x", "y"),
        splits={name: _scripted_split(name, n, rng) for name, n in sizes.items()},
    )


class Scripted(NeuralModel):
    def __init__(self, quality: list[float]):
        super().__init__()
        self.quality = torch.tensor([0.0, *quality])  # index = stage; stage 0 = untrained
        self.weight = torch.nn.Parameter(torch.ones(()))  # something for the optimiser to step
        self.register_buffer("stage", torch.zeros((), dtype=torch.long))
        self.config = {"quality": quality}
        self.scored = {code: 0 for code in SPLIT_CODE.values()}

    def forward(self, inputs, masks):
        a = inputs["a"][:, 0]
        for code in a[:, 3].unique().tolist():
            self.scored[code] += 1
        truth = a[:, [0, 2]]
        right = (a[:, 1] < self.quality[int(self.stage)]).unsqueeze(1)
        predicted = torch.where(right, truth, 1 - truth)
        return 0.2 + 0.6 * predicted + 0.01 * self.stage.float()  # 0.2 / 0.8, nudged by the stage

    def training_loss(self, inputs, masks, labels):
        with torch.no_grad():
            self.stage += 1
        loss = (self.weight - 2.0) ** 2
        return LossOutput(loss, {"loss": loss})


def _expected_test_scores(data, quality, stage):
    model = Scripted(quality)
    model.stage.fill_(stage)
    return trainer.predict(model, data.splits["test"])


def _fit_scripted(data, quality, **kw):
    model = Scripted(quality)
    rows = []
    cfg = _cfg(batch_size=32, epochs=len(quality), **kw)  # 32 training samples: one step per epoch
    result = trainer.fit(model, data, cfg, on_epoch=lambda e, row: rows.append(row["val_micro_f1"]))
    return model, result, rows


def test_an_early_peak_is_kept_and_its_test_scores_reported(scripted_data):
    quality = [0.5, 0.95, 0.7, 0.6, 0.55]
    model, result, rows = _fit_scripted(scripted_data, quality)
    assert int(np.argmax(rows)) == 1 and rows[1] > rows[-1] + 0.2  # the curve really peaks at epoch 2
    assert result.best_epoch == 2
    assert int(model.stage) == 2  # the best epoch's weights (and buffers) were reloaded
    assert result.val_metrics["micro_f1"] == pytest.approx(rows[1])
    np.testing.assert_allclose(result.test_scores, _expected_test_scores(scripted_data, quality, 2))
    last = _expected_test_scores(scripted_data, quality, 5)
    assert not np.allclose(result.test_scores, last)
    assert result.test_metrics["micro_f1"] > 0.9  # 95 % right at epoch 2, 55 % at the last one


def test_a_tie_goes_to_the_later_epoch(scripted_data):
    # CARAT.md section 5: keep the best validation micro-F1, ties go to the later epoch.
    quality = [0.5, 0.9, 0.6, 0.9, 0.4]
    model, result, rows = _fit_scripted(scripted_data, quality)
    assert rows[1] == rows[3] == max(rows)  # the same predictions: an exact tie
    assert result.best_epoch == 4 and int(model.stage) == 4
    np.testing.assert_allclose(result.test_scores, _expected_test_scores(scripted_data, quality, 4))
    assert not np.allclose(result.test_scores, _expected_test_scores(scripted_data, quality, 2))


def test_a_curve_that_only_falls_keeps_the_first_epoch(scripted_data):
    quality = [0.95, 0.8, 0.6]
    model, result, rows = _fit_scripted(scripted_data, quality)
    assert result.best_epoch == 1 and int(model.stage) == 1
    np.testing.assert_allclose(result.test_scores, _expected_test_scores(scripted_data, quality, 1))


@pytest.mark.parametrize("tune_threshold", [False, True])
def test_the_test_split_is_scored_exactly_once_per_run(scripted_data, tune_threshold):
    quality = [0.5, 0.95, 0.7]
    model, result, _ = _fit_scripted(scripted_data, quality, tune_threshold=tune_threshold)
    # 40 test samples fit one evaluation batch: one forward call on test in the whole run, after
    # training; validation once per epoch plus once for the reloaded best epoch; never train.
    assert trainer.EVAL_BATCH >= 40
    assert model.scored == {SPLIT_CODE["train"]: 0, SPLIT_CODE["valid"]: 3 + 1, SPLIT_CODE["test"]: 1}
    assert result.test_scores.shape == (40, 2)


class _ConstantScores(NeuralModel):
    """The same scores for every sample: a result that is no finding."""

    def __init__(self):
        super().__init__()
        self.bias = torch.nn.Parameter(torch.zeros(2))

    def forward(self, inputs, masks):
        return torch.sigmoid(self.bias).expand(next(iter(inputs.values())).shape[0], -1)

    def training_loss(self, inputs, masks, labels):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(self.bias.expand(labels.shape[0], -1), labels)
        return LossOutput(loss, {"bce": loss})


def test_a_constant_result_names_its_kinds_as_data_beside_the_sentence(data):
    from harness import keys

    result = trainer.fit(_ConstantScores(), data, TrainConfig(epochs=1, batch_size=32, progress=False))
    assert result.degenerate_kinds[0] == "constant predictor"
    assert result.degenerate.startswith("constant predictor (")
    tags = keys.degenerate_tags(result.degenerate, result.degenerate_kinds)
    assert tags[keys.DEGENERATE_KINDS] == "; ".join(result.degenerate_kinds)
    # the kinds given are written as they are, not read back from the sentence
    assert keys.degenerate_tags("odd (a; b) sentence", ("odd",))[keys.DEGENERATE_KINDS] == "odd"


# -- found by mutation testing (README, "Development") -------------------------------------------


def test_validation_uses_the_configured_threshold(scripted_data):
    # Scores are 0.2 / 0.8 (+ 0.01 per stage): at a threshold of 0.9 nothing is predicted positive.
    _, result, rows = _fit_scripted(scripted_data, [0.5, 0.95, 0.7], threshold=0.9)
    assert rows == [0.0, 0.0, 0.0] and result.val_metrics["micro_f1"] == 0.0
    _, result, rows = _fit_scripted(scripted_data, [0.5, 0.95, 0.7], threshold=0.5)
    assert min(rows) > 0.3 and result.val_metrics["micro_f1"] == pytest.approx(max(rows))


class _Recording(Scripted):
    """Scripted, recording whether bf16 autocast is on in each training step and each scoring."""

    def __init__(self, quality):
        super().__init__(quality)
        self.autocast = {"train": set(), "score": set()}

    def forward(self, inputs, masks):
        self.autocast["score"].add(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu"))
        return super().forward(inputs, masks)

    def training_loss(self, inputs, masks, labels):
        self.autocast["train"].add(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu"))
        return super().training_loss(inputs, masks, labels)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "auto"])
def test_training_validation_and_test_run_in_the_resolved_precision(scripted_data, precision):
    from harness.precision import resolve_precision

    model = _Recording([0.5, 0.9])
    trainer.fit(model, scripted_data, _cfg(batch_size=32, epochs=2, precision=precision))
    expected = {torch.bfloat16} if resolve_precision(precision, "cpu") == torch.bfloat16 else {False}
    assert model.autocast == {"train": expected, "score": expected}


def test_the_schedule_spans_the_steps_actually_taken(data, monkeypatch):
    seen = []

    def spy(model, cfg, total_steps):
        seen.append(total_steps)
        return trainer_build_optimizer(model, cfg, total_steps)

    trainer_build_optimizer = trainer.build_optimizer
    monkeypatch.setattr(trainer, "build_optimizer", spy)
    for drop_last in (True, False):  # 96 samples in batches of 20: 4 (or 5) steps an epoch, 3 epochs
        model = Linear()
        trainer.fit(model, data, _cfg(batch_size=20, epochs=3, drop_last=drop_last))
        assert seen[-1] == len(model.batch_sizes)
    assert seen == [12, 15]


class _Order(Linear):
    def training_loss(self, inputs, masks, labels):
        self.batch_sizes.append(float(inputs["a"][0, 0, 0]))  # which sample comes first in each batch
        return super().training_loss(inputs, masks, labels)


def test_the_batch_order_follows_the_run_seed_not_the_global_generator(data):
    orders = []
    for global_seed, run_seed in [(0, 3), (1, 3), (0, 4)]:
        torch.manual_seed(global_seed)  # different initial weights, and a different global stream
        model = _Order()
        trainer.fit(model, data, _cfg(epochs=2, seed=run_seed))
        orders.append(model.batch_sizes[0::2])  # Linear appends each batch's size after it
    assert orders[0] == orders[1]
    assert orders[0] != orders[2]


def test_a_non_finite_loss_carries_its_value(data):
    with pytest.raises(trainer.NonFiniteLossError, match="loss became nan") as info:
        trainer.fit(Linear(blow_up_at=2), data, _cfg())
    assert np.isnan(info.value.value)


class _Clock:
    """A stand-in for time.perf_counter that only the model moves: 1 s per training step, 10 s per scoring."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class _Timed(Scripted):
    def __init__(self, quality, clock):
        super().__init__(quality)
        self.clock = clock

    def forward(self, inputs, masks):
        self.clock.now += 10.0
        return super().forward(inputs, masks)

    def training_loss(self, inputs, masks, labels):
        self.clock.now += 1.0
        return super().training_loss(inputs, masks, labels)


def test_train_and_eval_seconds_add_up_across_a_resume(scripted_data, tmp_path, monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(trainer.time, "perf_counter", clock)
    quality = [0.5, 0.95, 0.7]
    cfg = _cfg(batch_size=32, epochs=3)
    whole = trainer.fit(_Timed(quality, clock), scripted_data, cfg)
    # 3 steps (1 s each); validation after each epoch, then validation and test once (10 s each)
    assert (whole.train_seconds, whole.eval_seconds) == (3 * 1 + 5 * 10, 5 * 10)

    checkpoint, first = tmp_path / "unit.pt", []

    def stop_in_epoch_2(epoch, row):
        first.append(dict(row))
        if epoch == 2:
            raise _Interrupted

    with pytest.raises(_Interrupted):
        trainer.fit(_Timed(quality, clock), scripted_data, cfg, on_epoch=stop_in_epoch_2, checkpoint=checkpoint)
    saved = torch.load(checkpoint, weights_only=False)
    assert (saved["epoch"], saved["seconds"], saved["eval_seconds"]) == (1, 11.0, 10.0)
    clock.now += 1000.0  # the time between the kill and the re-run is no training time
    rows = []
    resumed = trainer.fit(
        _Timed(quality, clock),
        scripted_data,
        cfg,
        on_epoch=lambda e, row: rows.append(dict(row)),
        checkpoint=checkpoint,
    )
    assert resumed.resumed_from_epoch == 1
    assert rows[0] == first[0] and rows == whole.history  # the restored row replayed as it was, then 2 and 3
    assert (resumed.train_seconds, resumed.eval_seconds) == (whole.train_seconds, whole.eval_seconds)
    assert resumed.best_epoch == whole.best_epoch == 2


class _WithLatents(Scripted):
    def latents(self, inputs, masks):
        return inputs["a"][:, :, None, :2]  # (N, M = 1, C = 1, dz = 2)


def test_latents_of_the_kept_model_on_test_are_returned(scripted_data):
    result = trainer.fit(_WithLatents([0.5, 0.9]), scripted_data, _cfg(batch_size=32, epochs=2))
    assert result.latents.shape == (40, 1, 1, 2)
    np.testing.assert_array_equal(result.latents[:, 0, 0], scripted_data.splits["test"].features["a"][:, 0, :2])
    assert trainer.fit(Scripted([0.5]), scripted_data, _cfg(batch_size=32, epochs=1)).latents is None


class _ConstantByDesign(_ConstantScores):
    predicts_constant = True


def test_a_model_constant_by_design_is_not_flagged(data):
    cfg = TrainConfig(epochs=1, batch_size=32, progress=False)
    assert trainer.fit(_ConstantScores(), data, cfg).degenerate is not None
    by_design = trainer.fit(_ConstantByDesign(), data, cfg)
    assert by_design.degenerate is None and by_design.degenerate_kinds == ()
    assert "val_micro_f1_prior" in by_design.diagnostics  # measured all the same


def test_the_progress_bar_shows_the_unit_epochs_loss_and_validation_f1(scripted_data, capsys):
    trainer.fit(Scripted([0.5, 0.9, 0.7]), scripted_data, _cfg(batch_size=32, epochs=3), progress_label="unit 7")
    assert capsys.readouterr().err == ""  # progress=False: no bar at all
    cfg = _cfg(batch_size=32, epochs=3, progress=True)
    trainer.fit(Scripted([0.5, 0.9, 0.7]), scripted_data, cfg, progress_label="unit 7")
    err = capsys.readouterr().err
    assert "unit 7" in err and "/3 " in err and ("ep/s" in err or "s/ep" in err)
    assert re.search(r"loss=\d\.\d{4}", err) and re.search(r"val_f1=0\.\d{4}", err)
    # a finished unit's bar is cleared, not left behind (several workers' bars share the terminal) ...
    assert "\n" not in err and err.endswith("\r")
    assert "\x1b[A" not in err  # ... and without a position it stays on its own line
    trainer.fit(Scripted([0.5, 0.9, 0.7]), scripted_data, cfg, progress_label="unit 7", progress_position=2)
    assert "\x1b[A" in capsys.readouterr().err  # a worker's bar drawn on its own row, lines below


def test_a_resumed_progress_bar_counts_on_from_the_restored_epoch(scripted_data, tmp_path, capsys):
    cfg, checkpoint = _cfg(batch_size=32, epochs=4, progress=True), tmp_path / "unit.pt"
    with pytest.raises(_Interrupted):
        trainer.fit(Scripted([0.5, 0.9, 0.7, 0.6]), scripted_data, cfg, on_epoch=_stop_at(2), checkpoint=checkpoint)
    capsys.readouterr()
    trainer.fit(Scripted([0.5, 0.9, 0.7, 0.6]), scripted_data, cfg, checkpoint=checkpoint)
    counts = re.findall(r"(\d)/(\d) \[", capsys.readouterr().err)
    assert counts[0] == ("2", "4")  # starts at the restored epoch 2 of 4, not at 0 of the 2 left
    assert {total for _, total in counts} == {"4"}


def test_a_checkpoint_of_another_model_is_set_aside_not_resumed(tmp_path, data, capsys):
    cfg = _cfg(epochs=2)  # the same training settings throughout: only the model differs
    for name, other in [("class.pt", Picky()), ("config.pt", Linear(blow_up_at=10**6))]:
        with pytest.raises(_Interrupted):
            trainer.fit(Linear(), data, cfg, on_epoch=_stop_at(1), checkpoint=tmp_path / name)
        copy = tmp_path / f"copy-{name}"
        copy.write_bytes((tmp_path / name).read_bytes())
        assert trainer.fit(Linear(), data, cfg, checkpoint=copy).resumed_from_epoch == 1  # the same model resumes
        capsys.readouterr()
        resumed = trainer.fit(other, data, cfg, checkpoint=tmp_path / name)
        assert resumed.resumed_from_epoch == 0, name
        assert "written by another configuration" in capsys.readouterr().out


class _UsedOnce(Linear):
    """A parameter in the loss of the third step only (the reference's warm-up gives step 1 no
    learning rate), as a module some batches do not reach."""

    def __init__(self):
        super().__init__()
        self.late = torch.nn.Parameter(torch.ones(()))
        self.seen = []

    def training_loss(self, inputs, masks, labels):
        out = super().training_loss(inputs, masks, labels)
        self.seen.append(float(self.late.detach()))
        if self.calls == 3:
            out = LossOutput(out.total + self.late**2, out.parts)
        return out


@pytest.mark.parametrize("optimizer", ["reference", "adamw"])
def test_a_parameter_without_a_gradient_in_a_step_is_not_moved_by_it(data, optimizer):
    model = _UsedOnce()
    trainer.fit(model, data, _cfg(optimizer=optimizer, epochs=2))
    assert model.seen[0] == model.seen[2] != model.seen[3]  # only the third step moved it
    assert len(set(model.seen[3:])) == 1  # no step after it did: no gradient, no momentum or decay step
