"""Reading PyTorch checkpoints and writing / reading orbax checkpoints of NNX models."""

from __future__ import annotations

import pathlib
from collections.abc import Mapping

import numpy as np
from flax import nnx

from nnx_weightconv.core import ConversionError, StateDict

_TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


def _flatten(tree: Mapping, prefix: str = "") -> StateDict:
    out: StateDict = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{name}."))
        elif hasattr(value, "shape"):
            out[name] = value
    return out


def _torch_to_numpy(tensor) -> np.ndarray:
    import torch

    if tensor.dtype in (torch.bfloat16, torch.float16):
        tensor = tensor.float()
    return tensor.detach().cpu().numpy()


def read_state_dict(path: str | pathlib.Path, *, subkey: str | None = None) -> StateDict:
    """Read a checkpoint file into a flat ``{key: numpy array}`` dict.

    Args:
      path: ``.safetensors`` (read without torch) or ``.pt/.pth/.bin/.ckpt`` (needs torch:
        ``pip install 'nnx-weightconv[torch]'``). bfloat16/float16 tensors become float32.
      subkey: an entry of a wrapping dict to descend into first, such as ``"ema"``,
        ``"model"`` or ``"state_dict"`` (DiT and RAE training checkpoints wrap the weights).

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
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        try:
            tree = load_file(str(path))
        except Exception as error:  # safetensors raises several types on corrupt files
            raise ConversionError(
                f"cannot read {str(path)!r} as safetensors ({error}); the file is truncated or "
                "not a safetensors file: download it again"
            ) from error
    elif path.suffix in _TORCH_SUFFIXES:
        try:
            import torch
        except ImportError as error:
            raise ImportError(
                f"reading {path.suffix} checkpoints needs torch: "
                "install with `pip install 'nnx-weightconv[torch]'` or convert the file "
                "to .safetensors first"
            ) from error
        try:
            tree = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as error:
            raise ConversionError(
                f"cannot read {str(path)!r} with torch.load (truncated or not a checkpoint?): "
                f"{error}"
            ) from error
        tree = {k: v for k, v in tree.items()} if isinstance(tree, Mapping) else tree
    else:
        raise ConversionError(
            f"unknown checkpoint suffix {path.suffix!r} for {str(path)!r}; expected .safetensors "
            f"or one of {', '.join(_TORCH_SUFFIXES)}"
        )
    if subkey is not None:
        if not isinstance(tree, Mapping) or subkey not in tree:
            keys = list(tree)[:10] if isinstance(tree, Mapping) else type(tree).__name__
            raise ConversionError(f"{str(path)!r} has no entry {subkey!r}; top-level keys: {keys}")
        tree = tree[subkey]
    if not isinstance(tree, Mapping):
        raise ConversionError(f"{str(path)!r} does not hold a state dict (got {type(tree)})")
    flat = _flatten(tree)
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
