"""The rules on the real network: nnx_nets.DiT (its constructors set the logical axes).

Golden specs catch a change in either package's sharding. A sharded forward pass checks that
`sharded_init` builds the real model on its shards and computes what one device computes.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
import sharding_tiny_dit as tiny
from flax import nnx
from jax.sharding import PartitionSpec as P

import nnx_sharding as ns
from nnx_nets import DiT

R = P()


def build_dit() -> DiT:
    return DiT(
        input_size=8,
        patch_size=2,
        in_channels=2,
        hidden_size=64,
        depth=1,
        num_heads=4,
        num_classes=4,
        rngs=nnx.Rngs(0),
    )


# DiT(hidden 64, depth 1, 4 heads, patch 2, 2 channels, 4 classes), FSDP threshold 2 KiB.
GOLDEN = {
    "fsdp": {
        "x_embedder.proj.kernel": P(None, None, None, "fsdp"),  # conv (2, 2, 2, 64)
        "x_embedder.proj.bias": R,
        "t_embedder.linear_1.kernel": R,  # (frequencies, mlp): no embed dimension
        "t_embedder.linear_1.bias": R,
        "t_embedder.linear_2.kernel": P(None, "fsdp"),
        "t_embedder.linear_2.bias": R,
        "y_embedder.embedding_table.embedding": R,  # 1.25 KiB < 2 KiB
        "blocks.0.adaln.linear.kernel": P("fsdp", None),
        "blocks.0.adaln.linear.bias": R,
        "blocks.0.attn.query.kernel": P("fsdp", None),
        "blocks.0.attn.query.bias": R,
        "blocks.0.attn.key.kernel": P("fsdp", None),
        "blocks.0.attn.key.bias": R,
        "blocks.0.attn.value.kernel": P("fsdp", None),
        "blocks.0.attn.value.bias": R,
        "blocks.0.attn.out.kernel": P(None, "fsdp"),
        "blocks.0.attn.out.bias": R,
        "blocks.0.mlp.fc1.kernel": P("fsdp", None),
        "blocks.0.mlp.fc1.bias": R,
        "blocks.0.mlp.fc2.kernel": P(None, "fsdp"),
        "blocks.0.mlp.fc2.bias": R,
        "final_layer.adaln.linear.kernel": P("fsdp", None),
        "final_layer.adaln.linear.bias": R,
        "final_layer.linear.kernel": P("fsdp", None),
        "final_layer.linear.bias": R,
    },
    "tensor": {
        "x_embedder.proj.kernel": R,
        "x_embedder.proj.bias": R,
        "t_embedder.linear_1.kernel": P(None, "tensor"),
        "t_embedder.linear_1.bias": P("tensor"),
        "t_embedder.linear_2.kernel": P("tensor", None),
        "t_embedder.linear_2.bias": R,
        "y_embedder.embedding_table.embedding": R,
        "blocks.0.adaln.linear.kernel": P(None, "tensor"),
        "blocks.0.adaln.linear.bias": P("tensor"),
        "blocks.0.attn.query.kernel": P(None, "tensor"),
        "blocks.0.attn.query.bias": P("tensor"),
        "blocks.0.attn.key.kernel": P(None, "tensor"),
        "blocks.0.attn.key.bias": P("tensor"),
        "blocks.0.attn.value.kernel": P(None, "tensor"),
        "blocks.0.attn.value.bias": P("tensor"),
        "blocks.0.attn.out.kernel": P("tensor", None),
        "blocks.0.attn.out.bias": R,
        "blocks.0.mlp.fc1.kernel": P(None, "tensor"),
        "blocks.0.mlp.fc1.bias": P("tensor"),
        "blocks.0.mlp.fc2.kernel": P("tensor", None),
        "blocks.0.mlp.fc2.bias": R,
        "final_layer.adaln.linear.kernel": P(None, "tensor"),
        "final_layer.adaln.linear.bias": P("tensor"),
        "final_layer.linear.kernel": R,
        "final_layer.linear.bias": R,
    },
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_dit_golden_partition_specs(name, eight_devices):
    config, rules = tiny.STRATEGIES[name]
    state = nnx.state(nnx.eval_shape(build_dit), nnx.Param)
    specs = ns.partition_specs(state, mesh=ns.make_mesh(config), rules=rules)
    leaves = jax.tree_util.tree_flatten_with_path(specs, is_leaf=lambda x: isinstance(x, P))[0]
    assert {tiny.key_of(path): spec for path, spec in leaves} == GOLDEN[name]


def test_dit_every_strategy_fits_its_mesh(eight_devices):
    state = nnx.state(nnx.eval_shape(build_dit))
    for config, rules in tiny.STRATEGIES.values():
        ns.partition_specs(state, mesh=ns.make_mesh(config), rules=rules)  # raises if not


def test_dit_fsdp_tensor_sequence_forward_equals_single_device(eight_devices, batch):
    # All three at once on 2 x 2 x 2 devices; context parallelism splits the image rows
    # (hence the tokens, row-major) over "sequence" at the input.
    mesh = ns.make_mesh(ns.MeshConfig(data=1, fsdp=2, sequence=2, tensor=2))
    rules = ns.sequence_rules(ns.fsdp_tensor_rules(min_shard_bytes=tiny.MIN_SHARD_BYTES))
    model = ns.sharded_init(build_dit, mesh=mesh, rules=rules, compiler_options=tiny.FAST_COMPILE)
    assert model.blocks[0].mlp.fc1.kernel[...].sharding.spec == P("fsdp", "tensor")
    graphdef, state = nnx.split(model)

    # DiT's adaLN-Zero init zeroes the modulation and output layers, which would make the
    # comparison vacuous: add random non-zero values to every parameter first.
    rng = np.random.default_rng(0)
    host = jax.tree.map(
        lambda x: (x + 0.1 * rng.normal(size=x.shape)).astype(x.dtype), tiny.to_host(state)
    )
    shardings = ns.named_shardings(state, mesh=mesh, rules=rules)

    def forward(state, x, t, y):
        return nnx.merge(graphdef, state)(x, t, y)

    inputs = (batch["x0"], batch["t"], batch["y"])
    images = ns.global_batch(inputs[0], mesh=mesh, rules=rules, logical_axes=("batch", "seq"))
    assert {shard.data.shape for shard in images.addressable_shards} == {(4, 4, 8, 2)}
    t, y = ns.global_batch(inputs[1:], mesh=mesh, rules=rules)
    sharded = jax.jit(forward, compiler_options=tiny.FAST_COMPILE)(
        jax.device_put(host, shardings), images, t, y
    )
    single = jax.jit(forward, compiler_options=tiny.FAST_COMPILE)(
        jax.device_put(host, jax.devices()[0]), *inputs
    )
    single = np.asarray(single)
    assert np.max(np.abs(single)) > 0.1  # not vacuous
    # Split contractions reorder fp32 sums: a few ulps of the output scale (measured 3.4e-7).
    error = np.max(np.abs(np.asarray(sharded) - single)) / np.max(np.abs(single))
    assert error <= 1e-6, error
