"""Spec for diffusers' ``DiTTransformer2DModel`` (e.g. ``facebook/DiT-XL-2-256/transformer``).

diffusers' port differs from facebookresearch/DiT in three ways that matter here:

- every block carries its own copy of the time and label embedders
  (``transformer_blocks.{i}.norm1.emb.*``); converted checkpoints hold identical copies,
  which map onto the one embedder of :class:`nnx_nets.DiT`. :func:`check_tied_copies`
  refuses a checkpoint whose copies differ (a natively trained diffusers model);
- its sinusoidal time features use ``downscale_freq_shift=1``: build the DiT with
  ``time_freq_shift=1`` (see :func:`dit_kwargs_from_diffusers_config`);
- the LayerNorm before each MLP uses ``norm_eps`` (1e-5 by default) where DiT uses 1e-6;
  this NNX DiT always uses 1e-6, a relative change of about 5e-6 / var(x) in that norm.

It also works in NCHW and takes integer steps 0..999: the NNX DiT is NHWC and takes
t in [0, 1] with ``time_scale=1000``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from nnx_nets import DiT
from nnx_weightconv.core import ConversionError, Rule, conv_rules, linear_rules


def diffusers_dit_rules(model: DiT) -> list[Rule]:
    """Rules mapping diffusers' ``DiTTransformer2DModel`` keys onto :class:`nnx_nets.DiT`.

    The per-block embedder copies all map onto the shared embedder (export writes the
    copies back).
    """
    rules = [*conv_rules("pos_embed.proj", "x_embedder.proj")]
    for i in range(len(model.blocks)):
        src, dst = f"transformer_blocks.{i}", f"blocks.{i}"
        emb = f"{src}.norm1.emb"
        rules += [
            *linear_rules(f"{emb}.timestep_embedder.linear_1", "t_embedder.linear_1"),
            *linear_rules(f"{emb}.timestep_embedder.linear_2", "t_embedder.linear_2"),
            Rule(
                f"{emb}.class_embedder.embedding_table.weight",
                "y_embedder.embedding_table.embedding",
            ),
            *linear_rules(f"{src}.norm1.linear", f"{dst}.adaln.linear"),
            *linear_rules(f"{src}.attn1.to_q", f"{dst}.attn.query"),
            *linear_rules(f"{src}.attn1.to_k", f"{dst}.attn.key"),
            *linear_rules(f"{src}.attn1.to_v", f"{dst}.attn.value"),
            *linear_rules(f"{src}.attn1.to_out.0", f"{dst}.attn.out"),
            *linear_rules(f"{src}.ff.net.0.proj", f"{dst}.mlp.fc1"),
            *linear_rules(f"{src}.ff.net.2", f"{dst}.mlp.fc2"),
        ]
    rules += [
        *linear_rules("proj_out_1", "final_layer.adaln.linear"),
        *linear_rules("proj_out_2", "final_layer.linear"),
    ]
    return rules


def diffusers_dit_buffer_keys(model: DiT) -> tuple[str, ...]:
    """Fixed tables the NNX model recomputes (``pos_embed.pos_embed`` if it was saved)."""
    del model
    return ("pos_embed.pos_embed",)


def check_tied_copies(state_dict: Mapping[str, np.ndarray], rules: list[Rule]) -> None:
    """Raise if checkpoint tensors that map onto one NNX parameter are not identical.

    Raises:
      ConversionError: naming every key that differs from the first key of its group.
    """
    groups: dict[tuple[str, tuple[int, int] | None], list[str]] = {}
    for rule in rules:
        groups.setdefault((rule.target, rule.part), []).append(rule.source)
    differing = []
    for (target, _), sources in groups.items():
        present = [s for s in sources if s in state_dict]
        for source in present[1:]:
            first = np.asarray(state_dict[present[0]])
            other = np.asarray(state_dict[source])
            if first.shape != other.shape or not np.array_equal(first, other):
                differing.append(f"{source} != {present[0]} (both -> {target})")
    if differing:
        raise ConversionError(
            "this checkpoint has per-block embedders that differ, which a DiT with one shared "
            "time/label embedder cannot represent (was it trained natively in diffusers?):\n  "
            + "\n  ".join(differing)
        )


def dit_kwargs_from_diffusers_config(config: Mapping) -> dict:
    """:class:`nnx_nets.DiT` keyword arguments (without ``rngs``) from a diffusers config.

    Args:
      config: the ``transformer/config.json`` of a ``DiTTransformer2DModel``.

    Raises:
      ValueError: the config describes something this DiT does not build.
    """
    expected = {
        "norm_type": "ada_norm_zero",
        "activation_fn": "gelu-approximate",
        "attention_bias": True,
        "norm_elementwise_affine": False,
    }
    for key, value in expected.items():
        if config.get(key, value) != value:
            raise ValueError(
                f"diffusers config has {key}={config[key]!r}; only {value!r} is supported"
            )
    in_channels = int(config.get("in_channels", 4))
    out_channels = config.get("out_channels") or in_channels
    if out_channels not in (in_channels, 2 * in_channels):
        raise ValueError(
            f"out_channels {out_channels} must be in_channels ({in_channels}) or twice it"
        )
    heads = int(config.get("num_attention_heads", 16))
    return {
        "input_size": int(config.get("sample_size", 32)),
        "patch_size": int(config.get("patch_size", 2)),
        "in_channels": in_channels,
        "hidden_size": heads * int(config.get("attention_head_dim", 72)),
        "depth": int(config.get("num_layers", 28)),
        "num_heads": heads,
        "num_classes": int(config.get("num_embeds_ada_norm", 1000)),
        "learn_sigma": out_channels == 2 * in_channels,
        "time_scale": 1000.0,
        "time_freq_shift": 1.0,
    }
