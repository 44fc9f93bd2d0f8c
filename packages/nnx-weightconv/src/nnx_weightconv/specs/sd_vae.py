"""Conversion spec for :class:`nnx_nets.SDVAE` from diffusers ``AutoencoderKL`` checkpoints.

Key layout (``stabilityai/sd-vae-ft-mse`` / ``-ema``, ``diffusion_pytorch_model.safetensors``)::

    encoder.conv_in, encoder.down_blocks.{i}.resnets.{j}.{norm1,conv1,norm2,conv2,conv_shortcut}
    encoder.down_blocks.{i}.downsamplers.0.conv
    {encoder,decoder}.mid_block.resnets.{0,1}.*, {encoder,decoder}.mid_block.attentions.0.*
    encoder.conv_norm_out, encoder.conv_out, quant_conv, post_quant_conv, decoder.conv_in
    decoder.up_blocks.{i}.resnets.{j}.*, decoder.up_blocks.{i}.upsamplers.0.conv
    decoder.conv_norm_out, decoder.conv_out

The mid-block attention comes with two sets of names: ``group_norm`` plus ``to_q/to_k/to_v/
to_out.0`` (current diffusers) or ``query/key/value/proj_attn`` (the 2022 uploads, which
diffusers renames on load). Both load; :func:`sd_vae_attention_names` tells them apart.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from nnx_weightconv.core import (
    ConversionError,
    Rule,
    conv_rules,
    linear_rules,
    load_into,
    norm_rules,
)

SD_VAE_ATTENTION_NAMES: dict[str, tuple[str, str, str, str]] = {
    "new": ("to_q", "to_k", "to_v", "to_out.0"),
    "old": ("query", "key", "value", "proj_attn"),
}


def _resnet_rules(source: str, target: str, resnet) -> list[Rule]:
    rules = norm_rules(f"{source}.norm1", f"{target}.norm1")
    rules += conv_rules(f"{source}.conv1", f"{target}.conv1")
    rules += norm_rules(f"{source}.norm2", f"{target}.norm2")
    rules += conv_rules(f"{source}.conv2", f"{target}.conv2")
    if resnet.shortcut is not None:
        rules += conv_rules(f"{source}.conv_shortcut", f"{target}.shortcut")
    return rules


def _mid_rules(source: str, target: str, mid, attention_names: tuple[str, ...]) -> list[Rule]:
    rules = _resnet_rules(f"{source}.resnets.0", f"{target}.resnet1", mid.resnet1)
    rules += _resnet_rules(f"{source}.resnets.1", f"{target}.resnet2", mid.resnet2)
    attn_src = f"{source}.attentions.0"
    rules += norm_rules(f"{attn_src}.group_norm", f"{target}.attention.group_norm")
    for name, dst in zip(attention_names, ("query", "key", "value", "out")):
        rules += linear_rules(f"{attn_src}.{name}", f"{target}.attention.attn.{dst}")
    return rules


def sd_vae_rules(model, *, attention_names: str = "new") -> list[Rule]:
    """Rules mapping a diffusers ``AutoencoderKL`` state dict onto ``model`` (:class:`SDVAE`).

    Args:
      model: the NNX model; the level count, resnets per level and shortcuts are read from it.
      attention_names: ``"new"`` (``to_q/to_k/to_v/to_out.0``) or ``"old"``
        (``query/key/value/proj_attn``).

    Raises:
      ValueError: unknown ``attention_names``.
    """
    if attention_names not in SD_VAE_ATTENTION_NAMES:
        raise ValueError(
            f"unknown attention_names {attention_names!r}; choose one of "
            f"{sorted(SD_VAE_ATTENTION_NAMES)}"
        )
    names = SD_VAE_ATTENTION_NAMES[attention_names]
    encoder, decoder = model.encoder, model.decoder
    rules = conv_rules("encoder.conv_in", "encoder.conv_in")
    for i, level in enumerate(encoder.down):
        for j, resnet in enumerate(level.resnets):
            rules += _resnet_rules(
                f"encoder.down_blocks.{i}.resnets.{j}", f"encoder.down.{i}.resnets.{j}", resnet
            )
        if level.resample is not None:
            rules += conv_rules(
                f"encoder.down_blocks.{i}.downsamplers.0.conv", f"encoder.down.{i}.resample.conv"
            )
    rules += _mid_rules("encoder.mid_block", "encoder.mid", encoder.mid, names)
    rules += norm_rules("encoder.conv_norm_out", "encoder.norm_out")
    rules += conv_rules("encoder.conv_out", "encoder.conv_out")
    rules += conv_rules("quant_conv", "quant_conv")
    rules += conv_rules("post_quant_conv", "post_quant_conv")
    rules += conv_rules("decoder.conv_in", "decoder.conv_in")
    rules += _mid_rules("decoder.mid_block", "decoder.mid", decoder.mid, names)
    for i, level in enumerate(decoder.up):
        for j, resnet in enumerate(level.resnets):
            rules += _resnet_rules(
                f"decoder.up_blocks.{i}.resnets.{j}", f"decoder.up.{i}.resnets.{j}", resnet
            )
        if level.resample is not None:
            rules += conv_rules(
                f"decoder.up_blocks.{i}.upsamplers.0.conv", f"decoder.up.{i}.resample.conv"
            )
    rules += norm_rules("decoder.conv_norm_out", "decoder.norm_out")
    rules += conv_rules("decoder.conv_out", "decoder.conv_out")
    return rules


def sd_vae_attention_names(state_dict: Mapping[str, np.ndarray]) -> str:
    """``"new"`` or ``"old"``, from the encoder's mid-block attention keys.

    Raises:
      ConversionError: neither naming is present (not a diffusers AutoencoderKL file).
    """
    prefix = "encoder.mid_block.attentions.0."
    if f"{prefix}to_q.weight" in state_dict:
        return "new"
    if f"{prefix}query.weight" in state_dict:
        return "old"
    sample = ", ".join(sorted(state_dict)[:8])
    raise ConversionError(
        f"not a diffusers AutoencoderKL checkpoint: neither '{prefix}to_q.weight' nor "
        f"'{prefix}query.weight' is present; first keys: {sample}"
    )


def load_sd_vae(model, state_dict: Mapping[str, np.ndarray], *, strict: bool = True) -> str:
    """Detect the attention naming, load ``state_dict`` into ``model`` in place, return it.

    Raises:
      ConversionError: naming every missing, unexpected or mis-shaped key.
    """
    names = sd_vae_attention_names(state_dict)
    load_into(model, state_dict, sd_vae_rules(model, attention_names=names), strict=strict)
    return names


def sd_vae_kwargs_from_diffusers_config(config: Mapping) -> dict:
    """:class:`nnx_nets.SDVAE` keyword arguments (without ``rngs``) from a diffusers config.

    Args:
      config: the ``vae/config.json`` of an ``AutoencoderKL``; missing keys take diffusers'
        defaults (note ``layers_per_block`` defaults to 1 there; SD's files say 2).

    Raises:
      ValueError: the config describes an autoencoder this SDVAE does not build (other block
        types or activation, no quant convs or mid attention, a ``shift_factor`` as in the
        SD3 / FLUX VAEs).
    """
    down = tuple(config.get("down_block_types", ("DownEncoderBlock2D",)))
    up = tuple(config.get("up_block_types", ("UpDecoderBlock2D",)))
    widths = tuple(int(w) for w in config.get("block_out_channels", (64,)))
    problems = []
    if set(down) != {"DownEncoderBlock2D"} or len(down) != len(widths):
        problems.append(f"down_block_types={list(down)} (need DownEncoderBlock2D per width)")
    if set(up) != {"UpDecoderBlock2D"} or len(up) != len(widths):
        problems.append(f"up_block_types={list(up)} (need UpDecoderBlock2D per width)")
    for key, value in {
        "act_fn": "silu",
        "use_quant_conv": True,
        "use_post_quant_conv": True,
        "mid_block_add_attention": True,
        "shift_factor": None,
    }.items():
        if config.get(key, value) != value:
            problems.append(f"{key}={config[key]!r} (need {value!r})")
    if problems:
        raise ValueError(
            "diffusers AutoencoderKL config not supported by SDVAE: " + "; ".join(problems)
        )
    return {
        "in_channels": int(config.get("in_channels", 3)),
        "out_channels": int(config.get("out_channels", 3)),
        "latent_channels": int(config.get("latent_channels", 4)),
        "block_out_channels": widths,
        "layers_per_block": int(config.get("layers_per_block", 1)),
        "norm_num_groups": int(config.get("norm_num_groups", 32)),
        "scaling_factor": float(config.get("scaling_factor", 0.18215)),
    }
