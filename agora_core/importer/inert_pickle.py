"""Reading the authors' whole-module pickles without running anything they name.

Their checkpoints (`checkpoint-*.pkl`) pickle whole `nn.Module`s: every class is named by its
import path, StyleGAN layers are eg3d "persistent classes" whose reduce call carries the *full
source text* of their module (a normal unpickle executes it), and `builtins.getattr` appears for
bound methods. `load_inert_pickle` resolves only a short allow-list of value constructors (tensor
and storage rebuilding, `OrderedDict`, numpy scalars/dtypes, torch dtypes); every other global,
whatever it names (`os.system`, `builtins.eval`, an eg3d class), becomes an `InertRecord` class:
calling or instantiating it only records the class path, the arguments and the state. Storages are
read back with `torch.load(weights_only=True)`. Nothing is imported on the file's behalf.
"""

from __future__ import annotations

import collections
import io
import pickle
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agora_core.errors import AgoraError, file_error

PERSISTENT_RECONSTRUCT = ("eg3d.torch_utils.persistence", "_reconstruct_persistent_obj")


class InertRecord:
    """An object of a class the file names but we never import: path, arguments and state only.

    Subclasses are made per global (`record_class`); `path` is "module.qualname". Instances accept
    what unpickling does to objects (`__setstate__`, item and list appends) and store it as data.
    """

    path = "?"

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj.args, obj.kwargs, obj.state, obj.items, obj.list = args, kwargs, None, {}, []
        return obj

    def __init__(self, *args, **kwargs):  # arguments were kept by __new__
        pass

    def __setstate__(self, state):
        self.state = state

    def __call__(self, *args, **kwargs):
        """Calling a record (e.g. the result of an inert getattr) only records the call."""
        return record_class("<call of>", self.path)(*args, **kwargs)

    def __setitem__(self, key, value):
        self.items[key] = value

    def append(self, value):
        self.list.append(value)

    def extend(self, values):
        self.list.extend(values)

    def __repr__(self) -> str:
        return f"InertRecord({self.path})"

    @property
    def attributes(self) -> dict:
        """The object's `__dict__` as pickled (state dict, or the dict half of (dict, slots))."""
        state = self.state
        if isinstance(state, tuple) and len(state) == 2 and (state[0] is None or isinstance(state[0], dict)):
            merged = dict(state[0] or {})
            merged.update(state[1] or {})
            return merged
        return state if isinstance(state, dict) else {}


def record_class(module: str, name: str) -> type:
    """A fresh `InertRecord` subclass standing for the global `module.name` (never imported)."""
    return type(name.split(".")[-1], (InertRecord,), {"path": f"{module}.{name}"})


@dataclass
class PersistentRecord:
    """An eg3d persistent-class object: its class name and `__dict__`; the module source is dropped."""

    class_name: str
    module_name: str
    state: dict = field(default_factory=dict)

    @property
    def attributes(self) -> dict:
        return self.state


def _persistent_record(meta) -> PersistentRecord:
    if isinstance(meta, InertRecord) or not isinstance(meta, dict):
        raise pickle.UnpicklingError("an eg3d persistent object without its meta dict")
    state = meta.get("state")
    if isinstance(state, tuple) and len(state) == 2:  # (dict, slots) form
        state = {**(state[0] or {}), **(state[1] or {})}
    module = ""
    src = meta.get("module_src")
    if isinstance(src, str):  # kept only as a label, never executed or parsed as code
        module = f"<embedded source, {len(src)} characters>"
    return PersistentRecord(str(meta.get("class_name", "?")), module, state if isinstance(state, dict) else {})


def _storage_from_bytes(data: bytes):
    if not isinstance(data, (bytes, bytearray)):
        raise pickle.UnpicklingError("a tensor storage that is not a byte string")
    return torch.load(io.BytesIO(bytes(data)), weights_only=True, map_location="cpu")


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                    metadata=None):
    if backward_hooks:
        raise pickle.UnpicklingError("a tensor with backward hooks")
    if isinstance(storage, torch.TypedStorage):
        with warnings.catch_warnings():  # torch.load hands back a TypedStorage; we only read it
            warnings.simplefilter("ignore", UserWarning)
            dtype, storage = storage.dtype, storage.untyped()
    else:
        raise pickle.UnpicklingError(f"a tensor over a {type(storage).__name__}, not a torch storage")
    out = torch.empty(0, dtype=dtype)
    out.set_(storage, int(storage_offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))
    return out


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    if not isinstance(data, torch.Tensor):
        raise pickle.UnpicklingError("a parameter that does not hold a tensor")
    return data


def _inert_getattr(obj, name, *default):
    """`builtins.getattr` as a record: (obj, name); it is never evaluated."""
    return record_class("builtins", "getattr")(obj, name, *default)


def _allowed() -> dict[tuple[str, str], Any]:
    table: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
        ("builtins", "getattr"): _inert_getattr,
        PERSISTENT_RECONSTRUCT: _persistent_record,
        ("numpy", "dtype"): np.dtype,
    }
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        from agora_core.head.flame_io import _numpy_reconstruct

        reconstruct, scalar, _ = _numpy_reconstruct()
        table[(mod, "scalar")] = scalar
        table[(mod, "_reconstruct")] = reconstruct
    table[("numpy", "ndarray")] = np.ndarray
    for name in ("float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool"):
        table[("torch", name)] = getattr(torch, name)
    return table


class _InertUnpickler(pickle.Unpickler):
    def __init__(self, file):
        super().__init__(file)
        self._table = _allowed()
        self.globals_seen: collections.Counter = collections.Counter()

    def find_class(self, module: str, name: str):
        self.globals_seen[f"{module}.{name}"] += 1
        found = self._table.get((module, name))
        return found if found is not None else record_class(module, name)

    def persistent_load(self, pid):
        raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")


def load_inert_pickle(path: str | Path, what: str = "pickle") -> Any:
    """Unpickle `path` with every foreign global as an `InertRecord` (see the module docstring).

    Raises `AgoraError` naming the file for anything that is not a readable pickle.
    """
    path = Path(path)
    if not path.is_file():
        raise AgoraError(f"{path}: no such file ({what})")
    try:
        with open(path, "rb") as f:
            return _InertUnpickler(f).load()
    except AgoraError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            RuntimeError, OverflowError, MemoryError, UnicodeDecodeError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise file_error(path, f"not a readable {what} ({type(exc).__name__}: {detail})") from None
