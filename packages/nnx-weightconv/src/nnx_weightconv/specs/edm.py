"""Conversion spec for the EDM (Karras et al. 2022) networks :class:`nnx_nets.SongUNet` and
:class:`nnx_nets.DhariwalUNet` from NVlabs/edm state dicts.

Key layout of NVlabs/edm ``training/networks.py`` (a preconditioner ``VPPrecond`` /
``VEPrecond`` / ``iDDPMPrecond`` / ``EDMPrecond`` holds the network under ``model.``)::

    map_noise.freqs                         NCSN++ Fourier table (buffer, stored)
    map_label / map_augment / map_layer0 / map_layer1 .{weight,bias}   Linear (out, in)
    {enc,dec}.{R}x{R}_conv / _aux_* .{weight,bias}                   Conv2d OIHW
    {enc,dec}.{R}x{R}_aux_norm.{weight,bias}                         GroupNorm
    {enc,dec}.{name}.{norm0,norm1,norm2}.{weight,bias}               GroupNorm
    {enc,dec}.{name}.{conv0,conv1,skip,qkv,proj}.{weight,bias}       Conv2d OIHW
    {enc,dec}.{name}.affine.{weight,bias}                            Linear
    out_norm.{weight,bias}, out_conv.{weight,bias}                   ADM head
    ....resample_filter                     FIR filter buffers (recomputed; checked)
    u                                       iDDPMPrecond noise levels (recomputed by IDDPMPrecond)

NNX paths are the same with ``kernel`` / ``scale`` leaves. The qkv channel order
(head, channel, q|k|v) is the same on both sides, so ``qkv`` maps as any 1x1 conv.

NVlabs/edm's ``.pkl`` files hold pickled modules: save a state dict with its own code first
(``torch.save(pickle.load(f)["ema"].state_dict(), "ema.pt")``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from flax import nnx

from nnx_nets import EDMConv, EDMUNetBlock
from nnx_nets.mp_layers import FixedBuffer
from nnx_weightconv.core import (
    ConversionError,
    Rule,
    conv_kernel,
    conv_kernel_inv,
    export_state_dict,
    linear_rules,
    load_into,
    norm_rules,
)

PRECOND_PREFIX = "model."
PRECOND_BUFFERS: tuple[str, ...] = ("u",)
_BLOCK_PARTS = ("norm0", "conv0", "affine", "norm1", "conv1", "skip", "norm2", "qkv", "proj")


def _rules(source: str, target: str, module) -> list[Rule]:
    """Rules of one conv / norm / linear / block, dispatched on its type."""
    if isinstance(module, EDMConv):
        rules = []
        if module.kernel is not None:
            rules.append(Rule(f"{source}.weight", f"{target}.kernel", conv_kernel, conv_kernel_inv))
        if module.bias is not None:
            rules.append(Rule(f"{source}.bias", f"{target}.bias"))
        return rules
    if isinstance(module, nnx.GroupNorm):
        return norm_rules(source, target)
    if isinstance(module, nnx.Linear):
        return linear_rules(source, target, bias=module.bias is not None)
    if isinstance(module, EDMUNetBlock):
        rules = []
        for part in _BLOCK_PARTS:
            child = getattr(module, part)
            if child is not None:
                rules += _rules(f"{source}.{part}", f"{target}.{part}", child)
        return rules
    raise ConversionError(f"{target}: no EDM conversion rule for {type(module).__name__}")


def edm_unet_rules(model, *, prefix: str = "") -> list[Rule]:
    """Rules mapping an NVlabs/edm ``SongUNet`` / ``DhariwalUNet`` state dict onto ``model``.

    Args:
      model: the NNX network (its block names and optional layers are read from it).
      prefix: prepended to every source key (``"model."`` for a preconditioner's state dict).
    """
    p = prefix
    rules = []
    if isinstance(getattr(model.map_noise, "freqs", None), FixedBuffer):
        rules.append(Rule(f"{p}map_noise.freqs", "map_noise.freqs"))
    for name in ("map_label", "map_augment", "map_layer0", "map_layer1"):
        if getattr(model, name) is not None:
            rules += _rules(f"{p}{name}", name, getattr(model, name))
    for part, names in (("enc", model.enc_names), ("dec", model.dec_names)):
        for name in names:
            rules += _rules(f"{p}{part}.{name}", f"{part}.{name}", getattr(model, part)[name])
    for name in ("out_norm", "out_conv"):  # ADM's head (SongUNet's lives in dec)
        if hasattr(model, name):
            rules += _rules(f"{p}{name}", name, getattr(model, name))
    return rules


def edm_resample_filters(model, *, prefix: str = "") -> dict[str, np.ndarray]:
    """The ``resample_filter`` buffers ``(1, 1, k, k)`` upstream stores, from the model's taps."""
    filters = {}
    for path, module in nnx.iter_graph(model):
        if isinstance(module, EDMConv) and module.taps is not None:
            taps = np.asarray(module.taps, np.float32)
            key = ".".join(str(k) for k in path)
            filters[f"{prefix}{key}.resample_filter"] = (np.outer(taps, taps) / taps.sum() ** 2)[
                None, None
            ]
    return filters


def edm_variables():
    """The ``nnx`` filter of what an EDM checkpoint fills: parameters and the Fourier table."""
    return (nnx.Param, FixedBuffer)


def edm_prefix(state_dict: Mapping[str, np.ndarray]) -> str:
    """``""`` for a bare network state dict, ``"model."`` for a preconditioner's.

    Raises:
      ConversionError: neither ``map_layer0.weight`` nor ``model.map_layer0.weight`` is present.
    """
    for prefix in ("", PRECOND_PREFIX):
        if f"{prefix}map_layer0.weight" in state_dict:
            return prefix
    sample = ", ".join(sorted(state_dict)[:8])
    raise ConversionError(
        "not an NVlabs/edm SongUNet / DhariwalUNet state dict: no 'map_layer0.weight' or "
        f"'model.map_layer0.weight'; first keys: {sample}. EDM's .pkl files hold pickled "
        "modules: save `ema.state_dict()` with EDM's code first"
    )


def load_edm_unet(model, state_dict: Mapping[str, np.ndarray], *, strict: bool = True) -> str:
    """Detect the prefix, load ``state_dict`` into ``model`` in place, and return the prefix.

    The FIR ``resample_filter`` buffers are compared with the model's (a different filter
    means a different preset: DDPM++ uses ``[1, 1]``, NCSN++ ``[1, 3, 3, 1]``).

    Raises:
      ConversionError: naming every missing, unexpected or mis-shaped key, or a filter that
        differs from the model's.
    """
    prefix = edm_prefix(state_dict)
    expected = edm_resample_filters(model, prefix=prefix)
    for key, value in expected.items():
        stored = np.asarray(state_dict[key]) if key in state_dict else value
        if stored.shape != value.shape or not np.allclose(stored, value, atol=1e-6):
            raise ConversionError(
                f"{key}: the checkpoint's resampling filter differs from the model's; "
                "build the network with the checkpoint's resample_filter (preset)"
            )
    buffers = tuple(k for k in state_dict if k.endswith(".resample_filter"))
    load_into(
        model,
        state_dict,
        edm_unet_rules(model, prefix=prefix),
        strict=strict,
        ignore=buffers + (PRECOND_BUFFERS if prefix else ()),
        variables=edm_variables(),
    )
    return prefix


def export_edm_unet(model, *, prefix: str = "") -> dict[str, np.ndarray]:
    """NNX -> an NVlabs/edm network state dict, with its ``resample_filter`` buffers."""
    out = export_state_dict(model, edm_unet_rules(model, prefix=prefix), variables=edm_variables())
    return {**out, **edm_resample_filters(model, prefix=prefix)}
