"""Checkpoints of a neural run: what is kept at each epoch's end, how it is written so that a
readable one is always on disk, and how a run resumes from the newest usable one.

A checkpoint holds the model and optimiser state, the schedule, every RNG, the history and the
best epoch's weights (``Progress``), under the identity of its configuration (``run_identity``):
resuming it continues the run bit-identically on CPU. One that cannot be read is set aside as
``*.corrupt``, one of another configuration as ``*.stale``; neither is ever a permanent failure.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from harness.config import TrainConfig
from harness.data.dataset import MultimodalDataset


@dataclass
class Progress:
    """Where a neural run stands: what a checkpoint keeps besides the model and optimiser."""

    epoch: int = 0
    history: list = field(default_factory=list)
    best_f1: float = -1.0
    best_epoch: int = 0
    best_weights: dict | None = None
    seconds: float = 0.0
    eval_seconds: float = 0.0
    restored_epoch: int = 0


def run_identity(model, data: MultimodalDataset, cfg: TrainConfig) -> str:
    """What a checkpoint must match to be resumed: the model, its config, the data, the training
    settings (a checkpoint of another configuration is never continued)."""
    config = getattr(model, "config", None)
    # The device type, not its index: a unit may resume on another GPU of the same kind of machine.
    settings = replace(cfg, progress=False, device=str(cfg.device).split(":")[0])
    keyed = (type(model).__name__, repr(config), data.digest, repr(settings))
    return hashlib.sha1(repr(keyed).encode()).hexdigest()


def save(path: Path, identity: str, state: Progress, model, optimiser, schedule, shuffler) -> None:
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


def restore(path: Path, identity: str, model, optimiser, schedule, shuffler) -> Progress:
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
        return Progress(
            epoch=payload["epoch"],
            history=payload["history"],
            best_f1=payload["best_f1"],
            best_epoch=payload["best_epoch"],
            best_weights=payload["best_weights"],
            seconds=payload["seconds"],
            eval_seconds=payload["eval_seconds"],
            restored_epoch=payload["epoch"],
        )
    return Progress()


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
