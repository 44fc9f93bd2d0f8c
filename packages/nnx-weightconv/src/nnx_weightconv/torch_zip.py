"""Reading ``torch.save`` files without torch: a zip of raw storages plus a restricted pickle.

Since PyTorch 1.6 ``torch.save`` writes a zip archive ``<name>/data.pkl``, ``<name>/data/<key>``
(one raw little-endian buffer per storage), ``<name>/byteorder`` and a version record. The
pickle refers to storages by persistent id ``("storage", <dtype class>, key, location, numel)``
and rebuilds tensors with ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)``
(element units); the format is written by ``torch/serialization.py`` (``_save``) and read back by
``torch/_utils.py`` (``_rebuild_tensor_v2``) in https://github.com/pytorch/pytorch. This module
replays that with numpy, so published checkpoints (DiT ``.pt``, the RAE statistics ``stat.pt``
``{"mean": None, "var": tensor [768, 16, 16]}``, the RAE decoder ``model.pt`` and the stage-2
``stage2_model.pt`` ``{"ema": state_dict, ...}``) load on machines without torch;
`nnx_weightconv.read_state_dict` reads every ``.pt`` through it.

Safety: no global named in the pickle is ever imported. Tensors, storages and ``OrderedDict``
map to numpy / builtins; any other class (an ``argparse.Namespace`` of training arguments, an
optimizer's enum) becomes an inert :class:`OpaqueObject` that only records its name and
arguments.
"""

from __future__ import annotations

import collections
import pathlib
import pickle
import zipfile
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from nnx_weightconv.core import ConversionError

__all__ = ["OpaqueObject", "TorchFileError", "flatten_state_dict", "read_torch_file"]

