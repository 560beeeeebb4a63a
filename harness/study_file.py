"""Study files (``studies/*.yaml``) read and checked against the schema, the dataclasses of
``harness.studies``: the file's fields and their types are read from those dataclasses' fields.

Anything unknown or ill-typed is refused with the file, the field and the valid choices. A
study's plugins are loaded here (their models become valid variants) and hashed (their code is
part of the configuration).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import MISSING, fields
from pathlib import Path
from types import UnionType
from typing import get_args, get_origin, get_type_hints

import yaml

from harness.config import epochs_problem
from harness.studies import STUDIES_DIR, DataSource, SearchParam, Study, StudyError
from models.presets import preset_problem


def _file_type(hint, metadata) -> type | tuple[type, ...] | None:
    """What a study file writes for a field of this type: a tuple is a YAML list, ``X | None`` either."""
    if "file" in metadata:
        return metadata["file"]
    if get_origin(hint) is tuple:
        return list
    if isinstance(hint, UnionType):
        return tuple(get_origin(a) or a for a in get_args(hint))
    return get_origin(hint) or hint


def _schema() -> dict[str, type | tuple[type, ...]]:
    """The fields of a study file and their YAML types, read from the dataclasses: ``Study``'s fields
    (less those the loader computes) and the single-data-set form (``DataSource``'s fields)."""
    types = {}
    for cls, renamed in ((Study, {}), (DataSource, _SINGLE_DATASET)):
        hints = get_type_hints(cls)
        for f in fields(cls):
            name = renamed.get(f.name, f.name) if cls is DataSource else f.name
            if cls is DataSource and f.name not in renamed:
                continue
            kind = _file_type(hints[f.name], f.metadata)
            if kind is not None:
                types[name] = kind
    return types


def _default(name: str):
    """The default of a ``Study`` field (the one place it is written)."""
    f = next(f for f in fields(Study) if f.name == name)
    return f.default_factory() if f.default_factory is not MISSING else f.default


# The single-data-set form of a study file: DataSource field -> its name in the file.
_SINGLE_DATASET = {"loader": "dataset", "options": "dataset_options", "data_path": "data_path"}
_DATASET_ENTRY_FIELDS = ("name", "label", "data_path", "options")


def names() -> list[str]:
    """Names of the shipped studies (``studies/*.yaml``)."""
    return sorted(p.stem for p in STUDIES_DIR.glob("*.yaml"))


def load(name_or_path: str | Path) -> Study:
    """A study by name (from ``studies/``) or by path to a YAML file, validated."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = STUDIES_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            raise StudyError(f"unknown study {str(name_or_path)!r}; valid: {', '.join(names())}")
    if not path.exists():
        raise StudyError(f"{path}: no such study file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise StudyError(f"{path}: not valid YAML: {exc}") from None
    return from_dict(raw, source=str(path))


def from_dict(raw, source: str = "<memory>") -> Study:
    """Validate a parsed study file; every problem names ``source`` and the field."""
    import models  # the variants must be registered to be checked

    def fail(fieldname: str, problem: str):
        raise StudyError(f"{source}: field {fieldname!r}: {problem}")

    _check_types(raw, source, fail)
    base_dir = Path(source).resolve().parent if source != "<memory>" else Path.cwd()
    plugins, digests = _plugins(raw.get("plugins", []), base_dir, fail)
    variants, seeds = raw["variants"], raw.get("seeds", list(_default("seeds")))
    _check_values(raw, variants, seeds, fail)
    search_space = tuple(_search_param(name, spec, fail) for name, spec in raw.get("search_space", {}).items())
    if search_space and raw.get("trials", _default("trials")) == 0:
        fail("trials", "a search space needs a trial budget > 0")
    for variant in variants:
        if models.source(variant) in plugins:
            try:
                models.check_contract(variant)
            except models.PluginError as exc:
                fail("plugins", str(exc))
    values = {k: v for k, v in raw.items() if k not in ("search_space", *_SINGLE_DATASET.values())}
    values.update(
        variants=tuple(variants),
        seeds=tuple(seeds),
        search_space=search_space,
        source=source,
        overrides=_numbers(values.get("overrides", {})),
        datasets=_data_sources(raw, base_dir, fail),
        plugins=tuple(plugins),
        plugin_digests=digests,
    )
    return Study(**values)


def _check_types(raw, source: str, fail) -> None:
    """A mapping of known fields, the required ones there, each of its schema type."""
    if not isinstance(raw, dict):
        raise StudyError(f"{source}: a study file must be a mapping of fields, got {type(raw).__name__}")
    schema = _schema()
    unknown = sorted(set(raw) - set(schema))
    if unknown:
        raise StudyError(f"{source}: unknown field(s) {unknown}; valid fields: {', '.join(sorted(schema))}")
    for required in ("name", "variants"):
        if required not in raw:
            fail(required, "is required")
    for key, value in raw.items():
        expected = schema[key]
        if isinstance(value, bool) and expected is int or not isinstance(value, expected):
            want = expected.__name__ if isinstance(expected, type) else " or ".join(t.__name__ for t in expected)
            fail(key, f"must be {want}, got {type(value).__name__} {value!r}")


def _check_values(raw: dict, variants: list, seeds: list, fail) -> None:
    """Registered, distinct variants; distinct non-negative seeds; epochs, trials, preset, the
    variants of variant_overrides and the sweeps' value lists."""
    import models

    if not variants:
        fail("variants", "must list at least one variant")
    for v in variants:
        if v not in models.list():
            fail("variants", f"unknown variant {v!r}; valid: {', '.join(models.list())}")
    if len(set(variants)) != len(variants):
        fail("variants", "lists a variant twice")
    if not seeds:
        fail("seeds", "must list at least one seed")
    if any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        fail("seeds", f"must be distinct non-negative integers, got {seeds}")
    epochs = raw.get("epochs")
    if epochs is not None and (problem := epochs_problem(epochs)):
        fail("epochs", problem)
    if raw.get("trials", _default("trials")) < 0:
        fail("trials", f"must be >= 0, got {raw['trials']}")
    if problem := preset_problem(raw.get("preset", _default("preset"))):
        fail("preset", problem)
    for variant in raw.get("variant_overrides", {}):
        if variant not in variants:
            fail("variant_overrides", f"variant {variant!r} is not in this study's variants {variants}")
    for key, values in raw.get("sweep", {}).items():
        if not isinstance(values, list) or not values:
            fail("sweep", f"{key!r} must map to a non-empty list of values")
    reference = raw.get("reference")
    if reference is not None and reference not in variants:
        fail("reference", f"{reference!r} is not a variant of this study ({', '.join(variants)})")
    margin = raw.get("equivalence_margin")
    if margin is not None and (isinstance(margin, bool) or not (math.isfinite(margin) and margin > 0)):
        fail("equivalence_margin", f"must be a positive number, got {margin!r}")


def _plugins(entries: list, base_dir: Path, fail) -> tuple[list[str], dict]:
    """Load the study's plugins (their ``@register``ed models become valid variants); files are
    resolved relative to the study file. Returns the resolved entries and a hash of each one's
    source, so that editing a plugin makes a new configuration."""
    import importlib.util

    import models

    resolved = []
    for entry in entries:
        if not isinstance(entry, str):
            fail("plugins", f"must list file paths or module names, got {entry!r}")
        is_file = entry.endswith(".py") or "/" in entry
        resolved.append(str((base_dir / Path(entry).expanduser()).resolve()) if is_file else entry)
    try:
        models.load_plugins(resolved, base_dir)
    except models.PluginError as exc:
        fail("plugins", str(exc))
    digests = {}
    for entry in resolved:
        origin = entry if entry.endswith(".py") else importlib.util.find_spec(entry).origin
        digests[entry] = hashlib.sha1(Path(origin).read_bytes()).hexdigest()[:12] if origin else "unknown"
    return resolved, digests


def _data_sources(raw: dict, base_dir: Path, fail) -> tuple[DataSource, ...]:
    """The study's data sets: ``datasets:`` (a list of entries) or the single ``dataset:`` form.

    Relative data paths are read relative to the study file, so a study and its data can move
    together. Options are checked against what the loader accepts."""
    from harness import data as datasets

    single = [k for k in ("dataset", "dataset_options", "data_path") if k in raw]
    if "datasets" in raw and single:
        fail("datasets", f"give either 'datasets' (a list) or the single-data-set fields, not both ({single})")
    if "datasets" in raw:
        entries = [(f"datasets[{i}]", e) for i, e in enumerate(raw["datasets"])]
        if not entries:
            fail("datasets", "must list at least one data set")
    else:
        entries = [
            (
                "dataset",
                {
                    "name": raw.get("dataset", _default("datasets")[0].loader),
                    "data_path": raw.get("data_path"),
                    "options": raw.get("dataset_options", {}),
                },
            )
        ]
    sources = []
    for where, entry in entries:
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, dict):
            fail(where, f"must be a loader name or a mapping with {list(_DATASET_ENTRY_FIELDS)}, got {entry!r}")
        unknown = sorted(set(entry) - set(_DATASET_ENTRY_FIELDS))
        if unknown:
            fail(where, f"unknown key(s) {unknown}; valid: {', '.join(_DATASET_ENTRY_FIELDS)}")
        loader = entry.get("name")
        if loader not in datasets.names():
            fail(where, f"unknown data set {loader!r}; valid: {', '.join(datasets.names())}")
        options = entry.get("options") or {}
        if not isinstance(options, dict):
            fail(where, f"options must be a mapping, got {options!r}")
        accepted = datasets.describe()[loader]["options"]
        bad = sorted(set(options) - set(accepted))
        if bad:
            option_field = "dataset_options" if where == "dataset" else f"{where}.options"
            fail(option_field, f"unknown option(s) {bad} for data set {loader!r}; valid: {', '.join(accepted)}")
        path = entry.get("data_path")
        if path is not None and not isinstance(path, str):
            fail(where, f"data_path must be a string, got {path!r}")
        if path is not None:
            path = str((base_dir / Path(path).expanduser()).resolve())
        label = entry.get("label", "")
        if not isinstance(label, str):
            fail(where, f"label must be a string, got {label!r}")
        sources.append(DataSource(loader, path, dict(options), label))
    labels = [s.name for s in sources]
    if len(set(labels)) != len(labels):
        fail("datasets", f"data set names must be unique, got {labels}; give repeated loaders a 'label'")
    return tuple(sources)


