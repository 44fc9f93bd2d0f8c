"""Spec for facebookresearch/DiT checkpoints (``DiT-XL-2-256x256.pt`` etc.) and MeanFlowDiT.

Key layout of the official ``models.py`` (the released files hold the EMA state dict):
``x_embedder.proj.*`` (Conv), ``pos_embed`` (fixed sin-cos table, recomputed here),
``t_embedder.mlp.{0,2}.*``, ``y_embedder.embedding_table.weight`` (1001 rows, the last is
the null class), ``blocks.{i}.attn.qkv.*`` (fused, rows q | k | v), ``blocks.{i}.attn.proj.*``,
``blocks.{i}.mlp.fc{1,2}.*``, ``blocks.{i}.adaLN_modulation.1.*``,
``final_layer.linear.*``, ``final_layer.adaLN_modulation.1.*``.

Load with ``load_into(model, sd, dit_rules(model), ignore=dit_buffer_keys(model))`` and a
model built with ``time_scale=1000`` (DiT was trained on integer steps 0..999).
"""

from __future__ import annotations

from nnx_nets import DiT, MeanFlowDiT
from nnx_weightconv.core import Rule, conv_rules, linear_kernel, linear_kernel_inv, linear_rules


def fused_linear_rules(source: str, targets: list[str]) -> list[Rule]:
    """Split a fused Linear ``{source}.{weight,bias}`` (rows in ``targets`` order) into
    separate NNX Linears ``{target}.{kernel,bias}``."""
    count = len(targets)
    rules = []
    for index, target in enumerate(targets):
        part = (index, count)
        rules.append(
            Rule(f"{source}.weight", f"{target}.kernel", linear_kernel, linear_kernel_inv, part)
        )
        rules.append(Rule(f"{source}.bias", f"{target}.bias", part=part))
    return rules


def _block_rules(i: int) -> list[Rule]:
    src, dst = f"blocks.{i}", f"blocks.{i}"
    attn = f"{dst}.attn"
    return [
        *fused_linear_rules(f"{src}.attn.qkv", [f"{attn}.query", f"{attn}.key", f"{attn}.value"]),
        *linear_rules(f"{src}.attn.proj", f"{attn}.out"),
        *linear_rules(f"{src}.mlp.fc1", f"{dst}.mlp.fc1"),
        *linear_rules(f"{src}.mlp.fc2", f"{dst}.mlp.fc2"),
        *linear_rules(f"{src}.adaLN_modulation.1", f"{dst}.adaln.linear"),
    ]


def dit_rules(model: DiT) -> list[Rule]:
    """Rules mapping the official DiT key layout onto :class:`nnx_nets.DiT`.

    Args:
      model: the target network (its depth selects the block rules).
    """
    rules = [
        *conv_rules("x_embedder.proj", "x_embedder.proj"),
        *linear_rules("t_embedder.mlp.0", "t_embedder.linear_1"),
        *linear_rules("t_embedder.mlp.2", "t_embedder.linear_2"),
        Rule("y_embedder.embedding_table.weight", "y_embedder.embedding_table.embedding"),
    ]
    for i in range(len(model.blocks)):
        rules += _block_rules(i)
    rules += [
        *linear_rules("final_layer.linear", "final_layer.linear"),
        *linear_rules("final_layer.adaLN_modulation.1", "final_layer.adaln.linear"),
    ]
    return rules


def dit_buffer_keys(model: DiT) -> tuple[str, ...]:
    """Checkpoint keys of fixed tables that the NNX model recomputes (``pos_embed``)."""
    del model
    return ("pos_embed",)


def meanflow_dit_rules(model: MeanFlowDiT) -> list[Rule]:
    """DiT's layout plus ``dt_embedder.mlp.{0,2}`` for the second time embedder.

    There is no released PyTorch MeanFlow checkpoint; this is the DiT layout extended the
    way MeanFlow extends the network, so that exported MeanFlow weights round-trip. To
    start a MeanFlowDiT from DiT weights, load them with ``dit_rules(model)`` and
    ``strict=False`` (the ``dt_embedder`` keeps its initialisation).
    """
    return [
        *dit_rules(model),
        *linear_rules("dt_embedder.mlp.0", "dt_embedder.linear_1"),
        *linear_rules("dt_embedder.mlp.2", "dt_embedder.linear_2"),
    ]