_STORAGE_DTYPES: dict[str, str] = {
    "DoubleStorage": "<f8",
    "FloatStorage": "<f4",
    "HalfStorage": "<f2",
    "BFloat16Storage": "<u2",  # widened to float32 after reading
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


_BUILTINS = {"set": set, "frozenset": frozenset, "slice": slice, "tuple": tuple, "list": list}


class TorchFileError(ConversionError):
    """A file is not a readable ``torch.save`` zip archive; the message says why and what to do."""


class OpaqueObject:
    """Stand-in for a pickled object of a class this reader does not rebuild.

    Attributes:
      qualified_name: ``"module.Class"`` as written in the pickle.
      args: positional arguments the pickle passed to the constructor.
      state: whatever the pickle passed to ``__setstate__`` (usually the instance ``__dict__``).
    """

    qualified_name = "?"
    args: tuple = ()  # set by __init__ (REDUCE); NEWOBJ only calls __new__
    state: Any = None

    def __init__(self, *args: Any, **kwargs: Any):
        self.args = args
        self.state: Any = kwargs or None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"OpaqueObject({self.qualified_name})"


def _opaque_class(module: str, name: str) -> type:
    return type(name, (OpaqueObject,), {"qualified_name": f"{module}.{name}"})


class _StorageType:
    """What the pickle's ``torch.<X>Storage`` global turns into: just the numpy dtype."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _LazyStorage:
    """One ``data/<key>`` record of the archive, read the first time a tensor needs it."""

    def __init__(self, reader: _StorageReader, key: str, storage_type: _StorageType, numel: int):
        self.reader, self.key, self.storage_type, self.numel = reader, key, storage_type, numel

    @property
    def dtype(self) -> np.dtype:
        return (
            np.dtype(np.float32)
            if self.storage_type.name == "BFloat16Storage"
            else (self.storage_type.dtype)
        )

    def read(self) -> np.ndarray:
        return self.reader.read(self)


class _LazyTensor:
    """A tensor of the pickle, rebuilt from its storage only when materialised."""

    def __init__(self, storage: _LazyStorage, offset: int, size: tuple, stride: tuple):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def materialise(self) -> np.ndarray:
        """numpy version of ``torch._utils._rebuild_tensor_v2`` (offset, strides in elements)."""
        size, stride, offset = self.size, self.stride, self.offset
        if not all(size):
            return np.zeros(size, self.storage.dtype)
        storage = self.storage.read()
        needed = offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1
        if needed > storage.size:
            raise TorchFileError(
                f"tensor of size {size}, stride {stride} at offset {offset} needs {needed} "
                f"elements but its storage holds {storage.size}; the file is truncated"
            )
        view = np.lib.stride_tricks.as_strided(
            storage[offset:],
            shape=size,
            strides=tuple(s * storage.itemsize for s in stride),
            writeable=False,
        )
        return np.array(view)


def _rebuild_tensor_v2(
    storage: _LazyStorage,
    storage_offset: int,
    size: tuple[int, ...],
    stride: tuple[int, ...],
    requires_grad: bool = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> _LazyTensor:
    del requires_grad, backward_hooks, metadata
    return _LazyTensor(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_parameter(data: _LazyTensor, requires_grad: bool = False, hooks: Any = None, *_):
    return data


def _rebuild_from_type_v2(func, new_type, args, state):
    del new_type, state
    return func(*args)


class _StorageReader:
    """Reads (once) and caches the raw storages of an open archive."""

    def __init__(self, archive: zipfile.ZipFile, prefix: str, byteorder: str):
        self.archive, self.prefix, self.byteorder = archive, prefix, byteorder
        self.cache: dict[str, np.ndarray] = {}

    def read(self, storage: _LazyStorage) -> np.ndarray:
        if storage.key in self.cache:
            return self.cache[storage.key]
        name = f"{self.prefix}data/{storage.key}"
        try:
            raw = self.archive.read(name)
        except KeyError as error:
            raise TorchFileError(f"storage {name!r} is missing from the archive") from error
        dtype = storage.storage_type.dtype
        if self.byteorder == "big":
            dtype = dtype.newbyteorder(">")
        if len(raw) < storage.numel * dtype.itemsize:
            raise TorchFileError(
                f"storage {name!r} holds {len(raw)} bytes, expected "
                f"{storage.numel * dtype.itemsize}; the file is truncated, download it again"
            )
        array = np.frombuffer(raw, dtype=dtype, count=storage.numel).astype(dtype.newbyteorder("="))
        if storage.storage_type.name == "BFloat16Storage":
            array = (array.astype(np.uint32) << 16).view(np.float32)
        self.cache[storage.key] = array
        return array


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, reader: _StorageReader):
        super().__init__(file)
        self._reader = reader
        self._storages: dict[str, _LazyStorage] = {}

    def find_class(self, module: str, name: str):
        match (module, name):
            case ("torch._utils", "_rebuild_tensor_v2"):
                return _rebuild_tensor_v2
            case ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state"):
                return _rebuild_parameter
            case ("torch._tensor", "_rebuild_from_type_v2"):
                return _rebuild_from_type_v2
            case ("torch", storage) if storage in _STORAGE_DTYPES:
                return _StorageType(storage)
            case ("torch", "Size"):
                return tuple
            case ("collections", "OrderedDict"):
                return collections.OrderedDict
            case ("builtins", builtin) if builtin in _BUILTINS:
                return _BUILTINS[builtin]
        return _opaque_class(module, name)

    def persistent_load(self, pid: Any) -> _LazyStorage:
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise TorchFileError(f"unsupported persistent id {pid!r} in data.pkl")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise TorchFileError(
                f"storage of unsupported type {storage_type!r}; supported: "
                f"{', '.join(_STORAGE_DTYPES)}"
            )
        if key not in self._storages:
            self._storages[key] = _LazyStorage(self._reader, str(key), storage_type, int(numel))
        return self._storages[key]


def _materialise(value: Any) -> Any:
    if isinstance(value, _LazyTensor):
        return value.materialise()
    if isinstance(value, collections.OrderedDict):
        out = collections.OrderedDict((k, _materialise(v)) for k, v in value.items())
        out.__dict__.update(value.__dict__)  # e.g. a state dict's _metadata
        return out
    if isinstance(value, dict):
        return {k: _materialise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_materialise(v) for v in value)
    if isinstance(value, OpaqueObject):
        value.args = _materialise(value.args)
        value.state = _materialise(value.state)
    return value


def read_torch_file(path: str | pathlib.Path, *, select: Callable[[Any], Any] | None = None) -> Any:
    """Load a ``torch.save`` zip archive into numpy arrays and builtins, without torch.

    Args:
      path: file written by ``torch.save`` (PyTorch >= 1.6 zip format).
      select: applied to the unpickled object before any tensor data is read, e.g.
        ``lambda ckpt: ckpt["ema"]``: only the storages of the selected part are read, so
        taking the EMA weights of a training checkpoint does not load its optimizer state.

    Returns:
      The saved object (or ``select`` of it) with every tensor as a ``np.ndarray`` (bfloat16
      widened to float32, other dtypes kept) and ``nn.Parameter`` unwrapped.

    Raises:
      FileNotFoundError: the file does not exist.
      TorchFileError: not a zip archive (legacy pre-1.6 format, or a truncated download), or
        a storage is missing or short.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"torch file {str(path)!r} does not exist")
    if not zipfile.is_zipfile(path):
        raise TorchFileError(
            f"{str(path)!r} is not a torch zip archive (legacy torch<1.6 format or a truncated "
            "download); re-save it with a recent torch or download it again"
        )
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
        if len(pickles) != 1:
            raise TorchFileError(
                f"{str(path)!r} holds {len(pickles)} data.pkl records; expected exactly one"
            )
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = "little"
        if f"{prefix}byteorder" in archive.namelist():
            byteorder = archive.read(f"{prefix}byteorder").decode().strip()
        reader = _StorageReader(archive, prefix, byteorder)
        with archive.open(pickles[0]) as handle:
            try:
                tree = _Unpickler(handle, reader).load()
            except TorchFileError:
                raise
            except Exception as error:
                raise TorchFileError(f"cannot unpickle {str(path)!r}: {error}") from error
        if select is not None:
            tree = select(tree)
        return _materialise(tree)


def flatten_state_dict(tree: Mapping, prefix: str = "") -> dict[str, Any]:
    """Nested ``{name: {name: array}}`` -> flat ``{"name.name": array}``.

    Values without a ``shape`` (step counters, ``None``, `OpaqueObject`) are dropped.
    """
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_state_dict(value, f"{name}."))
        elif hasattr(value, "shape"):
            flat[name] = value
    return flat
