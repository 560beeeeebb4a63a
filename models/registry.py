"""timm-style model registry: ``@register`` a builder, ``create(name, spec, **overrides)``, ``list()``.

A builder is ``fn(spec: DataSpec, preset: str = "small", **overrides) -> model``; its
docstring's first line is the one-line description shown by ``invoke variants``.

The names live in one ``Registry`` object (``REGISTRY``), because ``@register`` runs when a
module is imported and must find the same table wherever it is imported from; the module
functions ``register``, ``create``, ``list``, ``describe`` and ``source`` are its methods.
Every entry remembers where it came from (the builder's module, or the plugin file being
loaded), so a clash names both sides and a plugin's own names can be listed.
"""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from models.presets import DEFAULT_PRESET


@dataclass(frozen=True)
class Entry:
    name: str
    builder: Callable
    source: str  # a module name ("models.carat") or the path of the plugin file that registered it


class DuplicateNameError(ValueError):
    """A model name is registered a second time by a different builder."""

    def __init__(self, name: str, existing: str, source: str):
        self.name, self.existing, self.source = name, existing, source
        super().__init__(f"model {name!r} registered twice: by {existing} and by {source}")


class Registry:
    """Model names -> builders, each with its source."""

    def __init__(self):
        self._entries: dict[str, Entry] = {}
        self._loading: str | None = None  # the plugin being imported, set by ``recording``

    def register(self, fn: Callable | None = None, *, name: str | None = None):
        """Decorator: register ``fn`` under ``name`` (default: the function's name).

        Registering the very same function again is a no-op (a module imported twice); any
        other builder under a taken name is refused with ``DuplicateNameError``."""

        def wrap(f: Callable) -> Callable:
            key = name or f.__name__
            source = self._loading or f.__module__
            existing = self._entries.get(key)
            if existing is not None:
                if existing.builder is f:
                    return f
                raise DuplicateNameError(key, existing.source, source)
            self._entries[key] = Entry(key, f, source)
            return f

        return wrap(fn) if fn is not None else wrap

    def list(self) -> builtins.list[str]:
        """Names of every registered model, sorted."""
        return sorted(self._entries)

    def describe(self, name: str) -> str:
        """The one-line description of a registered model."""
        doc = (self._entry(name).builder.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""

    def source(self, name: str) -> str:
        """Where ``name`` was registered: a module name, or the path of a plugin file."""
        return self._entry(name).source

    def names_from(self, source: str) -> builtins.list[str]:
        """The names ``source`` registered, in registration order."""
        return [e.name for e in self._entries.values() if e.source == source]

    def create(self, name: str, spec, preset: str = DEFAULT_PRESET, **overrides):
        """Build the registered model ``name`` for data of shape ``spec``."""
        return self._entry(name).builder(spec, preset=preset, **overrides)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    @contextlib.contextmanager
    def recording(self, source: str) -> Iterator[None]:
        """Attribute every registration inside the block to ``source``; if the block fails, its
        registrations are taken back, so a plugin that breaks half-way leaves no names behind."""
        before, outer = set(self._entries), self._loading
        self._loading = source
        try:
            yield
        except BaseException:
            for key in set(self._entries) - before:
                del self._entries[key]
            raise
        finally:
            self._loading = outer

    def _entry(self, name: str) -> Entry:
        if name not in self._entries:
            raise KeyError(f"unknown model {name!r}; registered: {', '.join(sorted(self._entries))}")
        return self._entries[name]


REGISTRY = Registry()
register = REGISTRY.register
list = REGISTRY.list  # noqa: A001 - timm-style public name
describe = REGISTRY.describe
source = REGISTRY.source
create = REGISTRY.create
