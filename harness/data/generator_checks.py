"""Checks shared by the configurations of the built-in generators (``synthetic``, ``synthetic_tabular``):
each collects every problem of a configuration, so that one error names them all."""

from __future__ import annotations


def fraction_problems(config, names) -> list[str]:
    """A problem for each of ``names`` whose value lies outside [0, 1]."""
    return [
        f"{name} must be in [0, 1], got {getattr(config, name)}"
        for name in names
        if not 0.0 <= getattr(config, name) <= 1.0
    ]


def signal_noise_problems(signal: float, noise: float) -> list[str]:
    return [] if signal >= 0 and noise > 0 else [f"signal must be >= 0 and noise > 0, got {signal}, {noise}"]


def raise_problems(problems: list[str]) -> None:
    if problems:
        raise ValueError("; ".join(problems))
