"""Model registry: every CARAT variant and baseline, created by name.

    >>> import models
    >>> models.list()
    >>> model = models.create("no_shuffle", dataset.spec, preset="small", dropout=0.1)
"""
from models.registry import create, describe, list, register  # noqa: F401

# Importing the modules registers their builders.
from models import carat, baselines  # noqa: E402,F401
