"""Data sets by name: ``load("synthetic")``, ``load("emotions")``, ``load("npz", "my.npz")``.

Every loader returns a :class:`MultimodalDataset` (see ``dataset.py``); ``names()`` lists
the loaders and ``describe()`` gives their one-line descriptions and options. A loader
that carves its validation split from train lists ``split_seed`` among its options
(``carve.py``): a study runner passes each run's seed there.
"""

from harness.data.dataset import SPLITS, DataFormatError, DataSpec, MultimodalDataset, Split
from harness.data.npz import save_npz
from harness.data.registry import describe, load, names
from harness.data.synthetic import SyntheticConfig
from harness.data.synthetic_tabular import TabularConfig

__all__ = [
    "SPLITS",
    "DataFormatError",
    "DataSpec",
    "MultimodalDataset",
    "Split",
    "SyntheticConfig",
    "TabularConfig",
    "describe",
    "load",
    "names",
    "save_npz",
]
