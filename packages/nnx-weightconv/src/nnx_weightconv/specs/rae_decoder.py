"""Conversion spec for :class:`nnx_nets.RAEDecoder` and RAE's latent statistics.

Two key layouts:

- ``"rae"``: RAE's released ``decoders/.../model.pt`` (``GeneralDecoder``, transformers-4
  ViT-MAE layer names)::

      decoder_embed, trainable_cls_token, decoder_pos_embed (fixed sin-cos, checked not loaded),
      decoder_layers.{i}.{layernorm_before, attention.attention.{query,key,value},
                          attention.output.dense, layernorm_after, intermediate.dense,
                          output.dense},
      decoder_norm, decoder_pred

- ``"diffusers"``: diffusers ``AutoencoderRAE`` / ``RAEDecoder``, the same with the attention
  named ``attention.{to_q,to_k,to_v,to_out.0}`` (and no stored ``decoder_pos_embed``); a full
  ``AutoencoderRAE`` state dict keeps the decoder under the prefix ``"decoder."``.

RAE's ``stat.pt`` holds ``{"mean": None or [C,H,W], "var": [C,H,W]}``; :func:`rae_latent_stats`
turns it into the arguments of :class:`nnx_nets.LatentNormalizer`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from nnx_weightconv.core import (
    ConversionError,
    Rule,
    export_state_dict,
    linear_rules,
    load_into,
    norm_rules,
)

RAE_DECODER_LAYOUTS: tuple[str, ...] = ("rae", "diffusers")
_ATTENTION = {
    "rae": (
        "attention.attention.query",
        "attention.attention.key",
        "attention.attention.value",
        "attention.output.dense",
    ),
    "diffusers": ("attention.to_q", "attention.to_k", "attention.to_v", "attention.to_out.0"),
}
POS_EMBED_KEY = "decoder_pos_embed"


def rae_decoder_rules(model, *, layout: str = "rae", prefix: str = "") -> list[Rule]:
    """Rules mapping an RAE decoder state dict onto ``model`` (:class:`RAEDecoder`).

    Args:
      model: the NNX decoder (its depth is read from it).
      layout: ``"rae"`` or ``"diffusers"`` (see the module docstring).
      prefix: prepended to every source key (``"decoder."`` for a full ``AutoencoderRAE``).

    Raises:
      ValueError: unknown layout.
    """
    if layout not in _ATTENTION:
        raise ValueError(
            f"unknown RAE decoder layout {layout!r}; choose one of {RAE_DECODER_LAYOUTS}"
        )
    p = prefix
    rules = linear_rules(f"{p}decoder_embed", "decoder_embed")
    rules.append(Rule(f"{p}trainable_cls_token", "cls_token"))
    for i in range(len(model.layers)):
        src, dst = f"{p}decoder_layers.{i}", f"layers.{i}"
        rules += norm_rules(f"{src}.layernorm_before", f"{dst}.norm1")
        for name, target in zip(_ATTENTION[layout], ("query", "key", "value", "out")):
            rules += linear_rules(f"{src}.{name}", f"{dst}.attn.{target}")
        rules += norm_rules(f"{src}.layernorm_after", f"{dst}.norm2")
        rules += linear_rules(f"{src}.intermediate.dense", f"{dst}.fc1")
        rules += linear_rules(f"{src}.output.dense", f"{dst}.fc2")
    rules += norm_rules(f"{p}decoder_norm", "norm")
    rules += linear_rules(f"{p}decoder_pred", "pred")
    return rules


def rae_decoder_layout(state_dict: Mapping[str, np.ndarray]) -> tuple[str, str]:
    """``(layout, prefix)`` of an RAE decoder state dict.

    Raises:
      ConversionError: no ``decoder_embed.weight`` (with or without ``decoder.``) is present.
    """
    for prefix in ("", "decoder."):
        if f"{prefix}decoder_embed.weight" not in state_dict:
            continue
        if f"{prefix}decoder_layers.0.attention.to_q.weight" in state_dict:
            return "diffusers", prefix
        return "rae", prefix
    sample = ", ".join(sorted(state_dict)[:8])
    raise ConversionError(
        "not an RAE decoder checkpoint: no 'decoder_embed.weight' or "
        f"'decoder.decoder_embed.weight'; first keys: {sample}. Training checkpoints wrap the "
        "weights: read them with subkey='ema' or 'model'"
    )


def _check_pos_embed(model, state_dict: Mapping[str, np.ndarray], key: str) -> None:
    if key not in state_dict:
        return
    stored = np.asarray(state_dict[key])
    expected = model.pos_embed()
    if stored.shape != expected.shape:
        raise ConversionError(
            f"{key}: checkpoint gives {stored.shape}, model expects {expected.shape}; "
            "the decoder was trained for another latent grid or width"
        )
    error = float(np.abs(stored - expected).max())
    if error > 1e-4:
        raise ConversionError(
            f"{key}: the stored position table differs from the fixed sin-cos table by {error:.3g}"
        )


def load_rae_decoder(model, state_dict: Mapping[str, np.ndarray], *, strict: bool = True) -> str:
    """Detect the layout, load ``state_dict`` into ``model`` in place, and return the layout.

    The stored ``decoder_pos_embed`` (if any) is checked against the model's fixed table
    instead of loaded. With a ``"decoder."`` prefix (a full diffusers ``AutoencoderRAE``) the
    keys outside the decoder (encoder, statistics) are skipped.

    Raises:
      ConversionError: naming every missing, unexpected or mis-shaped key.
    """
    layout, prefix = rae_decoder_layout(state_dict)
    pos_key = f"{prefix}{POS_EMBED_KEY}"
    _check_pos_embed(model, state_dict, pos_key)
    ignore = [pos_key]
    if prefix:
        ignore += [key for key in state_dict if not key.startswith(prefix)]
    rules = rae_decoder_rules(model, layout=layout, prefix=prefix)
    load_into(model, state_dict, rules, strict=strict, ignore=tuple(ignore))
    return layout


def export_rae_decoder(model, *, layout: str = "rae") -> dict[str, np.ndarray]:
    """NNX -> PyTorch state dict; the ``"rae"`` layout also gets its ``decoder_pos_embed``."""
    out = export_state_dict(model, rae_decoder_rules(model, layout=layout))
    if layout == "rae":
        out[POS_EMBED_KEY] = model.pos_embed()
    return out


def rae_latent_stats(state_dict: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
    """``(var, mean or None)`` in ``[C, H, W]`` from RAE's ``stat.pt`` read as a state dict.

    Pass them to ``LatentNormalizer.from_chw(var, mean)``.

    Raises:
      ConversionError: no ``var`` entry.
    """
    if "var" not in state_dict:
        raise ConversionError(
            f"not an RAE statistics file: no 'var' entry (keys: {sorted(state_dict)})"
        )
    mean = state_dict.get("mean")
    return np.asarray(state_dict["var"]), (None if mean is None else np.asarray(mean))
