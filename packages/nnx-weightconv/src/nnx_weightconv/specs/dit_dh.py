"""Spec for RAE's DiT-DH checkpoints (``DiTwDDTHead``, e.g. ``DiTDH-XL/stage2_model.pt``).

Key layout (RAE ``src/stage2/models/DDT.py``; training checkpoints wrap it in ``ema``):
``s_embedder.proj.*`` (trunk patches), ``x_embedder.proj.*`` (head patches),
``s_projector.*`` (only when the trunk and head widths differ), ``t_embedder.W`` and
``t_embedder.mlp.{0,2}.*`` (Gaussian-Fourier), ``y_embedder.embedding_table.weight``,
``blocks.{0..depth-1}`` (trunk) followed by ``blocks.{depth..depth+head_depth-1}`` (head),
each a LightningDiT block, ``final_layer.{norm_final.weight, linear.*,
adaLN_modulation.1.*}``, and the fixed tables ``pos_embed``, ``enc_feat_rope.*``,
``dec_feat_rope.*`` (recomputed here).
"""

from __future__ import annotations

from nnx_nets import DiTDH
from nnx_weightconv.core import Rule, conv_rules, linear_rules
from nnx_weightconv.specs.lightning_dit import (
    final_layer_rules,
    lightning_block_rules,
    time_embedder_rules,
)


def dit_dh_rules(model: DiTDH) -> list[Rule]:
    """Rules mapping the ``DiTwDDTHead`` key layout onto :class:`nnx_nets.DiTDH`."""
    depth = len(model.blocks)
    rules = [
        *conv_rules("s_embedder.proj", "s_embedder.proj"),
        *conv_rules("x_embedder.proj", "x_embedder.proj"),
        *time_embedder_rules(model.t_embedder),
        Rule("y_embedder.embedding_table.weight", "y_embedder.embedding_table.embedding"),
    ]
    if model.s_projector is not None:
        rules += linear_rules("s_projector", "s_projector")
    for i in range(depth):
        rules += lightning_block_rules(f"blocks.{i}", f"blocks.{i}", qk_norm=False)
    for j in range(len(model.head_blocks)):
        rules += lightning_block_rules(f"blocks.{depth + j}", f"head_blocks.{j}", qk_norm=False)
    return rules + final_layer_rules()


def dit_dh_buffer_keys(model: DiTDH) -> tuple[str, ...]:
    """Fixed tables the NNX model recomputes: sin-cos positions and both RoPE tables."""
    del model
    return (
        "pos_embed",
        "enc_feat_rope.freqs_cos",
        "enc_feat_rope.freqs_sin",
        "dec_feat_rope.freqs_cos",
        "dec_feat_rope.freqs_sin",
    )
