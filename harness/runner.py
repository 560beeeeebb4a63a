"""The former home of the study runner, now the ``harness.run`` package; kept so that existing imports work."""

from harness.run import *  # noqa: F403
from harness.run import __all__  # noqa: F401
