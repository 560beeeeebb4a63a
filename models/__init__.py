"""Model registry: every CARAT variant and baseline, created by name.

>>> import models
>>> models.list()
>>> model = models.create("no_shuffle", dataset.spec, preset="small", dropout=0.1)
>>> models.load_plugins(["my_models.py"], base_dir=study_folder)  # bring your own model

The built-in models (``models.carat``, ``models.baselines``: torch, seconds to import) are
loaded on the first question to the registry, so that the pure contracts beside them
(``models.spec``, ``models.presets``) and ``@register`` cost nothing to import.
"""

from models.registry import REGISTRY, DuplicateNameError, register  # noqa: F401

_FROM_REGISTRY = ("create", "describe", "list", "names_from", "source")
_FROM_PLUGINS = ("PluginError", "check_contract", "load_plugins")


def __getattr__(name: str):
    if name in (*_FROM_REGISTRY, *_FROM_PLUGINS, "baselines", "carat", "plugins"):
        from importlib import import_module

        for module in ("baselines", "carat", "plugins"):  # importing them registers the built-in builders
            globals()[module] = import_module(f"models.{module}")
        plugins = globals()["plugins"]
        globals().update({n: getattr(REGISTRY, n) for n in _FROM_REGISTRY})
        globals().update({n: getattr(plugins, n) for n in _FROM_PLUGINS})
        return globals()[name]
    raise AttributeError(f"module 'models' has no attribute {name!r}")
