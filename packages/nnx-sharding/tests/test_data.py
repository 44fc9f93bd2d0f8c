"""global_batch and logical_constraint: layouts, values and divisibility errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import nnx_sharding as ns


def _batch(rows: int = 8) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "x": rng.normal(size=(rows, 8, 8, 2)).astype(np.float32),
        "y": rng.integers(0, 10, size=(rows,)).astype(np.int32),
    }


def test_global_batch_splits_rows_over_data_and_fsdp(eight_devices):
    mesh = ns.make_mesh(ns.MeshConfig(data=2, fsdp=4))
    local = _batch(16)
    result = ns.global_batch(local, mesh=mesh, rules=ns.fsdp_rules())
    for key in local:
        assert result[key].shape == local[key].shape
        np.testing.assert_array_equal(np.asarray(result[key]), local[key])  # exact copy
    assert result["x"].sharding.spec == P(("data", "fsdp"), None, None, None)
    assert {shard.data.shape for shard in result["x"].addressable_shards} == {(2, 8, 8, 2)}
    assert result["y"].sharding.spec == P(("data", "fsdp"))


def test_tensor_axis_replicates_the_batch(eight_devices):
    mesh = ns.make_mesh(ns.MeshConfig(data=2, tensor=4))
    assert ns.local_batch_shards(mesh, ("data", "fsdp")) == (2, 2)
    result = ns.global_batch(_batch(4), mesh=mesh, rules=ns.tensor_rules())
    assert {shard.data.shape[0] for shard in result["x"].addressable_shards} == {2}
    assert len(result["x"].addressable_shards) == 8


def test_sequence_splits_image_rows(eight_devices):
    mesh = ns.make_mesh(ns.MeshConfig(data=2, sequence=4))
    rules = ns.sequence_rules()
    result = ns.global_batch(_batch(4), mesh=mesh, rules=rules, logical_axes=("batch", "seq"))
    assert result["x"].sharding.spec == P(("data", "fsdp"), "sequence", None, None)
    assert {shard.data.shape for shard in result["x"].addressable_shards} == {(2, 2, 8, 2)}
    # Rank-1 leaves only take the batch name.
    assert result["y"].sharding.spec == P(("data", "fsdp"))


def test_indivisible_batch_is_a_clear_error(eight_devices):
    mesh = ns.make_mesh(ns.MeshConfig(data=-1))
    with pytest.raises(ns.ShardingError, match=r"batch of 12 rows does not divide into the 8"):
        ns.global_batch(_batch(12), mesh=mesh, rules=ns.replicate_rules())
    with pytest.raises(ns.ShardingError, match="scalar"):
        ns.global_batch({"step": np.float32(1.0)}, mesh=mesh, rules=ns.replicate_rules())
    seq_mesh = ns.make_mesh(ns.MeshConfig(data=2, sequence=4))
    with pytest.raises(
        ns.ShardingError, match=r"size 6\) of shape .* does not divide the 4 shards"
    ):
        ns.global_batch(
            {"x": np.zeros((2, 6, 8, 2), np.float32)},
            mesh=seq_mesh,
            rules=ns.sequence_rules(),
            logical_axes=("batch", "seq"),
        )


def test_batch_sharding_for_jit_in_shardings(eight_devices):
    mesh = ns.make_mesh(ns.MeshConfig(data=2, sequence=4))
    sharding = ns.batch_sharding(
        4, mesh=mesh, rules=ns.sequence_rules(), logical_axes=("batch", "seq")
    )
    assert sharding.spec == P(("data", "fsdp"), "sequence", None, None)


def test_logical_constraint_is_a_no_op_outside_a_context():
    x = jnp.ones((4, 16, 8))
    assert ns.logical_constraint(x, ("batch", "seq", None)) is x


def test_logical_constraint_shards_tokens_under_sequence_rules(eight_devices):
    mesh = ns.make_mesh(ns.MeshConfig(data=2, sequence=4))
    x = jnp.arange(4 * 16 * 8, dtype=jnp.float32).reshape(4, 16, 8)

    def f(tokens):
        return ns.logical_constraint(tokens * 2, ("batch", "seq", None))

    def g(tokens):  # a separate function: jax.jit caches traces per function
        return ns.logical_constraint(tokens * 2, ("batch", "seq", None))

    with ns.activation_sharding(mesh, ns.sequence_rules()):
        y = jax.jit(f)(x)
    with ns.activation_sharding(mesh, ns.replicate_rules()):
        z = jax.jit(g)(x)
    # The compiler drops size-1 mesh axes from the spec it reports: compare layouts.
    tokens_split = NamedSharding(mesh, P(("data", "fsdp"), "sequence", None))
    batch_split = NamedSharding(mesh, P(("data", "fsdp"), None, None))
    assert y.sharding.is_equivalent_to(tokens_split, 3)
    assert z.sharding.is_equivalent_to(batch_split, 3)
    assert not z.sharding.is_equivalent_to(tokens_split, 3)
    np.testing.assert_array_equal(np.asarray(y), 2 * np.asarray(x))
