"""Golden PartitionSpecs of the tiny DiT under each strategy: a change in sharding shows here.

TinyDiT(hidden 64, depth 1, 4 heads, patch 2, 2 channels, 4 classes); FSDP threshold 2 KiB
(tiny.MIN_SHARD_BYTES), so biases, the RMSNorm scale and the 5 x 64 label table stay
replicated under FSDP while every kernel is split.
"""

from __future__ import annotations

import jax
import pytest
import sharding_tiny_dit as tiny
from flax import nnx
from jax.sharding import PartitionSpec as P

import nnx_sharding as ns

REPLICATED = P()

FSDP_PARAMS = {
    "x_embed.kernel": P(None, "fsdp"),  # (channels 8, embed 64)
    "x_embed.bias": REPLICATED,
    "pos_embed": REPLICATED,  # no logical_axes metadata
    "t_fc1.kernel": P(None, "fsdp"),
    "t_fc1.bias": REPLICATED,
    "t_fc2.kernel": P("fsdp", None),  # ("embed", "embed"): the first dimension takes fsdp
    "t_fc2.bias": REPLICATED,
    "y_embed.embedding": REPLICATED,  # 1.25 KiB < 2 KiB threshold
    "blocks.0.ada.kernel": P("fsdp", None),
    "blocks.0.ada.bias": REPLICATED,
    "blocks.0.qkv.kernel": P("fsdp", None),
    "blocks.0.qkv.bias": REPLICATED,
    "blocks.0.proj.kernel": P(None, "fsdp"),
    "blocks.0.proj.bias": REPLICATED,
    "blocks.0.fc1.kernel": P("fsdp", None),
    "blocks.0.fc1.bias": REPLICATED,
    "blocks.0.fc2.kernel": P(None, "fsdp"),
    "blocks.0.fc2.bias": REPLICATED,
    "final_norm.scale": REPLICATED,
    "final_ada.kernel": P("fsdp", None),
    "final_ada.bias": REPLICATED,
    "final.kernel": P("fsdp", None),
    "final.bias": REPLICATED,
}

GOLDEN = {
    "replicate": dict.fromkeys(FSDP_PARAMS, REPLICATED),
    "fsdp": FSDP_PARAMS,
    "tensor": {
        "x_embed.kernel": REPLICATED,
        "x_embed.bias": REPLICATED,
        "pos_embed": REPLICATED,
        "t_fc1.kernel": REPLICATED,
        "t_fc1.bias": REPLICATED,
        "t_fc2.kernel": REPLICATED,
        "t_fc2.bias": REPLICATED,
        "y_embed.embedding": REPLICATED,
        "blocks.0.ada.kernel": P(None, "tensor"),
        "blocks.0.ada.bias": P("tensor"),
        "blocks.0.qkv.kernel": P(None, "tensor"),
        "blocks.0.qkv.bias": P("tensor"),
        "blocks.0.proj.kernel": P("tensor", None),
        "blocks.0.proj.bias": REPLICATED,
        "blocks.0.fc1.kernel": P(None, "tensor"),
        "blocks.0.fc1.bias": P("tensor"),
        "blocks.0.fc2.kernel": P("tensor", None),
        "blocks.0.fc2.bias": REPLICATED,
        "final_norm.scale": REPLICATED,
        "final_ada.kernel": P(None, "tensor"),
        "final_ada.bias": P("tensor"),
        "final.kernel": REPLICATED,
        "final.bias": REPLICATED,
    },
    "fsdp_tensor": {
        "x_embed.kernel": P(None, "fsdp"),
        "x_embed.bias": REPLICATED,
        "pos_embed": REPLICATED,
        "t_fc1.kernel": P(None, "fsdp"),
        "t_fc1.bias": REPLICATED,
        "t_fc2.kernel": P("fsdp", None),
        "t_fc2.bias": REPLICATED,
        "y_embed.embedding": REPLICATED,
        "blocks.0.ada.kernel": P("fsdp", "tensor"),
        "blocks.0.ada.bias": REPLICATED,  # below the threshold, although "mlp" -> tensor
        "blocks.0.qkv.kernel": P("fsdp", "tensor"),
        "blocks.0.qkv.bias": REPLICATED,
        "blocks.0.proj.kernel": P("tensor", "fsdp"),
        "blocks.0.proj.bias": REPLICATED,
        "blocks.0.fc1.kernel": P("fsdp", "tensor"),
        "blocks.0.fc1.bias": REPLICATED,
        "blocks.0.fc2.kernel": P("tensor", "fsdp"),
        "blocks.0.fc2.bias": REPLICATED,
        "final_norm.scale": REPLICATED,
        "final_ada.kernel": P("fsdp", "tensor"),
        "final_ada.bias": REPLICATED,
        "final.kernel": P("fsdp", None),
        "final.bias": REPLICATED,
    },
    # Context parallelism keeps FSDP's parameter layout; only activations change.
    "sequence": FSDP_PARAMS,
}


def _flat_specs(tree) -> dict[str, P]:
    leaves = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: isinstance(x, P))[0]
    return {tiny.key_of(path): spec for path, spec in leaves}


@pytest.fixture(scope="module")
def abstract_state():
    return nnx.state(nnx.eval_shape(tiny.build))


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_partition_specs(name, abstract_state, eight_devices):
    config, rules = tiny.STRATEGIES[name]
    specs = _flat_specs(ns.partition_specs(abstract_state, mesh=ns.make_mesh(config), rules=rules))
    model = {key.removeprefix("0."): spec for key, spec in specs.items() if key.startswith("0.")}
    assert model == GOLDEN[name]

    # AdamW's moments inherit the parameters' metadata, hence their layout; counters replicate.
    for moment in ("mu", "nu"):
        prefix = f"1.opt_state.0.{moment}."
        layout = {k.removeprefix(prefix): s for k, s in specs.items() if k.startswith(prefix)}
        assert layout == {key: GOLDEN[name][key] for key in layout}
        assert len(layout) == len(GOLDEN[name]) - 1  # every Param (pos_embed is not one)
    assert specs["1.step"] == REPLICATED
    assert specs["1.opt_state.0.count"] == REPLICATED


def test_activation_tables():
    assert tiny.STRATEGIES["sequence"][1].activations["seq"] == "sequence"
    assert tiny.STRATEGIES["fsdp"][1].activations["seq"] is None
    for _, rules in tiny.STRATEGIES.values():
        assert rules.activations["batch"] == ("data", "fsdp")
    assert tiny.STRATEGIES["tensor"][1].activations["mlp"] == "tensor"
