"""Spec for LightningDiT checkpoints (hustvl/LightningDiT ``models/lightningdit.py``).

Key layout (``train.py`` saves ``{"model", "ema", "opt"}``; load the ``ema`` entry):
``x_embedder.proj.*``, ``t_embedder.mlp.{0,2}.*`` (plus ``t_embedder.W`` for RAE's
Gaussian-Fourier variant), ``y_embedder.embedding_table.weight``, ``pos_embed`` and
``feat_rope.freqs_{cos,sin}`` (fixed tables, recomputed here), and per block
``norm{1,2}.weight``, ``attn.qkv.*`` (fused q | k | v), ``attn.{q,k}_norm.weight`` (QK-norm
only), ``attn.proj.*``, ``mlp.w12.*`` (fused gate | up), ``mlp.w3.*``,
``adaLN_modulation.1.*``; then ``final_layer.{norm_final.weight, linear.*,
adaLN_modulation.1.*}``. Only the published RMSNorm + SwiGLU + RoPE configuration is
covered (the LayerNorm / GELU-MLP variants are DiT).
"""

from __future__ import annotations

from nnx_nets import GaussianFourierEmbedder, LightningDiT
from nnx_weightconv.core import Rule, conv_rules, linear_rules
from nnx_weightconv.specs.dit import fused_linear_rules


def lightning_block_rules(source: str, target: str, *, qk_norm: bool) -> list[Rule]:
    """Rules for one ``LightningDiTBlock`` at checkpoint prefix ``source`` / NNX ``target``."""
    attn = f"{target}.attn"
    rules = [
        Rule(f"{source}.norm1.weight", f"{target}.norm1.scale"),
        Rule(f"{source}.norm2.weight", f"{target}.norm2.scale"),
        *fused_linear_rules(
            f"{source}.attn.qkv", [f"{attn}.query", f"{attn}.key", f"{attn}.value"]
        ),
        *linear_rules(f"{source}.attn.proj", f"{attn}.out"),
        *fused_linear_rules(f"{source}.mlp.w12", [f"{target}.mlp.gate", f"{target}.mlp.up"]),
        *linear_rules(f"{source}.mlp.w3", f"{target}.mlp.down"),
        *linear_rules(f"{source}.adaLN_modulation.1", f"{target}.adaln.linear"),
    ]
    if qk_norm:
        rules += [
            Rule(f"{source}.attn.q_norm.weight", f"{attn}.q_norm.scale"),
            Rule(f"{source}.attn.k_norm.weight", f"{attn}.k_norm.scale"),
        ]
    return rules


def time_embedder_rules(embedder) -> list[Rule]:
    """``t_embedder.mlp.{0,2}`` (+ ``t_embedder.W`` for a Gaussian-Fourier embedder)."""
    rules = [
        *linear_rules("t_embedder.mlp.0", "t_embedder.linear_1"),
        *linear_rules("t_embedder.mlp.2", "t_embedder.linear_2"),
    ]
    if isinstance(embedder, GaussianFourierEmbedder):
        rules.append(Rule("t_embedder.W", "t_embedder.frequencies"))
    return rules


def final_layer_rules() -> list[Rule]:
    """``final_layer.{norm_final, linear, adaLN_modulation.1}`` of LightningDiT / DiT-DH."""
    return [
        Rule("final_layer.norm_final.weight", "final_layer.norm.scale"),
        *linear_rules("final_layer.linear", "final_layer.linear"),
        *linear_rules("final_layer.adaLN_modulation.1", "final_layer.adaln.linear"),
    ]


def lightning_dit_rules(model: LightningDiT) -> list[Rule]:
    """Rules mapping the LightningDiT key layout onto :class:`nnx_nets.LightningDiT`."""
    qk_norm = model.blocks[0].attn.q_norm is not None if len(model.blocks) else False
    rules = [
        *conv_rules("x_embedder.proj", "x_embedder.proj"),
        *time_embedder_rules(model.t_embedder),
        Rule("y_embedder.embedding_table.weight", "y_embedder.embedding_table.embedding"),
    ]
    for i in range(len(model.blocks)):
        rules += lightning_block_rules(f"blocks.{i}", f"blocks.{i}", qk_norm=qk_norm)
    return rules + final_layer_rules()


def lightning_dit_buffer_keys(model: LightningDiT) -> tuple[str, ...]:
    """Fixed tables the NNX model recomputes: the sin-cos table and the RoPE tables."""
    del model
    return ("pos_embed", "feat_rope.freqs_cos", "feat_rope.freqs_sin")
