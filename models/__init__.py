"""Model registry: every CARAT variant and baseline, created by name.

>>> import models
>>> models.list()
>>> model = models.create("no_shuffle", dataset.spec, preset="small", dropout=0.1)
>>> models.load_plugins(["my_models.py"], base_dir=study_folder)  # bring your own model
"""

# Importing the modules registers their builders.
from models import baselines, carat  # noqa: E402,F401
from models.plugins import PluginError, check_contract, load_plugins  # noqa: E402,F401
from models.registry import create, describe, list, register, source  # noqa: F401
