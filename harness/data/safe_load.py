"""Reading pickled data files (``torch.save`` files and plain pickles) without running their code.

A pickle can name any importable callable and have it called while loading. The public
CMU-MOSEI / M3ED files only hold numpy arrays, builtin containers (dict, list, ...) and,
under the ignorable key ``settings``, an ``argparse.Namespace``; both readers below accept
exactly that and refuse everything else with a :class:`DataFormatError` -- never by falling
back to an unrestricted load.
"""

from __future__ import annotations

import _codecs
import argparse
import collections
import pickle
import zipfile
from pathlib import Path

import numpy as np
from numpy._core import multiarray as _multiarray
from numpy._core import numeric as _numeric

from harness.data.dataset import DataFormatError

# A legacy (non-zip) torch.save file starts with the pickled magic number 0x1950a86a20f9469cfc6c.
_LEGACY_TORCH_HEADER = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)

# dtype classes of arrays we may meet: numbers, bool, strings/bytes (sample ids) and object
# (lists of label ids stored as an object array). Object arrays stay safe because their items go
# through the same restricted loader.
_DTYPE_CLASSES = tuple(type(np.dtype(code)) for code in "?bBhHiIlLqQefdgFDGUSO")

# numpy 1.x writes its reconstructors under ``numpy.core``, numpy 2 under ``numpy._core``.
_NUMPY_FUNCTIONS = {
    (module, name): getattr(_multiarray, name)
    for module in ("numpy.core.multiarray", "numpy._core.multiarray")
    for name in ("_reconstruct", "scalar")
}
# Pickle protocol 5 (numpy arrays re-saved by recent Python) rebuilds arrays from a buffer.
_NUMPY_FUNCTIONS.update(
    {(module, "_frombuffer"): _numeric._frombuffer for module in ("numpy.core.numeric", "numpy._core.numeric")}
)
_NUMPY_CLASSES = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
_NUMPY_CLASSES.update({("numpy.dtypes", cls.__name__): cls for cls in _DTYPE_CLASSES})
# Protocol-2 pickles encode raw bytes through _codecs.encode; the rest are plain containers.
_BUILTINS = {
    ("_codecs", "encode"): _codecs.encode,
    ("collections", "OrderedDict"): collections.OrderedDict,
    **{
        (module, cls.__name__): cls
        for module in ("builtins", "__builtin__")  # Python 3 / Python 2 pickles
        for cls in (set, frozenset, bytes, bytearray, complex)
    },
}
_PICKLE_ALLOWED = {**_NUMPY_FUNCTIONS, **_NUMPY_CLASSES, **_BUILTINS}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, numpy dtypes/scalars and builtin containers; refuses any other global."""

    def __init__(self, file, source: str):
        # latin1 lets numpy arrays pickled under Python 2 (the MulT release era) load.
        super().__init__(file, encoding="latin1")
        self.source = source

    def find_class(self, module: str, name: str):
        allowed = _PICKLE_ALLOWED.get((module, name))
        if allowed is None:
            raise DataFormatError(
                self.source,
                None,
                f"refusing to unpickle {module}.{name}: only numpy arrays and builtin containers are allowed "
                "(the file may be corrupt, of another kind, or hostile)",
            )
        return allowed


def load_pickle_file(path: Path) -> object:
    """A plain pickle, read with :class:`RestrictedUnpickler`."""
    with open(path, "rb") as handle:
        try:
            return RestrictedUnpickler(handle, str(path)).load()
        except DataFormatError:
            raise
        except Exception as error:  # any unpickling failure of a damaged or foreign file
            raise DataFormatError(path, None, f"not a readable pickle ({type(error).__name__}: {error})") from None


def torch_safe_globals() -> list:
    """The allow-list for ``torch.load(weights_only=True)`` on the MOSEI / M3ED ``.pt`` files.

    Minimal for the documented layout (float arrays, lists of ints): ``_reconstruct``,
    ``ndarray``, ``dtype`` and the dtype class of each array's dtype (``Float32DType``,
    ``Float64DType``). Added on purpose: the numpy-1.x spelling ``numpy.core.multiarray`` of
    the reconstructors (the public files predate numpy 2), ``scalar`` and the integer, bool,
    string and object dtype classes (sample ids, label-id arrays, stray numpy scalars), and
    ``argparse.Namespace``, which the files' ``settings`` entry holds (their preprocessing
    saved its command-line options there); a Namespace is rebuilt by setting attributes only.
    """
    allowed: list = [np.ndarray, np.dtype, *_DTYPE_CLASSES, argparse.Namespace]
    for (module, name), function in _NUMPY_FUNCTIONS.items():
        if name != "_frombuffer":  # torch.save writes protocol 2, which never needs it
            allowed.append((function, f"{module}.{name}"))
    return allowed


def load_torch_file(path: Path) -> object:
    """A ``torch.save`` file via ``torch.load(weights_only=True)`` with :func:`torch_safe_globals`.

    A file that is really a plain pickle (some copies are re-saved that way) goes through
    :func:`load_pickle_file`, which is no less strict.
    """
    path = Path(path)
    if not zipfile.is_zipfile(path) and not _has_legacy_torch_header(path):
        return load_pickle_file(path)
    import torch  # only .pt files need torch; the other loaders stay light to import

    try:
        with torch.serialization.safe_globals(torch_safe_globals()):
            return torch.load(path, weights_only=True, map_location="cpu")
    except Exception as error:  # the weights-only unpickler raises several types; all mean "refused"
        raise DataFormatError(path, None, f"refused by the safe loader: {_weights_only_reason(error)}") from None


def _has_legacy_torch_header(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(len(_LEGACY_TORCH_HEADER)) == _LEGACY_TORCH_HEADER


def _weights_only_reason(error: Exception) -> str:
    """The one informative line of torch's long weights-only message."""
    text = str(error)
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1].strip().split("\n\n")[0]
    return f"{type(error).__name__}: {text.strip().splitlines()[0] if text.strip() else ''}"
