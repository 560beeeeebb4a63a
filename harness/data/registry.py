"""The loaders by name: ``load``, ``names``, ``describe`` (re-exported by ``harness.data``)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, fields

from harness.data.arff import load_arff, load_emotions
from harness.data.dataset import MultimodalDataset
from harness.data.mosei import load_m3ed, load_mosei_aligned, load_mosei_unaligned
from harness.data.npz import load_npz
from harness.data.synthetic import SyntheticConfig, load_synthetic
from harness.data.synthetic_tabular import TabularConfig, load_synthetic_tabular


@dataclass(frozen=True)
class _Loader:
    function: Callable[..., MultimodalDataset]
    options: tuple[str, ...]  # keyword options the loader accepts besides data_path

    @property
    def description(self) -> str:
        return (self.function.__doc__ or "").strip().splitlines()[0]


def _field_names(config_class) -> tuple[str, ...]:
    return tuple(f.name for f in fields(config_class))


def _keyword_options(function) -> tuple[str, ...]:
    return tuple(p for p in inspect.signature(function).parameters if p != "data_path")


_LOADERS: dict[str, _Loader] = {
    "synthetic": _Loader(load_synthetic, _field_names(SyntheticConfig)),
    "synthetic_tabular": _Loader(load_synthetic_tabular, _field_names(TabularConfig)),
    "mosei_aligned": _Loader(load_mosei_aligned, _keyword_options(load_mosei_aligned)),
    "mosei_unaligned": _Loader(load_mosei_unaligned, _keyword_options(load_mosei_unaligned)),
    "m3ed": _Loader(load_m3ed, _keyword_options(load_m3ed)),
    "emotions": _Loader(load_emotions, _keyword_options(load_emotions)),
    "arff": _Loader(load_arff, _keyword_options(load_arff)),
    "npz": _Loader(load_npz, _keyword_options(load_npz)),
}


def names() -> list[str]:
    return list(_LOADERS)


def describe() -> dict[str, dict]:
    """Name -> {"description": first docstring line, "options": accepted option names}."""
    return {name: {"description": e.description, "options": list(e.options)} for name, e in _LOADERS.items()}


def load(name: str, data_path=None, **options) -> MultimodalDataset:
    """The data set ``name`` read from ``data_path`` (a folder or file; some loaders need none)."""
    if name not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(_LOADERS)}")
    entry = _LOADERS[name]
    unknown = sorted(set(options) - set(entry.options))
    if unknown:
        raise ValueError(f"dataset {name!r}: unknown option(s) {unknown}; valid options: {', '.join(entry.options)}")
    return entry.function(data_path, **options)
