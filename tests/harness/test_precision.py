"""TrainConfig.precision: what each value resolves to, and the trainer running under it."""

import numpy as np
import pytest
import torch

from harness import precision, trainer
from harness.config import TrainConfig
from harness.data.dataset import MultimodalDataset, Split
from models.base import LossOutput, NeuralModel, masked_mean

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_fp32_is_the_default_and_unknown_values_are_refused():
    assert TrainConfig().precision == "fp32"
    assert TrainConfig.from_preset("paper").precision == "fp32"
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16, auto"):
        TrainConfig(precision="fp16")
    with pytest.raises(ValueError, match="precision"):
        precision.resolve_precision("half", "cpu")


def test_explicit_values_resolve_to_themselves_on_every_device():
    for device in ("cpu", "cuda"):
        assert precision.resolve_precision("fp32", device) == torch.float32
        assert precision.resolve_precision("bf16", device) == torch.bfloat16


@pytest.mark.parametrize("native", [True, False])
def test_auto_picks_bf16_only_where_the_cpu_computes_it_natively(monkeypatch, native):
    monkeypatch.setattr(precision, "native_bf16", lambda device: native)
    assert precision.resolve_precision("auto", "cpu") == (torch.bfloat16 if native else torch.float32)


def test_native_bf16_follows_the_cpu_flags(monkeypatch):
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, name, lambda: False, raising=False)
    assert not precision.native_bf16("cpu")
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert precision.native_bf16("cpu")


def test_autocast_is_off_for_fp32_and_on_for_bf16():
    x = torch.randn(3, 4)
    layer = torch.nn.Linear(4, 2)
    with precision.autocast("cpu", torch.float32):
        assert layer(x).dtype == torch.float32
    with precision.autocast("cpu", torch.bfloat16):
        assert layer(x).dtype == torch.bfloat16
    assert precision.precision_name(torch.bfloat16) == "bf16" and precision.precision_name(torch.float32) == "fp32"


# --- the trainer under each precision ------------------------------------------------------------


def _split(n, rng):
    a = rng.normal(size=(n, 3, 4)).astype(np.float32)
    labels = np.stack([a[:, :, 0].mean(1) > 0, a[:, :, 1].mean(1) > 0], axis=1).astype(np.float32)
    return Split(features={"a": a}, masks={"a": np.ones((n, 3), bool)}, labels=labels)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return MultimodalDataset(
        name="toy",
        modalities=("a",),
        label_names=("x", "y"),
        splits={"train": _split(48, rng), "valid": _split(16, rng), "test": _split(16, rng)},
    )


class Recording(NeuralModel):
    """A linear model that records the dtype its logits were computed in, in training and in scoring."""

    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(4, 2)
        self.config = {}
        self.seen = {"train": set(), "score": set()}

    def _logits(self, inputs, masks, phase):
        logits = self.head(masked_mean(inputs["a"], masks["a"]))
        self.seen[phase].add(logits.dtype)
        return logits

    def forward(self, inputs, masks):
        return torch.sigmoid(self._logits(inputs, masks, "score").float())

    def training_loss(self, inputs, masks, labels):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            self._logits(inputs, masks, "train").float(), labels
        )
        return LossOutput(loss, {"bce": loss})


@pytest.mark.parametrize("name, dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_fit_trains_and_scores_under_the_configured_precision(data, name, dtype):
    model = Recording()
    cfg = TrainConfig(lr=0.05, batch_size=16, epochs=2, progress=False, precision=name)
    result = trainer.fit(model, data, cfg)
    assert model.seen == {"train": {dtype}, "score": {dtype}}
    assert model.head.weight.dtype == torch.float32  # autocast never changes the parameters
    assert result.test_scores.dtype == np.float32 and np.isfinite(result.test_scores).all()


@cuda
def test_fit_and_predict_on_cuda_under_bf16(data):
    model = Recording()
    cfg = TrainConfig(lr=0.05, batch_size=16, epochs=1, progress=False, device="cuda", precision="auto")
    result = trainer.fit(model, data, cfg)
    assert model.seen == {"train": {torch.bfloat16}, "score": {torch.bfloat16}}
    assert np.isfinite(result.test_scores).all()
    scores = trainer.predict(model, data.splits["test"], "cuda", torch.bfloat16)
    np.testing.assert_allclose(scores, result.test_scores)
