"""The trainer on a tiny hand-made data set and a tiny model defined here."""
import numpy as np
import pytest
import torch

from harness import trainer
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
        name="toy", modalities=("a", "b"), label_names=("x", "y"),
        splits={"train": _split(96, rng), "valid": _split(32, rng), "test": _split(32, rng)},
    )  # fmt: skip


class Linear(NeuralModel):
    def __init__(self, blow_up_at: int | None = None):
        super().__init__()
        self.head = torch.nn.Linear(6, 2)
        self.config = {"blow_up_at": blow_up_at}
        self.calls = 0
        self.blow_up_at = blow_up_at

    def logits(self, inputs, masks):
        return self.head(torch.cat([masked_mean(inputs[m], masks[m]) for m in ("a", "b")], 1))

    def forward(self, inputs, masks):
        return torch.sigmoid(self.logits(inputs, masks))

    def training_loss(self, inputs, masks, labels):
        self.calls += 1
        loss = torch.nn.functional.binary_cross_entropy_with_logits(self.logits(inputs, masks), labels)
        if self.blow_up_at is not None and self.calls >= self.blow_up_at:
            loss = loss * float("nan")
        return LossOutput(loss, {"bce": loss})


def _cfg(**kw):
    return TrainConfig(**{"lr": 0.05, "batch_size": 16, "epochs": 4, "progress": False, **kw})


def test_fit_learns_keeps_best_epoch_and_scores_test_once(data):
    rows = []
    torch.manual_seed(0)
    result = trainer.fit(Linear(), data, _cfg(), on_epoch=lambda e, row: rows.append((e, row["val_micro_f1"])))
    assert [e for e, _ in rows] == [1, 2, 3, 4]
    best = max(f1 for _, f1 in rows)
    kept = [e for e, f1 in rows if f1 == best][-1]  # ties go to the later epoch
    assert result.best_epoch == kept
    assert result.val_metrics["micro_f1"] == pytest.approx(best)  # the reloaded model is the kept one
    assert result.test_scores.shape == (32, 2) and result.test_metrics["micro_f1"] > 0.6
    assert result.n_parameters == 14


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


def test_tuned_thresholds_come_from_validation_only(data):
    torch.manual_seed(0)
    result = trainer.fit(Linear(), data, _cfg(tune_threshold=True))
    assert result.thresholds.shape == (2,)
    # Corrupting the test labels must not move the thresholds (they are chosen on valid).
    flipped = MultimodalDataset(
        name="toy", modalities=data.modalities, label_names=data.label_names,
        splits={**data.splits, "test": Split(data.splits["test"].features, data.splits["test"].masks,
                                              1 - data.splits["test"].labels)},
    )  # fmt: skip
    torch.manual_seed(0)
    np.testing.assert_array_equal(trainer.fit(Linear(), flipped, _cfg(tune_threshold=True)).thresholds, result.thresholds)


def test_cuda_request_without_cuda_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(ValueError, match="CUDA is not available"):
        trainer.resolve_device("cuda")
