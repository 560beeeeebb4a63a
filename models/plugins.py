"""Bring your own model: plugin files or modules whose ``@register``ed builders become variants.

A plugin is either a ``.py`` file (a path, relative to ``base_dir``: the study file's
folder) or a dotted module name importable from the Python path (``my_pkg.my_models``).
Importing it runs its ``@models.register`` decorators; ``load_plugins`` returns the names
it registered. A plugin runs once per process, like any import: loading the same file again
(by any spelling of its path) registers nothing new and returns the same names. A file is
imported alone under a module name derived from its absolute path, so two plugins both
called ``my_models.py`` in different folders do not collide; to split a plugin over several
files, make it a package and name its module.

Anything that goes wrong is one ``PluginError`` naming the file: it does not import (syntax
error, missing import, exception at import time, with the line), it takes a name that is
already registered (a built-in such as ``carat``, or another plugin's), or, from
``check_contract``, the model it builds does not behave as the trainer needs. A plugin that
fails half-way leaves none of its names registered.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import random
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from models import baselines, carat  # noqa: F401  the built-in names, which a plugin may not take
from models.base import ClassicModel, LossOutput, NeuralModel
from models.presets import DEFAULT_PRESET
from models.registry import REGISTRY, DuplicateNameError
from models.spec import DataSpec

# Two modalities of different lengths and widths (unaligned), three labels: small enough to
# build any preset in a moment, shaped enough to catch a model that assumes one modality or T.
TINY_SPEC = DataSpec(modalities={"text": (5, 6), "audio": (3, 4)}, labels=("first", "second", "third"), aligned=False)
CHECK_BATCH = 4
CHECK_SAMPLES = 12  # for a ClassicModel's fit: every label both present and absent
BATCH_HINT = " (the batch has padded steps, and rows whose modality is missing: mask all False, features 0)"


class PluginError(ValueError):
    """A plugin cannot be loaded, or a model it registers breaks the model contract; the message names the file."""


def load_plugins(entries: Sequence[str], base_dir: Path | str) -> list[str]:
    """Import every plugin of ``entries`` (``.py`` paths relative to ``base_dir``, or dotted module
    names) and return the model names they register, in order, without repeats."""
    if isinstance(entries, str):
        raise PluginError(f"plugins must be a list of files or modules, got the string {entries!r}")
    names: list[str] = []
    for entry in entries:
        names += load_plugin(entry, base_dir)
    return list(dict.fromkeys(names))


def load_plugin(entry: str, base_dir: Path | str) -> list[str]:
    """Import one plugin (see ``load_plugins``) and return the names it registered."""
    if not isinstance(entry, str) or not entry.strip():
        raise PluginError(f"a plugin must be a .py file or a dotted module name, got {entry!r}")
    if entry.endswith(".py") or "/" in entry or "\\" in entry:
        return _load_file(entry, Path(base_dir))
    if all(part.isidentifier() for part in entry.split(".")):
        return _load_module(entry)
    raise PluginError(f"plugin {entry!r} is neither a .py file nor a dotted module name (such as my_pkg.my_models)")


def module_name_for(path: Path) -> str:
    """The unique, importable module name a plugin file is loaded under (one per absolute path)."""
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    stem = "".join(ch if ch.isalnum() else "_" for ch in path.stem)
    return f"_carat_plugin_{stem}_{digest}"


def _load_file(entry: str, base_dir: Path) -> list[str]:
    path = Path(entry).expanduser()
    path = (path if path.is_absolute() else base_dir / path).resolve()
    if not path.is_file():
        raise PluginError(f"plugin {entry!r}: no such file {path} (plugin paths are relative to {base_dir})")
    if path.suffix != ".py":
        raise PluginError(f"plugin {path}: a plugin file must be a .py file")
    source = str(path)
    name = module_name_for(path)
    if name in sys.modules:  # already imported in this process: like ``import``, it runs once
        return REGISTRY.names_from(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before running it: dataclasses and pickling look the module up by name
    try:
        with REGISTRY.recording(source):
            spec.loader.exec_module(module)
    except BaseException as exc:
        del sys.modules[name]
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise PluginError(_import_failure(source, exc, path)) from exc
    return REGISTRY.names_from(source)


def _load_module(entry: str) -> list[str]:
    if entry in sys.modules:
        return REGISTRY.names_from(entry)
    try:
        with REGISTRY.recording(entry):
            importlib.import_module(entry)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (entry == exc.name or entry.startswith(exc.name + ".")):
            raise PluginError(
                f"plugin module {entry!r} not found on the Python path; install its package, add its folder to "
                "PYTHONPATH, or name the .py file instead"
            ) from exc
        raise PluginError(_import_failure(entry, exc, None)) from exc
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise PluginError(_import_failure(entry, exc, None)) from exc
    return REGISTRY.names_from(entry)


def _import_failure(source: str, exc: BaseException, path: Path | None) -> str:
    """One line: the plugin, what failed, and where (file and line) when known."""
    if isinstance(exc, DuplicateNameError):
        return (
            f"plugin {source}: model name {exc.name!r} is already registered by {exc.existing}; "
            "give the builder another name (@register(name=...))"
        )
    if isinstance(exc, SyntaxError):
        own = path is not None and exc.filename == str(path)
        where = f"line {exc.lineno}" if own else f"{exc.filename}, line {exc.lineno}"
        return f"plugin {source} cannot be imported: SyntaxError at {where}: {exc.msg}"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<frozen")]
    own = [f for f in frames if path is not None and f.filename == str(path)]
    frame = (own or frames or [None])[-1]
    where = ""
    if frame is not None:
        where = f" at line {frame.lineno}" if own else f" at {frame.filename}, line {frame.lineno}"
    return f"plugin {source} cannot be imported: {type(exc).__name__}{where}: {exc}"


# -- the model contract ----------------------------------------------------------------------


def check_contract(name: str, spec: DataSpec | None = None, preset: str = DEFAULT_PRESET) -> None:
    """Build model ``name`` for ``spec`` (default ``TINY_SPEC``) and check what the trainer relies on.

    A ``NeuralModel`` must have trainable parameters; in train mode ``training_loss`` on a
    random batch must return a ``LossOutput`` whose ``total`` is a finite scalar tensor that
    backpropagates; in eval mode ``forward`` must return (B, C) finite scores in [0, 1]; and
    ``latents`` must return None or (B, M, C, dz). A ``ClassicModel`` must ``fit`` and then
    ``predict_scores`` (N, C) finite scores in [0, 1]. Both need a ``config`` dataclass
    instance. The first problem found raises ``PluginError`` naming the model and its source
    file; random states (torch, numpy, random) are left as they were."""
    spec = spec or TINY_SPEC
    where = f"model {name!r} ({REGISTRY.source(name)})"

    def fail(problem: str):
        raise PluginError(f"{where} breaks the model contract: {problem}")

    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            _check(name, spec, preset, fail)
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def _check(name: str, spec: DataSpec, preset: str, fail) -> None:
    try:
        model = REGISTRY.create(name, spec, preset=preset)
    except Exception as exc:
        fail(f"building it as fn(spec, preset={preset!r}) raised {type(exc).__name__}: {exc}")
    if not isinstance(model, (NeuralModel, ClassicModel)):
        fail(f"the builder returned a {type(model).__name__}, not a models.base.NeuralModel or ClassicModel")
    config = getattr(model, "config", None)
    if isinstance(config, dict):
        fail(_dict_config_problem(name, config))
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        fail(f"`config` must be a dataclass instance (its fields are logged as params), got {type(config).__name__}")
    inputs, masks, labels = _random_batch(spec, CHECK_SAMPLES if isinstance(model, ClassicModel) else CHECK_BATCH)
    if isinstance(model, ClassicModel):
        _check_classic(model, spec, inputs, masks, labels, fail)
    else:
        _check_neural(model, spec, inputs, masks, labels, fail)


def _dict_config_problem(name: str, config: dict) -> str:
    """Why a plain dict is refused as ``config``, with the dataclass to write instead (built from the
    dict's own keys and values). A dict is refused rather than logged as it is: its fields have no
    declared types or defaults, so a misspelt override would be taken silently, and the runner
    builds every model's params and configuration hash from a typed config."""
    class_name = "".join(part.capitalize() for part in str(name).replace("-", "_").split("_") if part) + "Config"
    if not class_name[0].isalpha():
        class_name = "Model" + class_name
    lines = [
        f"    {key}: {type(value).__name__} = {value!r}" for key, value in config.items() if str(key).isidentifier()
    ]
    lines = lines or ["    pass"]
    return (
        f"`config` must be a dataclass instance (its fields are logged as params), got a dict {config!r}; "
        "write instead\n\n    from dataclasses import dataclass\n\n"
        f"    @dataclass(frozen=True)\n    class {class_name}:\n"
        + "\n".join("    " + line for line in lines)
        + f"\n\nand set `self.config = {class_name}(**overrides)` in the model (or pass it from the builder)"
    )


def _random_batch(spec: DataSpec, n: int):
    """Random features, right-padded masks and labels with both values in every column.

    As in real data, one row per modality has that modality missing (mask all False, features
    0; a different row for each modality while rows last): a model must not turn it into NaN."""
    rng = np.random.default_rng(0)
    inputs, masks = {}, {}
    for i, (m, (steps, dim)) in enumerate(spec.modalities.items()):
        inputs[m] = rng.normal(size=(n, steps, dim)).astype(np.float32)
        lengths = np.arange(n) % steps + 1
        masks[m] = np.arange(steps)[None, :] < lengths[::-1, None]
        if i < n - 1:  # row 0 keeps every modality
            masks[m][n - 1 - i] = False
            inputs[m][n - 1 - i] = 0.0
    labels = ((np.arange(n)[:, None] + np.arange(spec.n_labels)[None, :]) % 2).astype(np.float32)
    return inputs, masks, labels


def _check_neural(model: NeuralModel, spec, inputs, masks, labels, fail) -> None:
    n, c = labels.shape
    if not any(p.requires_grad for p in model.parameters()):
        fail("it has no trainable parameters (the trainer's optimiser needs some)")
    x = {m: torch.from_numpy(v) for m, v in inputs.items()}
    k = {m: torch.from_numpy(v) for m, v in masks.items()}
    y = torch.from_numpy(labels)
    model.train()
    out = _call(fail, "training_loss", model.training_loss, x, k, y)
    if not isinstance(out, LossOutput):
        fail(f"training_loss must return models.base.LossOutput(total, parts), got {type(out).__name__}")
    total = out.total
    if not isinstance(total, torch.Tensor) or total.dim() != 0:
        shape = tuple(total.shape) if isinstance(total, torch.Tensor) else type(total).__name__
        fail(f"training_loss(...).total must be a scalar tensor (shape ()), got {shape}")
    if not torch.isfinite(total):
        fail(f"training_loss(...).total is {float(total.detach())} on a random batch{BATCH_HINT}")
    if not total.requires_grad:
        fail("training_loss(...).total does not depend on the parameters (requires_grad is False)")
    if not isinstance(out.parts, dict) or not all(isinstance(v, torch.Tensor) for v in out.parts.values()):
        fail("training_loss(...).parts must be a dict of name -> tensor")
    _call(fail, "backward() of training_loss(...).total", total.backward)
    model.eval()
    with torch.no_grad():
        scores = _call(fail, "forward", model, x, k)
        _check_scores(scores, n, c, "forward", fail)
        z = _call(fail, "latents", model.latents, x, k)
    if z is not None:
        m = len(spec.modalities)
        if not isinstance(z, torch.Tensor) or z.dim() != 4 or z.shape[0] != n or z.shape[1] != m or z.shape[2] != c:
            shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            fail(f"latents must return None or a (B, M, C, dz) = ({n}, {m}, {c}, dz) tensor, got {shape}")


def _check_classic(model: ClassicModel, spec, inputs, masks, labels, fail) -> None:
    _call(fail, "fit", model.fit, inputs, masks, labels)
    scores = _call(fail, "predict_scores", model.predict_scores, inputs, masks)
    if isinstance(scores, torch.Tensor) or not isinstance(scores, np.ndarray):
        fail(f"predict_scores must return a numpy array, got {type(scores).__name__}")
    _check_scores(torch.from_numpy(np.asarray(scores, dtype=np.float64)), *labels.shape, "predict_scores", fail)


def _check_scores(scores, n: int, c: int, what: str, fail) -> None:
    if not isinstance(scores, torch.Tensor):
        fail(f"{what} must return a tensor of scores, got {type(scores).__name__}")
    if tuple(scores.shape) != (n, c):
        fail(f"{what} returned shape {tuple(scores.shape)}, expected (batch, labels) = ({n}, {c})")
    if not torch.isfinite(scores).all():
        fail(f"{what} returned non-finite scores{BATCH_HINT}")
    if scores.min() < 0 or scores.max() > 1:
        fail(
            f"{what} must return scores in [0, 1] (probabilities: apply a sigmoid to logits), got values in "
            f"[{float(scores.min()):.3g}, {float(scores.max()):.3g}]"
        )


def _call(fail, what: str, fn, *args):
    try:
        return fn(*args)
    except Exception as exc:
        fail(f"{what} raised {type(exc).__name__}: {exc}")
