"""One trainer for every registered model.

Neural models: epochs of AdamW with linear warm-up then linear decay and gradient
clipping; after each epoch the validation micro-F1 is measured, the best epoch (ties go
to the later one, as in the reference) is kept, reloaded at the end, and the test split
is scored exactly once. Classic (scikit-learn) models are fitted once and scored the
same way. Thresholds are never chosen on test.
"""
from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from harness.config import TrainConfig
from harness.data.dataset import MultimodalDataset, Split
from harness.metrics import multilabel_metrics, per_label_f1, tune_thresholds
from harness.precision import autocast, resolve_precision
from models.base import ClassicModel, NeuralModel

EVAL_BATCH = 256
EpochCallback = Callable[[int, dict], None]  # (epoch, {"train_loss", "val_micro_f1"}) -> None


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the run cannot continue."""

    def __init__(self, epoch: int, step: int, value: float, what: str = "loss"):
        self.epoch, self.step, self.value = epoch, step, value
        super().__init__(f"{what} became {value} at epoch {epoch}, step {step}")


@dataclass
class TrainResult:
    history: list[dict]  # one row per epoch: epoch, train_loss, val_micro_f1
    best_epoch: int
    val_metrics: dict[str, float]  # of the kept epoch
    test_metrics: dict[str, float]
    test_per_label_f1: np.ndarray
    test_scores: np.ndarray
    test_labels: np.ndarray
    thresholds: np.ndarray  # per label, as applied to test
    train_seconds: float
    n_parameters: int
    latents: np.ndarray | None = field(default=None, repr=False)  # (N, M, C, dz) on test, if the model has them


def seed_everything(seed: int, device: str = "cpu") -> None:
    """Seed every RNG a run touches, so the same seed gives the same run on CPU."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    # Same seed, same bits on CPU also needs torch's deterministic kernels: by default the CPU
    # backward of indexing with repeated indices (CARAT's shuffles) adds with atomics, in an
    # order that varies run to run. (GPU runs use bf16 and are not bit-exact anyway.)
    torch.use_deterministic_algorithms(resolve_device(device).type == "cpu", warn_only=True)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available here; use --device cpu")
    return device


def fit(model, data: MultimodalDataset, cfg: TrainConfig, on_epoch: EpochCallback | None = None) -> TrainResult:
    """Train ``model`` on ``data`` under ``cfg`` and score the kept model on test once."""
    if isinstance(model, ClassicModel):
        return _fit_classic(model, data, cfg, on_epoch)
    if isinstance(model, NeuralModel):
        return _fit_neural(model, data, cfg, on_epoch)
    raise TypeError(f"{type(model).__name__} is neither a NeuralModel nor a ClassicModel")


def _fit_classic(model: ClassicModel, data, cfg, on_epoch) -> TrainResult:
    started = time.perf_counter()
    train = data.splits["train"]
    model.fit(train.features, train.masks, train.labels)
    val_scores = model.predict_scores(data.splits["valid"].features, data.splits["valid"].masks)
    thresholds = _thresholds(cfg, data.splits["valid"].labels, val_scores)
    val_metrics = multilabel_metrics(data.splits["valid"].labels, val_scores, thresholds)
    history = [{"epoch": 1, "train_loss": float("nan"), "val_micro_f1": val_metrics["micro_f1"]}]
    if on_epoch:
        on_epoch(1, history[0])
    test = data.splits["test"]
    test_scores = model.predict_scores(test.features, test.masks)
    return _result(history, 1, val_metrics, test.labels, test_scores, thresholds, started, _count_classic(model))


