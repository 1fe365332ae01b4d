"""Read pickled feature files without running code from them.

A pickle names functions and classes that the loader calls to rebuild objects, so an ordinary
``pickle.load`` of a downloaded file can run anything (``os.system``, ``eval``). ``safe_load`` only
resolves names on an allow-list: what rebuilds numpy arrays and scalars (numpy 1.x ``numpy.core``
and 2.x ``numpy._core`` spellings), torch tensors, and plain containers. Any other name stops the
load with ``UnsafePickleError`` before it is called. Files written by ``torch.save`` (zip archives,
or the older format) go through ``torch.load(weights_only=True)``, torch's own allow-list loader,
with the numpy names above added to it.
"""
from __future__ import annotations

import collections
import importlib
import io
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, Callable

from vemo.errors import DataError

# torch.save's older (non-zip) format starts with this number pickled on its own
_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_NUMPY_CORE = ("numpy.core", "numpy._core")


class UnsafePickleError(DataError):
    """A pickle names a function or class outside the allow-list; nothing from it was run."""


def _numpy_name(submodule: str, name: str) -> Callable[[], Any]:
    """Resolve a numpy core name in whichever spelling the installed numpy has."""
    def resolve() -> Any:
        for package in ("numpy._core", "numpy.core"):
            try:
                return getattr(importlib.import_module(f"{package}.{submodule}"), name)
            except (ImportError, AttributeError):
                continue
        raise AttributeError(f"numpy has no {submodule}.{name}")
    return resolve


def _numpy_top(name: str) -> Callable[[], Any]:
    return lambda: getattr(importlib.import_module("numpy"), name)


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    # protocol 2 pickles spell bytes as _codecs.encode(text, "latin1"); other codecs are not needed
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return text.encode("latin1")


def _storage_from_bytes(data: bytes) -> Any:
    # a tensor pickled with pickle.dump carries its storage as torch.save bytes; torch's own
    # _load_from_bytes would read them with the unrestricted loader
    import torch

    if not isinstance(data, (bytes, bytearray)):
        raise pickle.UnpicklingError("a torch storage must be given as bytes")
    return torch.load(io.BytesIO(bytes(data)), weights_only=True, map_location="cpu")


def _torch_name(module: str, name: str) -> Callable[[], Any]:
    return lambda: getattr(importlib.import_module(module), name)


_BUILTINS = {"dict": dict, "list": list, "tuple": tuple, "set": set, "frozenset": frozenset,
             "str": str, "bytes": bytes, "bytearray": bytearray, "int": int, "float": float,
             "bool": bool, "complex": complex, "slice": slice}

_ALLOWED: dict[tuple[str, str], Callable[[], Any]] = {
    **{(mod, name): (lambda v=value: v) for name, value in _BUILTINS.items()
       for mod in ("builtins", "__builtin__")},
    ("collections", "OrderedDict"): lambda: collections.OrderedDict,
    # a defaultdict's factory is itself a pickled name, so it passes through this list as well
    ("collections", "defaultdict"): lambda: collections.defaultdict,
    ("_codecs", "encode"): lambda: _latin1_encode,
    ("numpy", "ndarray"): _numpy_top("ndarray"),
    ("numpy", "dtype"): _numpy_top("dtype"),
    **{(f"{core}.multiarray", name): _numpy_name("multiarray", name)
       for core in _NUMPY_CORE for name in ("_reconstruct", "scalar")},
    **{(f"{core}.numeric", "_frombuffer"): _numpy_name("numeric", "_frombuffer") for core in _NUMPY_CORE},
    ("torch._utils", "_rebuild_tensor_v2"): _torch_name("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_tensor"): _torch_name("torch._utils", "_rebuild_tensor"),
    ("torch.storage", "_load_from_bytes"): lambda: _storage_from_bytes,
}


# more names a caller may allow for one file: paths, which some training configs pickle (a path object
# is built from its parts and does nothing else)
OPTIONAL: dict[str, Callable[[], Any]] = {
    f"pathlib.{name}": (lambda n=name: getattr(importlib.import_module("pathlib"), n))
    for name in ("PosixPath", "PurePosixPath", "WindowsPath", "PureWindowsPath")}