def _search_param(name: str, spec, fail) -> SearchParam:
    where = f"search_space.{name}"
    if not isinstance(spec, dict):
        fail(where, "must be a mapping with low/high (and optional log) or choices")
    unknown = sorted(set(spec) - {"low", "high", "log", "choices"})
    if unknown:
        fail(where, f"unknown key(s) {unknown}; valid: choices, high, log, low")
    if "choices" in spec:
        if not isinstance(spec["choices"], list) or not spec["choices"]:
            fail(where, "choices must be a non-empty list")
        return SearchParam(name, choices=tuple(spec["choices"]))
    if "low" not in spec or "high" not in spec:
        fail(where, "needs both low and high (or choices)")
    low, high = _number(spec["low"]), _number(spec["high"])
    if low is None or high is None:
        fail(where, f"low and high must be numbers, got {spec['low']!r} and {spec['high']!r}")
    if low > high:
        fail(where, f"low ({low}) must not exceed high ({high})")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        fail(where, f"log must be true or false, got {log!r}")
    if log and low <= 0:
        fail(where, f"a log-scaled range needs low > 0, got {low}")
    return SearchParam(name, low=low, high=high, log=log)


def _number(value):
    """A YAML number; also '1e-4', which YAML 1.1 reads as a string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _numbers(mapping: dict) -> dict:
    return {k: (_number(v) if isinstance(v, str) and _number(v) is not None else v) for k, v in mapping.items()}
