"""Conversion spec for :class:`nnx_nets.EDM2UNet` from NVlabs/edm2 state dicts.

Key layout of ``training/networks_edm2.py`` (``UNet``; a ``Precond`` holds it under ``unet.``
next to its log-variance head ``logvar_fourier.{freqs,phases}`` and ``logvar_linear.weight``)::

    emb_fourier.freqs, emb_fourier.phases       fixed Fourier tables (buffers, stored)
    emb_noise.weight, emb_label.weight           MPConv linear, (out, in)
    out_gain                                     scalar
    enc.{R}x{R}_conv.weight                      MPConv 3x3, (out, in, 3, 3)
    {enc,dec}.{name}.emb_gain                    scalar
    {enc,dec}.{name}.{conv_res0,conv_res1}.weight            3x3 convs
    {enc,dec}.{name}.emb_linear.weight                       linear
    {enc,dec}.{name}.{conv_skip,attn_qkv,attn_proj}.weight   1x1 convs (when present)
    out_conv.weight                              3x3 conv

Block names are EDM2's (``64x64_block0``, ``8x8_in0``, ``32x32_up``, ...) and are the NNX
paths too. The qkv channel order (head, channel, q|k|v) is the same on both sides, so the
1x1 ``attn_qkv`` weight maps as any conv. MPConv weights keep their raw (un-normalised)
values: both sides normalise at every call.

The released ``edm2-img512-*.pkl`` files are pickled modules; turn them into a state dict with
EDM2's own code (``torch.save(pickle.load(f)["ema"].state_dict(), "ema.pt")``). The log-variance
head of ``Precond`` is only needed for training (nnx-objectives' ``LogVarHead``) and is left
out by :func:`load_edm2_unet`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from flax import nnx

from nnx_weightconv.core import (
    ConversionError,
    Rule,
    conv_kernel,
    conv_kernel_inv,
    export_state_dict,
    linear_kernel,
    linear_kernel_inv,
    load_into,
)

PRECOND_PREFIX = "unet."
LOGVAR_KEYS: tuple[str, ...] = (
    "logvar_fourier.freqs",
    "logvar_fourier.phases",
    "logvar_linear.weight",
)


def _mp_conv(source: str, target: str, layer) -> Rule:
    """One MPConv weight: OIHW -> HWIO for convs, (out, in) -> (in, out) for linears."""
    if layer.kernel_size:
        return Rule(f"{source}.weight", f"{target}.weight", conv_kernel, conv_kernel_inv)
    return Rule(f"{source}.weight", f"{target}.weight", linear_kernel, linear_kernel_inv)


def _block_rules(source: str, target: str, block) -> list[Rule]:
    rules = [Rule(f"{source}.emb_gain", f"{target}.emb_gain")]
    for name in ("conv_res0", "emb_linear", "conv_res1", "conv_skip", "attn_qkv", "attn_proj"):
        layer = getattr(block, name)
        if layer is not None:
            rules.append(_mp_conv(f"{source}.{name}", f"{target}.{name}", layer))
    return rules


def edm2_unet_rules(model, *, prefix: str = "") -> list[Rule]:
    """Rules mapping an EDM2 ``UNet`` state dict onto ``model`` (:class:`nnx_nets.EDM2UNet`).

    Args:
      model: the NNX network (its block names and optional layers are read from it).
      prefix: prepended to every source key (``"unet."`` for a ``Precond`` state dict).

    The rules also fill the fixed Fourier tables: apply them with
    ``variables=edm2_variables(model)`` (as :func:`load_edm2_unet` does).
    """
    p = prefix
    rules = [
        Rule(f"{p}emb_fourier.freqs", "emb_fourier.freqs"),
        Rule(f"{p}emb_fourier.phases", "emb_fourier.phases"),
        _mp_conv(f"{p}emb_noise", "emb_noise", model.emb_noise),
        Rule(f"{p}out_gain", "out_gain"),
    ]
    if model.emb_label is not None:
        rules.append(_mp_conv(f"{p}emb_label", "emb_label", model.emb_label))
    for part, names in (("enc", model.enc_names), ("dec", model.dec_names)):
        blocks = getattr(model, part)
        for name in names:
            source, target = f"{p}{part}.{name}", f"{part}.{name}"
            if name.endswith("_conv"):
                rules.append(_mp_conv(source, target, blocks[name]))
            else:
                rules += _block_rules(source, target, blocks[name])
    rules.append(_mp_conv(f"{p}out_conv", "out_conv", model.out_conv))
    return rules


def edm2_variables(model):
    """The ``nnx`` filter of what an EDM2 checkpoint fills: parameters and the Fourier tables."""
    return (nnx.Param, type(model.emb_fourier.freqs))


def edm2_prefix(state_dict: Mapping[str, np.ndarray]) -> str:
    """``""`` for a ``UNet`` state dict, ``"unet."`` for a ``Precond`` one.

    Raises:
      ConversionError: neither ``emb_noise.weight`` nor ``unet.emb_noise.weight`` is present.
    """
    for prefix in ("", PRECOND_PREFIX):
        if f"{prefix}emb_noise.weight" in state_dict:
            return prefix
    sample = ", ".join(sorted(state_dict)[:8])
    raise ConversionError(
        "not an EDM2 UNet / Precond state dict: no 'emb_noise.weight' or "
        f"'unet.emb_noise.weight'; first keys: {sample}. EDM2's .pkl files hold pickled "
        "modules: save `ema.state_dict()` with EDM2's code first"
    )


def load_edm2_unet(model, state_dict: Mapping[str, np.ndarray], *, strict: bool = True) -> str:
    """Detect the prefix, load ``state_dict`` into ``model`` in place, and return the prefix.

    A ``Precond`` state dict's log-variance head is skipped (not counted as unexpected).

    Raises:
      ConversionError: naming every missing, unexpected or mis-shaped key.
    """
    prefix = edm2_prefix(state_dict)
    load_into(
        model,
        state_dict,
        edm2_unet_rules(model, prefix=prefix),
        strict=strict,
        ignore=LOGVAR_KEYS if prefix else (),
        variables=edm2_variables(model),
    )
    return prefix


def export_edm2_unet(model, *, prefix: str = "") -> dict[str, np.ndarray]:
    """NNX -> an EDM2 ``UNet`` state dict (``prefix="unet."``: the ``UNet`` part of a ``Precond``)."""
    return export_state_dict(
        model, edm2_unet_rules(model, prefix=prefix), variables=edm2_variables(model)
    )