def _optional(extra: tuple[str, ...]) -> dict[tuple[str, str], Callable[[], Any]]:
    unknown = [n for n in extra if n not in OPTIONAL]
    if unknown:
        raise ValueError(f"not allowable: {unknown}; only {sorted(OPTIONAL)}")
    return {tuple(n.rsplit(".", 1)): OPTIONAL[n] for n in extra}  # type: ignore[misc]


class _AllowListUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, source: Path, extra: tuple[str, ...] = ()):
        super().__init__(file)
        self.source = source
        self.allowed = {**_ALLOWED, **_optional(extra)}

    def find_class(self, module: str, name: str) -> Any:
        resolve = self.allowed.get((module, name))
        if resolve is None:
            raise UnsafePickleError(
                f"{self.source}: refusing to load {module}.{name}: the pickle asks for a function or "
                "class outside the allow-list (numpy arrays, torch tensors, plain containers); "
                "nothing from the file was run")
        return resolve()

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self.source}: refusing a persistent id in a plain pickle")


def _extra_safe_globals() -> list[Any]:
    """Names torch.load(weights_only=True) does not allow by itself: numpy arrays, scalars and dtypes
    saved with torch.save, and the plain builtins on the list above."""
    import numpy as np

    names: list[Any] = [frozenset, complex, slice, bytearray, collections.defaultdict, np.ndarray, np.dtype]
    # torch matches names as spelled in the file: list both numpy 1.x and 2.x spellings
    for module, name in _ALLOWED:
        if module.startswith(_NUMPY_CORE):
            names.append((_ALLOWED[(module, name)](), f"{module}.{name}"))
    # numpy 2 pickles dtypes by their own classes (numpy.dtypes.Float32DType, ...)
    names += sorted({type(np.dtype(c)) for c in np.typecodes["All"] if c not in "OV"} - {np.dtype},
                    key=lambda t: t.__name__)
    return names


def _torch_load(path: Path, extra: tuple[str, ...] = ()) -> Any:
    import torch

    try:
        with torch.serialization.safe_globals([*_extra_safe_globals(), *(r() for r in _optional(extra).values())]):
            return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        if not found and "Unsupported" not in str(e):
            raise DataError(f"{path} is not a readable torch file (truncated or corrupt?): "
                            f"{str(e).splitlines()[-1] if str(e) else e!r}") from None
        what = found.group(1) if found else "a name outside torch's allow-list"
        what = what if "." in what or not found else f"builtins.{what}"  # torch omits "builtins."
        raise UnsafePickleError(f"{path}: refusing to load {what}: the torch file asks for a function "
                                "or class outside the allow-list; nothing from it was run") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise DataError(f"{path} is not a readable torch file (truncated or corrupt?): {e}") from None


def safe_load(path: str | Path, extra_classes: tuple[str, ...] | list[str] = ()) -> Any:
    """Load a pickle or torch.save file, refusing any name outside the allow-list (plus
    ``extra_classes``, names from ``OPTIONAL`` the caller expects in this file)."""
    extra = tuple(extra_classes)
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist")
    with open(path, "rb") as f:
        head = f.read(4)
    if head == b"PK\x03\x04" or zipfile.is_zipfile(path):  # torch.save's zip archive, maybe truncated
        return _torch_load(path, extra)
    try:
        with open(path, "rb") as f:
            unpickler = _AllowListUnpickler(f, path, extra)
            obj = unpickler.load()
            legacy_torch = (type(obj) is int and obj == _TORCH_LEGACY_MAGIC and f.read(1) != b"")
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, MemoryError, RuntimeError, OverflowError, UnicodeDecodeError) as e:
        raise DataError(f"{path} is not a readable pickle (truncated or corrupt?): "
                        f"{type(e).__name__}: {e}") from None
    if legacy_torch:
        return _torch_load(path, extra)
    return obj
