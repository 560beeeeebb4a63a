"""One trainer for every registered model.

Neural models: epochs of the configured optimiser and schedule (``harness.optim``: the
reference's BertAdam with warmup_linear, or AdamW with linear warm-up/decay), the last
partial training batch dropped or not (``drop_last``); after each epoch the validation
micro-F1 is measured, the best epoch (ties go to the later one, as in the reference) is
kept, reloaded at the end, and the test split is scored exactly once. Classic
(scikit-learn) models are fitted once and scored the same way. Thresholds are never
chosen on test.

Given a ``checkpoint`` path, a neural run saves everything it needs to go on at the end of
every epoch (weights and buffers such as CARAT's queue and prototypes, optimiser,
schedule, every random number generator, the history and the kept epoch so far) and, when
the file is there at the start, continues after its last epoch: on CPU the result is
bit-identical to a run that was never interrupted.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from harness.checkpoints import Progress, restore, run_identity, save
from harness.config import TrainConfig
from harness.data.dataset import MultimodalDataset, Split
from harness.metrics import (
    CONSTANT_SCORE_TOL,
    is_constant_predictor,
    multilabel_metrics,
    per_label_f1,
    score_spread,
    tune_thresholds,
)
from harness.optim import build_optimizer
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
    eval_seconds: float = 0.0  # of train_seconds: scoring validation each epoch, then validation and test once
    resumed_from_epoch: int = 0  # the last epoch restored from a checkpoint (0: trained from scratch)
    diagnostics: dict[str, float] = field(default_factory=dict)  # score spreads and the prior's validation F1
    degenerate: str | None = None  # why this result is no finding (constant, no better than the prior), else None
    degenerate_kinds: tuple[str, ...] = ()  # the same reasons as short kinds, each once


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


def fit(
    model,
    data: MultimodalDataset,
    cfg: TrainConfig,
    on_epoch: EpochCallback | None = None,
    checkpoint: str | Path | None = None,
    progress_label: str = "epochs",
    progress_position: int | None = None,
) -> TrainResult:
    """Train ``model`` on ``data`` under ``cfg`` and score the kept model on test once.

    ``on_epoch(epoch, row)`` sees every epoch's row, restored ones included; ``checkpoint`` is
    the file a neural run saves to after each epoch and resumes from (see the module docstring)."""
    if isinstance(model, ClassicModel):
        return _fit_classic(model, data, cfg, on_epoch)
    if isinstance(model, NeuralModel):
        return _fit_neural(model, data, cfg, on_epoch, checkpoint, progress_label, progress_position)
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
    result = _result(history, 1, val_metrics, test.labels, test_scores, thresholds, started, _count_classic(model))
    return _diagnose(result, model, data, val_scores)


def _fit_neural(model: NeuralModel, data, cfg, on_epoch, checkpoint, progress_label, progress_position) -> TrainResult:
    train, valid = data.splits["train"], data.splits["valid"]
    model.check_training(min(cfg.batch_size, train.n))  # a configuration it cannot train with fails now
    device = resolve_device(cfg.device)
    model.to(device)
    total_steps = steps_per_epoch(train.n, cfg.batch_size, cfg.drop_last) * cfg.epochs
    optimiser, schedule, clip = build_optimizer(model, cfg, total_steps)
    shuffler = torch.Generator().manual_seed(cfg.seed)
    dtype = resolve_precision(cfg.precision, device)

    state = Progress()
    identity = run_identity(model, data, cfg)
    if checkpoint is not None and Path(checkpoint).is_file():
        state = restore(Path(checkpoint), identity, model, optimiser, schedule, shuffler)
    if state.restored_epoch:
        if on_epoch:
            for row in state.history:
                on_epoch(row["epoch"], row)
    started = time.perf_counter() - state.seconds
    bar = tqdm(
        range(state.epoch + 1, cfg.epochs + 1),
        desc=progress_label,
        unit="ep",
        disable=not cfg.progress,
        leave=False,
        position=progress_position,
        initial=state.epoch,
        total=cfg.epochs,
    )
    for epoch in bar:
        model.train()
        order = torch.randperm(train.n, generator=shuffler)
        losses = []
        for step, index in enumerate(_batches(order, cfg.batch_size, cfg.drop_last), start=1):
            inputs, masks, labels = _batch(train, index.numpy(), device)
            with autocast(device, dtype):
                loss = model.training_loss(inputs, masks, labels).total
            if not torch.isfinite(loss):
                raise NonFiniteLossError(epoch, step, float(loss.detach()))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = clip()  # one global norm (the reference optimiser also clips each tensor in its step)
            if not torch.isfinite(grad_norm):  # a finite loss can still have NaN gradients
                raise NonFiniteLossError(epoch, step, float(grad_norm), what="gradient norm")
            optimiser.step()
            schedule.step()
            losses.append(loss.item())
        evaluating = time.perf_counter()
        val_f1 = multilabel_metrics(valid.labels, predict(model, valid, device, dtype), cfg.threshold)["micro_f1"]
        state.eval_seconds += time.perf_counter() - evaluating
        row = {"epoch": epoch, "train_loss": float(np.mean(losses)), "val_micro_f1": val_f1}
        state.history.append(row)
        state.epoch = epoch
        bar.set_postfix(loss=f"{row['train_loss']:.4f}", val_f1=f"{val_f1:.4f}")
        if val_f1 >= state.best_f1:  # ties go to the later epoch
            state.best_f1, state.best_epoch = val_f1, epoch
            state.best_weights = copy.deepcopy(model.state_dict())
        if on_epoch:
            on_epoch(epoch, row)  # may raise optuna.TrialPruned
        if checkpoint is not None:
            state.seconds = time.perf_counter() - started
            save(Path(checkpoint), identity, state, model, optimiser, schedule, shuffler)
    bar.close()

    model.load_state_dict(state.best_weights)
    evaluating = time.perf_counter()
    val_scores = predict(model, valid, device, dtype)
    thresholds = _thresholds(cfg, valid.labels, val_scores)
    val_metrics = multilabel_metrics(valid.labels, val_scores, thresholds)
    test = data.splits["test"]
    test_scores = predict(model, test, device, dtype)
    n_params = sum(p.numel() for p in model.parameters())
    result = _result(
        state.history, state.best_epoch, val_metrics, test.labels, test_scores, thresholds, started, n_params
    )
    result.latents = _latents(model, test, device)
    result.resumed_from_epoch = state.restored_epoch
    result.eval_seconds = state.eval_seconds + time.perf_counter() - evaluating
    return _diagnose(result, model, data, val_scores)


def _diagnose(result: TrainResult, model, data: MultimodalDataset, val_scores: np.ndarray) -> TrainResult:
    """Flag a result that is no finding: a model that predicts the same scores for every test
    sample, or one no better on validation than the label prior (each label's training frequency
    as every sample's score, at the same thresholds). A model that is a constant by design (the
    ``prior`` baseline: ``predicts_constant = True``) is the floor, not a failure."""
    valid = data.splits["valid"]
    prior = np.broadcast_to(data.splits["train"].labels.mean(axis=0), valid.labels.shape)
    prior_f1 = multilabel_metrics(valid.labels, prior, result.thresholds)["micro_f1"]
    result.diagnostics = {
        "test_score_spread": score_spread(result.test_scores),
        "val_score_spread": score_spread(val_scores),
        "val_micro_f1_prior": prior_f1,
    }
    if getattr(model, "predicts_constant", False):
        return result
    reasons = {}  # kind -> the numbers behind it
    if is_constant_predictor(result.test_scores):
        reasons["constant predictor"] = (
            f"no label's test scores vary across samples by more than {CONSTANT_SCORE_TOL} std"
        )
    if result.val_metrics["micro_f1"] <= prior_f1:
        reasons["no better than the label prior on validation"] = (
            f"micro-F1 {result.val_metrics['micro_f1']:.3f} <= {prior_f1:.3f}"
        )
    result.degenerate = "; ".join(f"{kind} ({detail})" for kind, detail in reasons.items()) or None
    result.degenerate_kinds = tuple(reasons)
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


def steps_per_epoch(n_train: int, batch_size: int, drop_last: bool) -> int:
    """Optimiser steps of one epoch: full batches, plus the last partial one unless ``drop_last``.

    A split smaller than one batch still gives one (partial) step, even with ``drop_last``.
    """
    full, rest = divmod(n_train, batch_size)
    if drop_last and full:
        return full
    return full + int(rest > 0)


def _batches(order: torch.Tensor, batch_size: int, drop_last: bool) -> list[torch.Tensor]:
    batches = list(order.split(batch_size))
    if drop_last and len(batches) > 1 and len(batches[-1]) < batch_size:
        batches.pop()
    return batches


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
