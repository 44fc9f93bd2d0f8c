"""Orbax save on 8 devices (FSDP), restore on 4 devices under FSDP and tensor parallelism."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import sharding_tiny_dit as tiny
from flax import nnx
from jax.sharding import PartitionSpec as P

import nnx_sharding as ns


@pytest.fixture(scope="module")
def saved(fsdp_init, tmp_path_factory):
    (model, optimizer), _, _ = fsdp_init
    state = nnx.state((model, optimizer))
    directory = tmp_path_factory.mktemp("ckpt") / "step_0"
    ns.save_state(directory, state)
    return directory, tiny.flat(state)


@pytest.mark.parametrize(
    ("config", "rules", "kernel_spec", "kernel_shard"),
    [
        # fc1 kernel (embed 64, mlp 256)
        (
            ns.MeshConfig(data=1, fsdp=4),
            ns.fsdp_rules(min_shard_bytes=2048),
            P("fsdp", None),
            (16, 256),
        ),
        (ns.MeshConfig(data=2, tensor=2), ns.tensor_rules(), P(None, "tensor"), (64, 128)),
    ],
    ids=["fsdp4", "tensor2"],
)
def test_restore_onto_four_devices_is_exact(saved, config, rules, kernel_spec, kernel_shard):
    directory, expected = saved
    devices = jax.devices()[4:]  # a disjoint half of the 8 devices the checkpoint came from
    mesh = ns.make_mesh(config, devices=devices)
    model, optimizer = ns.restore_sharded(directory, tiny.build, mesh=mesh, rules=rules)
    state = nnx.state((model, optimizer))

    restored = tiny.flat(state)
    assert restored.keys() == expected.keys()
    for key, value in expected.items():
        np.testing.assert_array_equal(restored[key], value, err_msg=key)  # bit-identical

    kernel = model.blocks[0].fc1.kernel[...]
    assert kernel.sharding.spec == kernel_spec
    assert {shard.device for shard in kernel.addressable_shards} == set(devices)
    assert {shard.data.shape for shard in kernel.addressable_shards} == {kernel_shard}
    # Restored leaves carry the layout the new rules ask for, and the Variables keep metadata.
    for array, sharding in zip(
        jax.tree.leaves(state),
        jax.tree.leaves(ns.named_shardings(state, mesh=mesh, rules=rules)),
        strict=True,
    ):
        assert array.sharding == sharding
    assert model.blocks[0].fc1.kernel.get_metadata("logical_axes") == ("embed", "mlp")


def test_restore_state_into_a_pytree_target(saved):
    directory, expected = saved
    mesh = ns.make_mesh(ns.MeshConfig(data=-1), devices=jax.devices()[:2])
    _, target = ns.abstract_state(tiny.build, mesh=mesh, rules=ns.replicate_rules())
    state = ns.restore_state(directory, target)
    assert isinstance(state, nnx.State)
    np.testing.assert_array_equal(
        np.asarray(state[0]["final"]["kernel"].get_value()), expected["0.final.kernel"]
    )


def test_save_refuses_to_overwrite_and_restore_needs_a_checkpoint(saved, tmp_path):
    directory, _ = saved
    with pytest.raises(FileExistsError, match="overwrite=True"):
        ns.save_state(directory, {"x": np.zeros(3)})
    with pytest.raises(FileNotFoundError, match="No checkpoint"):
        ns.restore_state(tmp_path / "missing", {"x": jax.ShapeDtypeStruct((3,), np.float32)})
