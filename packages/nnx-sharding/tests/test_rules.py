"""logical_to_spec: the mapping rules and every error it raises."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

import nnx_sharding as ns


@pytest.fixture(scope="module")
def mesh(eight_devices):
    return ns.make_mesh(ns.MeshConfig(data=1, fsdp=4, tensor=2))


def spec(axes, shape, mesh, rules, dtype=jnp.float32):
    return ns.logical_to_spec(axes, shape, dtype, mesh=mesh, rules=rules)


def test_each_strategy_maps_the_conventions_table(mesh):
    axes, shape = ("embed", "mlp"), (64, 256)
    assert spec(axes, shape, mesh, ns.replicate_rules()) == P()
    assert spec(axes, shape, mesh, ns.fsdp_rules(min_shard_bytes=0)) == P("fsdp", None)
    assert spec(axes, shape, mesh, ns.tensor_rules()) == P(None, "tensor")
    assert spec(axes, shape, mesh, ns.fsdp_tensor_rules(min_shard_bytes=0)) == P("fsdp", "tensor")
    for name in ("classes", "channels"):
        assert spec((name, "embed"), (8, 64), mesh, ns.fsdp_tensor_rules(min_shard_bytes=0)) == P(
            None, "fsdp"
        )


def test_threshold_replicates_small_tensors_only(mesh):
    rules = ns.fsdp_rules(min_shard_bytes=1024)
    assert spec(("embed",), (255,), mesh, rules.with_params()) == P()  # 1020 B: replicated
    assert spec(("embed",), (256,), mesh, rules) == P("fsdp")  # 1024 B: sharded
    assert spec(("embed",), (256,), mesh, rules, dtype=jnp.bfloat16) == P()  # 512 B
    assert ns.fsdp_rules().min_shard_bytes == ns.DEFAULT_MIN_SHARD_BYTES == 2**18
    # Fully replicated specs are the empty PartitionSpec; None axes are kept otherwise.
    assert spec((None, "embed"), (3, 64), mesh, ns.fsdp_rules(min_shard_bytes=0)) == P(None, "fsdp")


def test_a_mesh_axis_is_used_once_per_tensor(mesh):
    rules = ns.fsdp_rules(min_shard_bytes=0)
    assert spec(("embed", "embed"), (64, 64), mesh, rules) == P("fsdp", None)
    wide = ns.fsdp_rules(min_shard_bytes=0).with_params(mlp=("fsdp", "tensor"))
    assert spec(("mlp", "embed"), (64, 64), mesh, wide) == P(("fsdp", "tensor"), None)


def test_indivisible_dimension_is_a_clear_error(mesh):
    rules = ns.fsdp_rules(min_shard_bytes=0)
    with pytest.raises(ns.ShardingError, match=r"size 66.*does not divide the 4 shards"):
        spec(("embed", "mlp"), (66, 256), mesh, rules)


def test_indivisible_replicate_is_the_documented_fallback(mesh):
    rules = dataclasses.replace(ns.fsdp_tensor_rules(min_shard_bytes=0), indivisible="replicate")
    assert spec(("embed", "mlp"), (66, 256), mesh, rules) == P(None, "tensor")


def test_unknown_logical_name_is_an_error_that_names_the_fix(mesh):
    with pytest.raises(ns.ShardingError, match=r"'embd'.*with_params\(embd=None\)"):
        spec(("embd", "mlp"), (64, 256), mesh, ns.fsdp_rules())
    rules = ns.fsdp_rules(min_shard_bytes=0).with_params(vocab="fsdp")
    assert spec(("vocab", None), (64, 3), mesh, rules) == P("fsdp", None)


def test_rank_mismatch_and_missing_mesh_axis(mesh, eight_devices):
    with pytest.raises(ns.ShardingError, match="name 1 dimensions but the tensor has shape"):
        spec(("embed",), (64, 64), mesh, ns.fsdp_rules())
    data_only = Mesh(np.array(eight_devices), ("data",))
    with pytest.raises(ns.ShardingError, match=r"\['fsdp'\].*make_mesh"):
        spec(("embed",), (64,), data_only, ns.fsdp_rules(min_shard_bytes=0))


def test_rules_validate_their_fields():
    with pytest.raises(ValueError, match="min_shard_bytes"):
        ns.fsdp_rules(min_shard_bytes=-1)
    with pytest.raises(ValueError, match="indivisible"):
        dataclasses.replace(ns.fsdp_rules(), indivisible="gather")


def test_sequence_rules_keep_the_parameter_table():
    base = ns.fsdp_tensor_rules(min_shard_bytes=5)
    rules = ns.sequence_rules(base)
    assert rules.params == base.params and rules.min_shard_bytes == 5
    assert rules.activations["seq"] == "sequence" and rules.name == "fsdp_tensor+sequence"
    assert ns.sequence_rules().params == ns.replicate_rules().params


def test_state_errors_name_the_parameter_path(mesh):
    model = nnx.eval_shape(
        lambda: nnx.Linear(
            66, 8, kernel_metadata={"logical_axes": ("embed", None)}, rngs=nnx.Rngs(0)
        )
    )
    with pytest.raises(ns.ShardingError, match=r"^kernel: dimension 0 \('embed', size 66\)"):
        ns.partition_specs(nnx.state(model), mesh=mesh, rules=ns.fsdp_rules(min_shard_bytes=0))
