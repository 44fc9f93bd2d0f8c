"""Conversion spec for :class:`nnx_nets.DINOv2` (plain and ``-with-registers``).

Three key layouts are accepted (transformers ``Dinov2Model``; facebookresearch/dinov2
``vision_transformer.py``):

- ``"hf"``: the files on the HF hub (``facebook/dinov2-*``, ``-with-registers-*``), also what
  ``save_pretrained`` of transformers 5 writes: ``embeddings.*``,
  ``encoder.layer.{i}.attention.attention.{query,key,value}``, ``attention.output.dense``,
  ``layer_scale{1,2}.lambda1``, ``mlp.fc1/fc2`` or (ViT-g) ``mlp.weights_in`` (fused gate|up)
  and ``mlp.weights_out``, final ``layernorm``;
- ``"transformers"``: the in-memory ``state_dict()`` of transformers 5 modules, which renames
  attention to ``q_proj/k_proj/v_proj/o_proj`` and SwiGLU to ``gate_proj/up_proj/down_proj``;
- ``"hub"``: facebookresearch torch-hub checkpoints: ``cls_token``, ``pos_embed``,
  ``patch_embed.proj``, ``blocks.{i}.attn.qkv`` (fused), ``attn.proj``, ``ls{1,2}.gamma``,
  ``mlp.fc1/fc2`` or ``mlp.w12`` (fused) / ``mlp.w3``, final ``norm``.
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

DINOV2_LAYOUTS: tuple[str, ...] = ("hf", "transformers", "hub")


def _describe(model) -> tuple[int, bool, bool, bool]:
    """(depth, has registers, uses SwiGLU, final norm has affine)."""
    depth = len(model.blocks)
    swiglu = depth > 0 and hasattr(model.blocks[0].mlp, "gate")
    affine = model.norm.scale is not None
    return depth, model.register_tokens is not None, swiglu, affine


def _hf_rules(model, *, renamed: bool) -> list[Rule]:
    depth, registers, swiglu, affine = _describe(model)
    rules = [
        Rule("embeddings.cls_token", "cls_token"),
        Rule("embeddings.mask_token", "mask_token"),
        Rule("embeddings.position_embeddings", "pos_embed"),
        *conv_rules("embeddings.patch_embeddings.projection", "patch_embed"),
    ]
    if registers:
        rules.append(Rule("embeddings.register_tokens", "register_tokens"))
    attn_names = (
        ("attention.q_proj", "attention.k_proj", "attention.v_proj", "attention.o_proj")
        if renamed
        else (
            "attention.attention.query",
            "attention.attention.key",
            "attention.attention.value",
            "attention.output.dense",
        )
    )
    for i in range(depth):
        src, dst = f"encoder.layer.{i}", f"blocks.{i}"
        rules += norm_rules(f"{src}.norm1", f"{dst}.norm1")
        rules += norm_rules(f"{src}.norm2", f"{dst}.norm2")
        for name, target in zip(attn_names, ("query", "key", "value", "out")):
            rules += linear_rules(f"{src}.{name}", f"{dst}.attn.{target}")
        rules.append(Rule(f"{src}.layer_scale1.lambda1", f"{dst}.ls1"))
        rules.append(Rule(f"{src}.layer_scale2.lambda1", f"{dst}.ls2"))
        if not swiglu:
            rules += linear_rules(f"{src}.mlp.fc1", f"{dst}.mlp.fc1")
            rules += linear_rules(f"{src}.mlp.fc2", f"{dst}.mlp.fc2")
        elif renamed:
            rules += linear_rules(f"{src}.mlp.gate_proj", f"{dst}.mlp.gate")
            rules += linear_rules(f"{src}.mlp.up_proj", f"{dst}.mlp.up")
            rules += linear_rules(f"{src}.mlp.down_proj", f"{dst}.mlp.down")
        else:
            rules += _fused_linear(f"{src}.mlp.weights_in", (f"{dst}.mlp.gate", f"{dst}.mlp.up"))
            rules += linear_rules(f"{src}.mlp.weights_out", f"{dst}.mlp.down")
    if affine:
        rules += norm_rules("layernorm", "norm")
    return rules


def _fused_linear(source: str, targets: tuple[str, ...]) -> list[Rule]:
    """A Linear whose output rows are the concatenation of ``len(targets)`` equal projections."""
    count = len(targets)
    rules = []
    for index, target in enumerate(targets):
        part = (index, count)
        for rule in linear_rules(source, target):
            rules.append(Rule(rule.source, rule.target, rule.transform, rule.inverse, part))
    return rules


def _hub_rules(model) -> list[Rule]:
    depth, registers, swiglu, affine = _describe(model)
    rules = [
        Rule("cls_token", "cls_token"),
        Rule("mask_token", "mask_token"),
        Rule("pos_embed", "pos_embed"),
        *conv_rules("patch_embed.proj", "patch_embed"),
    ]
    if registers:
        rules.append(Rule("register_tokens", "register_tokens"))
    for i in range(depth):
        src = dst = f"blocks.{i}"
        rules += norm_rules(f"{src}.norm1", f"{dst}.norm1")
        rules += norm_rules(f"{src}.norm2", f"{dst}.norm2")
        rules += _fused_linear(
            f"{src}.attn.qkv", (f"{dst}.attn.query", f"{dst}.attn.key", f"{dst}.attn.value")
        )
        rules += linear_rules(f"{src}.attn.proj", f"{dst}.attn.out")
        rules.append(Rule(f"{src}.ls1.gamma", f"{dst}.ls1"))
        rules.append(Rule(f"{src}.ls2.gamma", f"{dst}.ls2"))
        if swiglu:
            rules += _fused_linear(f"{src}.mlp.w12", (f"{dst}.mlp.gate", f"{dst}.mlp.up"))
            rules += linear_rules(f"{src}.mlp.w3", f"{dst}.mlp.down")
        else:
            rules += linear_rules(f"{src}.mlp.fc1", f"{dst}.mlp.fc1")
            rules += linear_rules(f"{src}.mlp.fc2", f"{dst}.mlp.fc2")
    if affine:
        rules += norm_rules("norm", "norm")
    return rules


def dinov2_rules(model, *, layout: str = "hf") -> list[Rule]:
    """Rules mapping a DINOv2 checkpoint onto ``model`` (a :class:`nnx_nets.DINOv2`).

    Args:
      model: the NNX model (its depth, registers, FFN kind and final-norm affine are read
        from it).
      layout: ``"hf"`` (hub files), ``"transformers"`` (in-memory transformers 5 names) or
        ``"hub"`` (facebookresearch torch-hub); see :func:`dinov2_layout`.

    Raises:
      ValueError: unknown layout.
    """
    match layout:
        case "hf":
            return _hf_rules(model, renamed=False)
        case "transformers":
            return _hf_rules(model, renamed=True)
        case "hub":
            return _hub_rules(model)
        case _:
            raise ValueError(
                f"unknown DINOv2 key layout {layout!r}; choose one of {DINOV2_LAYOUTS}"
            )


def dinov2_layout(state_dict: Mapping[str, np.ndarray]) -> str:
    """Guess the key layout of a DINOv2 state dict (``"hf"``, ``"transformers"`` or ``"hub"``).

    Raises:
      ConversionError: the keys match none of the layouts.
    """
    keys = set(state_dict)
    if "embeddings.patch_embeddings.projection.weight" in keys:
        if any(".attention.q_proj." in key for key in keys):
            return "transformers"
        return "hf"
    if "patch_embed.proj.weight" in keys:
        return "hub"
    sample = ", ".join(sorted(keys)[:8])
    raise ConversionError(
        "not a DINOv2 checkpoint: expected 'embeddings.patch_embeddings.projection.weight' "
        f"(transformers) or 'patch_embed.proj.weight' (torch hub); first keys: {sample}. "
        "Strip any wrapper prefix such as 'dinov2.' first"
    )


def final_norm_keys(layout: str) -> tuple[str, str]:
    """Checkpoint keys of the final LayerNorm, unused by a model built with no final affine."""
    prefix = "norm" if layout == "hub" else "layernorm"
    return f"{prefix}.weight", f"{prefix}.bias"


def load_dinov2(model, state_dict: Mapping[str, np.ndarray], *, strict: bool = True) -> str:
    """Detect the layout, load ``state_dict`` into ``model`` in place, and return the layout.

    A model built with ``final_norm_affine=False`` (RAE's encoder) leaves the checkpoint's
    final LayerNorm weight and bias unused without counting them as unexpected.

    Raises:
      ConversionError: naming every missing, unexpected or mis-shaped key.
    """
    layout = dinov2_layout(state_dict)
    ignore = final_norm_keys(layout) if model.norm.scale is None else ()
    load_into(model, state_dict, dinov2_rules(model, layout=layout), strict=strict, ignore=ignore)
    return layout


# transformers' Dinov2Config defaults, for keys a config.json leaves out.
_TRANSFORMERS_DEFAULTS = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "mlp_ratio": 4,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-6,
    "image_size": 224,
    "patch_size": 14,
    "num_channels": 3,
    "qkv_bias": True,
    "layerscale_value": 1.0,
    "use_swiglu_ffn": False,
    "num_register_tokens": 0,
}


def dinov2_kwargs_from_transformers_config(config: Mapping) -> dict:
    """:class:`nnx_nets.DINOv2` keyword arguments (without ``rngs``) from a transformers config.

    Args:
      config: the ``config.json`` of a ``Dinov2Model`` (``model_type "dinov2"``) or a
        ``Dinov2WithRegistersModel`` (``"dinov2_with_registers"``, ``num_register_tokens``).

    Raises:
      ValueError: the config describes something this DINOv2 does not build (another
        activation, no qkv bias, another model type).
    """
    model_type = config.get("model_type", "dinov2")
    if model_type not in ("dinov2", "dinov2_with_registers"):
        raise ValueError(
            f"config.json has model_type {model_type!r}; expected 'dinov2' or "
            "'dinov2_with_registers'"
        )
    merged = {**_TRANSFORMERS_DEFAULTS, **config}
    for key, value in {"hidden_act": "gelu", "qkv_bias": True}.items():
        if merged[key] != value:
            raise ValueError(f"DINOv2 config has {key}={merged[key]!r}; only {value!r} is built")
    registers = int(merged["num_register_tokens"])
    if model_type == "dinov2_with_registers" and "num_register_tokens" not in config:
        registers = 4  # Dinov2WithRegistersConfig's default
    return {
        "hidden_size": int(merged["hidden_size"]),
        "depth": int(merged["num_hidden_layers"]),
        "num_heads": int(merged["num_attention_heads"]),
        "patch_size": int(merged["patch_size"]),
        "image_size": int(merged["image_size"]),
        "in_channels": int(merged["num_channels"]),
        "ffn": "swiglu" if merged["use_swiglu_ffn"] else "mlp",
        "mlp_ratio": float(merged["mlp_ratio"]),
        "num_register_tokens": registers,
        "layerscale_init": float(merged["layerscale_value"]),
        "layer_norm_eps": float(merged["layer_norm_eps"]),
    }
