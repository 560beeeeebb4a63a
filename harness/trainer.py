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
import hashlib
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

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

    state = _Progress()
    identity = _run_identity(model, data, cfg)
    if checkpoint is not None and Path(checkpoint).is_file():
        state = _restore(Path(checkpoint), identity, model, optimiser, schedule, shuffler)
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
            _save(Path(checkpoint), identity, state, model, optimiser, schedule, shuffler)
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
    reasons = []
    if is_constant_predictor(result.test_scores):
        reasons.append(
            f"constant predictor (no label's test scores vary across samples by more than {CONSTANT_SCORE_TOL} std)"
        )
    if result.val_metrics["micro_f1"] <= prior_f1:
        reasons.append(
            f"no better than the label prior on validation (micro-F1 {result.val_metrics['micro_f1']:.3f} "
            f"<= {prior_f1:.3f})"
        )
    result.degenerate = "; ".join(reasons) or None
    return result


# -- checkpoints --------------------------------------------------------------------------------


@dataclass
class _Progress:
    """Where a neural run stands: what a checkpoint keeps besides the model and optimiser."""

    epoch: int = 0
    history: list = field(default_factory=list)
    best_f1: float = -1.0
    best_epoch: int = 0
    best_weights: dict | None = None
    seconds: float = 0.0
    eval_seconds: float = 0.0
    restored_epoch: int = 0


def _run_identity(model, data: MultimodalDataset, cfg: TrainConfig) -> str:
    """What a checkpoint must match to be resumed: the model, its config, the data, the training
    settings (a checkpoint of another configuration is never continued)."""
    config = getattr(model, "config", None)
    keyed = (type(model).__name__, repr(config), data.digest, repr(replace(cfg, progress=False)))
    return hashlib.sha1(repr(keyed).encode()).hexdigest()


def _save(path: Path, identity: str, state: _Progress, model, optimiser, schedule, shuffler) -> None:
    """Write the checkpoint so that a readable one is always on disk: the new one goes to
    ``*.partial`` (flushed to disk), the current one becomes ``*.prev``, then the new one replaces
    the current one atomically. A kill or a full disk during the write leaves the current one
    intact; a current one damaged later (a copy cut short) still has ``*.prev`` behind it."""
    payload = {
        "identity": identity,
        "epoch": state.epoch,
        "history": state.history,
        "best_f1": state.best_f1,
        "best_epoch": state.best_epoch,
        "best_weights": state.best_weights,
        "seconds": state.seconds,
        "eval_seconds": state.eval_seconds,
        "model": model.state_dict(),
        "optimiser": optimiser.state_dict(),
        "schedule": schedule.state_dict(),
        "rng": _rng_state(shuffler),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as file:
        torch.save(payload, file)
        file.flush()
        os.fsync(file.fileno())  # on disk before it replaces anything
    if path.is_file():
        _keep_as_previous(path)
    os.replace(partial, path)


def _keep_as_previous(path: Path) -> None:
    """``path`` also as ``*.prev``, while ``path`` itself stays in place (a hard link, or a copy where
    the file system has none), so that no moment exists without a current checkpoint."""
    previous, linking = _previous(path), path.with_name(path.name + ".prev.partial")
    linking.unlink(missing_ok=True)
    try:
        os.link(path, linking)
    except OSError:
        shutil.copyfile(path, linking)
    os.replace(linking, previous)


def _previous(path: Path) -> Path:
    return path.with_name(path.name + ".prev")


def remove_checkpoint(path: str | Path) -> None:
    """Delete a finished unit's checkpoint and the previous one kept beside it."""
    path = Path(path)
    for leftover in (path, _previous(path), path.with_name(path.name + ".partial")):
        leftover.unlink(missing_ok=True)


_PAYLOAD_KEYS = (
    "identity",
    "epoch",
    "history",
    "best_f1",
    "best_epoch",
    "best_weights",
    "seconds",
    "eval_seconds",
    "model",
    "optimiser",
    "schedule",
    "rng",
)


def _restore(path: Path, identity: str, model, optimiser, schedule, shuffler) -> _Progress:
    """The progress kept in the newest usable checkpoint (``path``, else ``path.prev``), loaded into
    model, optimiser, schedule and RNGs; a fresh start when there is none.

    A checkpoint that cannot be read (cut short, overwritten, not a checkpoint) is renamed
    ``*.corrupt`` with one line saying why, and the previous one is tried: a damaged file is
    never a permanent failure. One written by another configuration (other settings or data, or
    a code version whose model or training config differs) is never continued, since that would
    mix two configurations in one run; it is unfinished work that cannot be used, so it is not
    an error either: it is renamed ``*.stale`` (one line says so). With neither usable, the run
    starts from epoch 1."""
    for candidate in (path, _previous(path)):
        if not candidate.is_file():
            continue
        payload, problem = _read_checkpoint(candidate)
        if problem is not None:
            corrupt = _set_aside(candidate, ".corrupt")
            tqdm.write(
                f"note: checkpoint {candidate} cannot be read ({problem}); moved to {corrupt.name}; "
                + _what_next(candidate, path)
            )
            continue
        if payload["identity"] != identity:
            stale = _set_aside(candidate, ".stale")
            tqdm.write(
                f"note: checkpoint {candidate} was written by another configuration (model, data, settings or "
                f"code version); not resumed, moved to {stale.name}; " + _what_next(candidate, path)
            )
            continue
        model.load_state_dict(payload["model"])
        optimiser.load_state_dict(payload["optimiser"])
        schedule.load_state_dict(payload["schedule"])
        _set_rng_state(payload["rng"], shuffler)
        if candidate != path:
            tqdm.write(f"note: resuming from the previous checkpoint {candidate.name} (epoch {payload['epoch']})")
        return _Progress(
            epoch=payload["epoch"],
            history=payload["history"],
            best_f1=payload["best_f1"],
            best_epoch=payload["best_epoch"],
            best_weights=payload["best_weights"],
            seconds=payload["seconds"],
            eval_seconds=payload["eval_seconds"],
            restored_epoch=payload["epoch"],
        )
    return _Progress()


def _read_checkpoint(path: Path) -> tuple[dict | None, str | None]:
    """(payload, None), or (None, why it cannot be used as a checkpoint)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError... for a damaged file
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return None, f"{type(exc).__name__}: {reason}"[:200]
    if not isinstance(payload, dict):
        return None, f"it holds a {type(payload).__name__}, not a checkpoint"
    missing = [key for key in _PAYLOAD_KEYS if key not in payload]
    if missing:
        return None, f"it lacks {', '.join(missing)}"
    return payload, None


def _set_aside(path: Path, suffix: str) -> Path:
    target = path.with_name(path.name + suffix)
    os.replace(path, target)
    return target


def _what_next(candidate: Path, path: Path) -> str:
    if candidate == path and _previous(path).is_file():
        return f"trying the previous checkpoint {_previous(path).name}"
    return "this run starts at epoch 1"


def _rng_state(shuffler: torch.Generator) -> dict:
    """Every generator a training step draws from, in forms ``torch.load(weights_only=True)`` reads."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    version, python_state, python_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "shuffler": shuffler.get_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss],
        "python": [version, list(python_state), python_gauss],
    }


def _set_rng_state(state: dict, shuffler: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])
    shuffler.set_state(state["shuffler"])
    kind, keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    version, python_state, python_gauss = state["python"]
    random.setstate((version, tuple(python_state), python_gauss))


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
