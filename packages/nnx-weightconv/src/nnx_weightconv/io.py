"""Reading PyTorch checkpoints and writing / reading orbax checkpoints of NNX models."""

from __future__ import annotations

import pathlib
import zipfile
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from flax import nnx

from nnx_weightconv.core import ConversionError, StateDict
from nnx_weightconv.published import check_published_sha256
from nnx_weightconv.torch_zip import flatten_state_dict, read_torch_file

_TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


def _torch_to_numpy(tensor) -> np.ndarray:
    import torch

    if tensor.dtype in (torch.bfloat16, torch.float16):
        tensor = tensor.float()
    return tensor.detach().cpu().numpy()


def _read_legacy_torch(path: pathlib.Path) -> Any:
    """Pre-1.6 (non-zip) ``torch.save`` files: only ``torch.load`` reads them."""
    try:
        import torch
    except ImportError as error:
        raise ConversionError(
            f"{str(path)!r} is not a torch zip archive: a legacy (torch<1.6) file needs torch "
            "(`pip install 'nnx-weightconv[torch]'`), or it is truncated: download it again"
        ) from error
    try:
        tree = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:
        raise ConversionError(
            f"cannot read {str(path)!r} with torch.load (truncated or not a checkpoint?): {error}"
        ) from error
    return dict(tree.items()) if isinstance(tree, Mapping) else tree


def _select(path: pathlib.Path, subkey: str | None) -> Callable[[Any], Any]:
    def select(tree: Any) -> Any:
        if subkey is None:
            return tree
        if not isinstance(tree, Mapping) or subkey not in tree:
            keys = list(tree)[:10] if isinstance(tree, Mapping) else type(tree).__name__
            raise ConversionError(f"{str(path)!r} has no entry {subkey!r}; top-level keys: {keys}")
        return tree[subkey]

    return select


def _read_tree(path: pathlib.Path, subkey: str | None) -> Any:
    """The checkpoint's (sub)tree: safetensors, or ``torch.save`` archives read without torch."""
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        try:
            return _select(path, subkey)(load_file(str(path)))
        except ConversionError:
            raise
        except Exception as error:  # safetensors raises several types on corrupt files
            raise ConversionError(
                f"cannot read {str(path)!r} as safetensors ({error}); the file is truncated or "
                "not a safetensors file: download it again"
            ) from error
    if path.suffix not in _TORCH_SUFFIXES:
        raise ConversionError(
            f"unknown checkpoint suffix {path.suffix!r} for {str(path)!r}; expected .safetensors "
            f"or one of {', '.join(_TORCH_SUFFIXES)}"
        )
    if not zipfile.is_zipfile(path):
        return _select(path, subkey)(_read_legacy_torch(path))
    return read_torch_file(path, select=_select(path, subkey))


def read_state_dict(
    path: str | pathlib.Path, *, subkey: str | None = None, check_hash: bool = True
) -> StateDict:
    """Read a checkpoint file into a flat ``{key: numpy array}`` dict.

    Args:
      path: ``.safetensors`` or ``.pt/.pth/.bin/.ckpt``, both read without torch
        (`nnx_weightconv.torch_zip`; only a legacy pre-1.6 ``.pt`` needs torch).
        bfloat16/float16 tensors become float32.
      subkey: an entry of a wrapping dict to descend into first, such as ``"ema"``,
        ``"model"`` or ``"state_dict"`` (DiT and RAE training checkpoints wrap the weights);
        for ``.pt`` files only that entry's tensors are read.
      check_hash: a file named as in ``nnx_weightconv.PUBLISHED_FILES`` (``sd-vae-ft-ema
        .safetensors``, ...) whose SHA-256 is not the published one warns once, naming the
        expected hash (`check_published_sha256`); other names are not hashed.

    Raises:
      FileNotFoundError: the file does not exist.
      ConversionError: the file is unreadable, truncated, or ``subkey`` is absent.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint file {str(path)!r} does not exist; check the path (the published "
            "files are listed in the nnx-weightconv README)"
        )
    if check_hash:
        check_published_sha256(path)
    tree = _read_tree(path, subkey)
    if not isinstance(tree, Mapping):
        raise ConversionError(f"{str(path)!r} does not hold a state dict (got {type(tree)})")
    flat = flatten_state_dict(tree)
    return {k: (v if isinstance(v, np.ndarray) else _torch_to_numpy(v)) for k, v in flat.items()}


def save_orbax(model: nnx.Module, directory: str | pathlib.Path) -> None:
    """Save the parameters of ``model`` as an orbax checkpoint at ``directory`` (atomic)."""
    import orbax.checkpoint as ocp

    directory = pathlib.Path(directory).absolute()
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(directory, nnx.state(model, nnx.Param))


def restore_orbax(model: nnx.Module, directory: str | pathlib.Path) -> None:
    """Restore parameters saved by :func:`save_orbax` into ``model`` in place."""
    import orbax.checkpoint as ocp

    directory = pathlib.Path(directory).absolute()
    if not directory.exists():
        raise FileNotFoundError(f"orbax checkpoint {str(directory)!r} does not exist")
    target = nnx.state(model, nnx.Param)
    abstract = (
        nnx.to_shape_dtype_struct(target) if hasattr(nnx, "to_shape_dtype_struct") else target
    )
    with ocp.StandardCheckpointer() as checkpointer:
        restored = checkpointer.restore(directory, abstract)
    nnx.update(model, restored)
