"""Filling the networks from published checkpoint files through nnx-weightconv.

Random weights (demo runs) come from ``nnx_nets.testing.randomise_parameters``.

Every loader turns nnx-weightconv's ``ConversionError`` (which lists every missing, unexpected
and mis-shaped key) into a :class:`~rae_eval.checkpoints.CheckpointMismatchError` that also
names the file, its role and where it is published.

File formats:
- encoder: the HF ``model.safetensors`` of ``facebook/dinov2-with-registers-base`` (read without
  torch by nnx-weightconv);
- decoder ``model.pt``, stage-2 ``stage2_model.pt``, statistics ``stat.pt``: ``torch.save`` zips,
  read without torch by :mod:`nnx_weightconv.torch_zip`. A stage-2 training checkpoint holds
  ``{"model", "ema", "optimizer", ...}``; as RAE's own loader, the ``"ema"`` weights are used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jax
import numpy as np
from flax import nnx

from nnx_nets import LatentNormalizer
from nnx_weightconv import (
    ConversionError,
    dit_dh_buffer_keys,
    dit_dh_rules,
    load_dinov2,
    load_into,
    load_rae_decoder,
    rae_latent_stats,
    read_state_dict,
)
from nnx_weightconv.torch_zip import TorchFileError, flatten_state_dict, read_torch_file
from rae_eval.checkpoints import CheckpointFile, CheckpointMismatchError

__all__ = [
    "load_decoder",
    "load_dit_dh",
    "load_encoder",
    "load_latent_normalizer",
    "read_checkpoint",
]


def _ema_if_present(tree):
    """A training checkpoint's ``"ema"`` entry (read alone: its other tensors stay on disk)."""
    if isinstance(tree, Mapping) and isinstance(tree.get("ema"), Mapping):
        return tree["ema"]
    return tree


def read_checkpoint(file: CheckpointFile) -> dict[str, np.ndarray]:
    """Flat ``{key: array}`` of a checkpoint file (``.safetensors`` or a ``torch.save`` zip).

    A dict holding an ``"ema"`` entry (a training checkpoint) is reduced to it, as RAE's
    ``instantiate_from_config`` does.

    Raises:
      CheckpointMismatchError: the file cannot be read as a checkpoint.
    """
    if file.path.suffix == ".safetensors":
        try:
            return read_state_dict(file.path)
        except ConversionError as error:
            raise CheckpointMismatchError(file, str(error)) from error
    try:
        tree = read_torch_file(file.path, select=_ema_if_present)
    except TorchFileError as error:
        raise CheckpointMismatchError(file, str(error)) from error
    if not isinstance(tree, Mapping):
        raise CheckpointMismatchError(file, f"holds a {type(tree).__name__}, not a state dict")
    flat = flatten_state_dict(tree)
    if not flat:
        raise CheckpointMismatchError(file, f"holds no tensors; top-level keys: {list(tree)[:10]}")
    return flat


def load_checked(file: CheckpointFile, load: Callable[[dict[str, np.ndarray]], object]) -> None:
    """Read ``file`` and apply ``load(state_dict)``, naming the file in any conversion error."""
    state_dict = read_checkpoint(file)
    try:
        load(state_dict)
    except ConversionError as error:
        raise CheckpointMismatchError(file, str(error)) from error


def load_encoder(model: nnx.Module, file: CheckpointFile) -> None:
    """Load HF DINOv2(-with-registers) weights into an ``nnx_nets.DINOv2`` in place.

    The checkpoint's final LayerNorm weight and bias stay unused when the model was built
    with ``final_norm_affine=False`` (RAE's encoder).
    """
    load_checked(file, lambda state: load_dinov2(model, state))


def load_decoder(model: nnx.Module, file: CheckpointFile) -> None:
    """Load RAE's decoder ``model.pt`` into an ``nnx_nets.RAEDecoder`` in place.

    The stored fixed ``decoder_pos_embed`` is checked against the model's sin-cos table.
    """
    load_checked(file, lambda state: load_rae_decoder(model, state))


def load_dit_dh(model: nnx.Module, file: CheckpointFile) -> None:
    """Load a RAE stage-2 ``stage2_model.pt`` (EMA weights) into an ``nnx_nets.DiTDH`` in place.

    The checkpoint's fixed tables (sin-cos positions, RoPE) are recomputed by the model and
    not loaded.
    """
    load_checked(
        file,
        lambda state: load_into(
            model, state, dit_dh_rules(model), ignore=dit_dh_buffer_keys(model)
        ),
    )


def load_latent_normalizer(
    file: CheckpointFile, latent_shape: tuple[int, int, int], *, eps: float
) -> LatentNormalizer:
    """Read RAE's ``stat.pt`` (``{"mean": [C, H, W] or None, "var": [C, H, W]}``).

    Args:
      file: the statistics file.
      latent_shape: expected NHWC latent shape ``(h, w, C)``.
      eps: added to the variance (1e-5 in RAE).

    Returns:
      ``nnx_nets.LatentNormalizer`` holding the statistics as ``(h, w, C)``.

    Raises:
      CheckpointMismatchError: not a statistics dict, or the shapes do not match.
    """
    try:
        stats = read_torch_file(file.path)
    except TorchFileError as error:
        raise CheckpointMismatchError(file, str(error)) from error
    if not isinstance(stats, Mapping):
        raise CheckpointMismatchError(file, f"holds a {type(stats).__name__}, not a dict")
    try:
        var, mean = rae_latent_stats(stats)
    except ConversionError as error:
        raise CheckpointMismatchError(file, str(error)) from error
    expected = (latent_shape[2], latent_shape[0], latent_shape[1])
    for name, value in (("var", var), ("mean", mean)):
        if value is not None and value.shape != expected:
            raise CheckpointMismatchError(
                file,
                f"'{name}' has shape {value.shape} [C, H, W]; the configured latent "
                f"{latent_shape} (h, w, C) needs {expected}",
            )
    return LatentNormalizer.from_chw(var.astype(np.float32), mean, eps=eps)


def check_concrete(model: nnx.Module, what: str) -> None:
    """Raise naming every variable of ``model`` still abstract after loading (a bug, not user error)."""
    abstract = [
        ".".join(str(k) for k in path)
        for path, variable in nnx.state(model).flat_state()
        if isinstance(variable.get_value(), jax.ShapeDtypeStruct)
    ]
    if abstract:
        raise RuntimeError(f"{what}: variables left without values after loading: {abstract[:10]}")