def _fit_neural(model: NeuralModel, data, cfg, on_epoch) -> TrainResult:
    device = resolve_device(cfg.device)
    model.to(device)
    train, valid = data.splits["train"], data.splits["valid"]
    steps_per_epoch = math.ceil(train.n / cfg.batch_size)
    optimiser, schedule = _optimiser(model, cfg, steps_per_epoch * cfg.epochs)
    shuffler = torch.Generator().manual_seed(cfg.seed)
    dtype = resolve_precision(cfg.precision, device)

    started = time.perf_counter()
    history: list[dict] = []
    best_state, best_f1, best_epoch = None, -1.0, 0
    bar = tqdm(range(1, cfg.epochs + 1), desc="epochs", unit="ep", disable=not cfg.progress, leave=False)
    for epoch in bar:
        model.train()
        order = torch.randperm(train.n, generator=shuffler)
        losses = []
        for step, index in enumerate(order.split(cfg.batch_size), start=1):
            inputs, masks, labels = _batch(train, index.numpy(), device)
            with autocast(device, dtype):
                loss = model.training_loss(inputs, masks, labels).total
            if not torch.isfinite(loss):
                raise NonFiniteLossError(epoch, step, float(loss.detach()))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
            if not torch.isfinite(grad_norm):  # a finite loss can still have NaN gradients
                raise NonFiniteLossError(epoch, step, float(grad_norm), what="gradient norm")
            optimiser.step()
            schedule.step()
            losses.append(loss.item())
        val_f1 = multilabel_metrics(valid.labels, predict(model, valid, device, dtype), cfg.threshold)["micro_f1"]
        row = {"epoch": epoch, "train_loss": float(np.mean(losses)), "val_micro_f1": val_f1}
        history.append(row)
        bar.set_postfix(loss=f"{row['train_loss']:.4f}", val_f1=f"{val_f1:.4f}")
        if val_f1 >= best_f1:  # ties go to the later epoch
            best_f1, best_epoch = val_f1, epoch
            best_state = copy.deepcopy(model.state_dict())
        if on_epoch:
            on_epoch(epoch, row)  # may raise optuna.TrialPruned

    model.load_state_dict(best_state)
    val_scores = predict(model, valid, device, dtype)
    thresholds = _thresholds(cfg, valid.labels, val_scores)
    val_metrics = multilabel_metrics(valid.labels, val_scores, thresholds)
    test = data.splits["test"]
    test_scores = predict(model, test, device, dtype)
    n_params = sum(p.numel() for p in model.parameters())
    result = _result(history, best_epoch, val_metrics, test.labels, test_scores, thresholds, started, n_params)
    result.latents = _latents(model, test, device)
    return result


@torch.no_grad()
def predict(
    model: NeuralModel, split: Split, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> np.ndarray:
    """Scores (N, C) of a neural model on a whole split, in evaluation mode, computed in ``dtype``
    (``harness.precision.resolve_precision``: the run's, so validation sees the model as it trains)."""
    model.eval()
    out = []
    for start in range(0, split.n, EVAL_BATCH):
        index = np.arange(start, min(start + EVAL_BATCH, split.n))
        inputs, masks, _ = _batch(split, index, torch.device(device))
        with autocast(device, dtype):
            out.append(model(inputs, masks).float().cpu())
    return torch.cat(out).numpy()


@torch.no_grad()
def _latents(model: NeuralModel, split: Split, device) -> np.ndarray | None:
    model.eval()
    parts = []
    for start in range(0, split.n, EVAL_BATCH):
        index = np.arange(start, min(start + EVAL_BATCH, split.n))
        inputs, masks, _ = _batch(split, index, device)
        z = model.latents(inputs, masks)
        if z is None:
            return None
        parts.append(z.float().cpu())
    return torch.cat(parts).numpy()


def _batch(split: Split, index: np.ndarray, device: torch.device):
    inputs = {m: torch.from_numpy(x[index]).to(device) for m, x in split.features.items()}
    masks = {m: torch.from_numpy(k[index]).to(device) for m, k in split.masks.items()}
    labels = torch.from_numpy(split.labels[index]).to(device)
    return inputs, masks, labels


def _optimiser(model: torch.nn.Module, cfg: TrainConfig, total_steps: int):
    optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = max(1, int(cfg.warmup_ratio * total_steps))

    def factor(step: int) -> float:  # linear warm-up, then linear decay to 0
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return optimiser, torch.optim.lr_scheduler.LambdaLR(optimiser, factor)


def _thresholds(cfg: TrainConfig, val_labels: np.ndarray, val_scores: np.ndarray) -> np.ndarray:
    if cfg.tune_threshold:
        return tune_thresholds(val_labels, val_scores)
    return np.full(val_labels.shape[1], cfg.threshold, dtype=np.float64)


def _result(history, best_epoch, val_metrics, test_labels, test_scores, thresholds, started, n_params) -> TrainResult:
    return TrainResult(
        history=history,
        best_epoch=best_epoch,
        val_metrics=val_metrics,
        test_metrics=multilabel_metrics(test_labels, test_scores, thresholds),
        test_per_label_f1=per_label_f1(test_labels, test_scores, thresholds),
        test_scores=test_scores,
        test_labels=test_labels,
        thresholds=thresholds,
        train_seconds=time.perf_counter() - started,
        n_parameters=n_params,
    )


def _count_classic(model: ClassicModel) -> int:
    """Learned scalars of a scikit-learn model (coefficients and intercepts) where it has them."""
    return int(getattr(model, "n_parameters", 0))
