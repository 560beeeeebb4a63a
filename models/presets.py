"""The preset names, in one place, and the one lookup every model and the training config use.

A preset is a named set of sizes and settings chosen together; a study names one preset
and it selects both the model's values and the training values. Each model keeps its own
values table beside its code (``{preset name: {field: value}}``) and reads it with
``preset_values``, so an unknown name is refused the same way everywhere, with the
valid names.

``paper``
    The paper / reference sizes and training protocol (``CARAT.md`` sections 1-5): for
    CARAT d=256, dz=64, depths 6/4/4, 8 heads, dropout 0.3, queue 8192, T'=500 for the CTC
    aligner on unaligned data; the reference's optimiser (BertAdam with warmup_linear,
    ``harness.optim``) at lr 5e-5, batch 64, 20 epochs, the last partial training batch
    dropped, threshold 0.25. Baselines use sizes comparable to CARAT's. Meant for the
    real data sets; slow on a CPU.
``small``
    The same architectures scaled down so that a whole run on the default (small)
    synthetic data takes seconds on a CPU: what the shipped studies and the tests use.
    Trained with torch's AdamW (linear warm-up/decay, one global clip norm), every
    sample in every epoch.

This module imports nothing (``models/__init__`` loads the built-in models only when the
registry is asked), so every layer (models, data, training, studies, the command line) may import
it cheaply and without an import cycle; ``harness.presets`` re-exports it.
"""

from __future__ import annotations

from collections.abc import Mapping

PRESETS: tuple[str, ...] = ("paper", "small")
DEFAULT_PRESET = "small"


def preset_problem(preset) -> str | None:
    """What is wrong with ``preset`` as a preset name (None: nothing): the one check of a preset."""
    if preset not in PRESETS:
        return f"unknown preset {preset!r}; valid: {', '.join(PRESETS)}"
    return None


def preset_values(table: Mapping[str, Mapping], preset: str, model_name: str) -> dict:
    """A copy of ``table[preset]``; an unknown preset is refused with the valid names.

    ``model_name`` (a registered model, or ``"training"``) is named in the error. A table
    that does not give values for exactly the names in ``PRESETS`` is a programming error
    and is refused too, so a new preset cannot be forgotten in one model.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r} for {model_name!r}; valid presets: {', '.join(PRESETS)}")
    if set(table) != set(PRESETS):
        raise ValueError(
            f"{model_name!r}: its preset table names {sorted(table)}, it must name exactly {list(PRESETS)}"
        )
    return dict(table[preset])
