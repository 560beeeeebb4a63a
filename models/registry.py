"""timm-style model registry: ``@register`` a builder, ``create(name, spec, **overrides)``, ``list()``.

A builder is ``fn(spec: DataSpec, preset: str = "small", **overrides) -> model``; its
docstring's first line is the one-line description shown by ``invoke variants``.
"""
from __future__ import annotations

import builtins
from typing import Callable

_BUILDERS: dict[str, Callable] = {}


def register(fn: Callable | None = None, *, name: str | None = None):
    """Decorator: register ``fn`` under ``name`` (default: the function's name)."""

    def wrap(f: Callable) -> Callable:
        key = name or f.__name__
        if key in _BUILDERS:
            raise ValueError(f"model {key!r} registered twice")
        _BUILDERS[key] = f
        return f

    return wrap(fn) if fn is not None else wrap


def list() -> builtins.list[str]:  # noqa: A001 - timm-style public name
    """Names of every registered model, sorted."""
    return sorted(_BUILDERS)


def describe(name: str) -> str:
    """The one-line description of a registered model."""
    doc = (_builder(name).__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""


def create(name: str, spec, preset: str = "small", **overrides):
    """Build the registered model ``name`` for data of shape ``spec``."""
    return _builder(name)(spec, preset=preset, **overrides)


def _builder(name: str) -> Callable:
    if name not in _BUILDERS:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(sorted(_BUILDERS))}")
    return _BUILDERS[name]
