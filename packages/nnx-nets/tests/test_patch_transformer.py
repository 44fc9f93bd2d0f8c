"""The shared DiT-family trunk: one preset rule, and a network is only its parts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nnx_nets import (
    DiT,
    DiTBlock,
    DiTDH,
    DiTFinalLayer,
    LightningDiT,
    MeanFlowDiT,
    PatchTransformer,
    TrunkParts,
    make_time_embedder,
)

FAMILY = [
    (DiT, "DiT-S/2", "DiT"),
    (MeanFlowDiT, "DiT-S/2", "DiT"),
    (LightningDiT, "LightningDiT-B/1", "LightningDiT"),
    (DiTDH, "DiTDH-S", "DiT-DH"),
]


@pytest.mark.parametrize(("cls", "first", "family"), FAMILY)
def test_every_member_follows_one_preset_rule(cls, first, family):
    assert issubclass(cls, PatchTransformer)
    with pytest.raises(ValueError, match=f"unknown {family} preset 'nope'; valid: {first}, "):
        cls.from_preset("nope", input_size=8, in_channels=4, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"already sets \['depth'\]; drop them"):
        cls.from_preset(first, depth=1, input_size=8, in_channels=4, rngs=nnx.Rngs(0))


class TrunkOnlyDiT(PatchTransformer):
    """DiT written as nothing but its parts (what a new family member looks like)."""

    def __init__(self, *, hidden_size: int, out_features: int, rngs: nnx.Rngs, **trunk):
        parts = TrunkParts(
            time_embedder=lambda rngs: make_time_embedder("sinusoidal", hidden_size, rngs=rngs),
            block=lambda rngs: DiTBlock(hidden_size, 2, rngs=rngs),
            final_layer=lambda rngs: DiTFinalLayer(hidden_size, out_features, rngs=rngs),
        )
        super().__init__(hidden_size=hidden_size, parts=parts, rngs=rngs, **trunk)


def _perturbed(model: nnx.Module) -> nnx.Module:
    """Adds fixed noise to every parameter (a fresh DiT outputs exactly 0)."""
    leaves, treedef = jax.tree.flatten(nnx.state(model, nnx.Param))
    keys = jax.random.split(jax.random.key(1), len(leaves))
    noisy = [v + 0.1 * jax.random.normal(k, v.shape) for v, k in zip(leaves, keys)]
    nnx.update(model, jax.tree.unflatten(treedef, noisy))
    return model


def test_the_trunk_with_dit_parts_is_dit_bit_for_bit():
    geometry = dict(input_size=4, patch_size=2, in_channels=3, depth=2, num_classes=5)
    dit = DiT(hidden_size=16, num_heads=2, **geometry, rngs=nnx.Rngs(3))
    trunk = TrunkOnlyDiT(
        hidden_size=16,
        out_features=2 * 2 * 3,
        out_channels=3,
        time_scale=1.0,
        precision="float32",
        remat=False,
        scan_blocks=False,
        **geometry,
        rngs=nnx.Rngs(3),
    )
    dit_state = jax.tree_util.tree_leaves_with_path(nnx.state(dit))
    trunk_state = jax.tree_util.tree_leaves_with_path(nnx.state(trunk))
    assert [path for path, _ in dit_state] == [path for path, _ in trunk_state]
    for (path, a), (_, b) in zip(dit_state, trunk_state):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=str(path))
    x = jax.random.normal(jax.random.key(2), (2, 4, 4, 3))
    t, y = jnp.array([0.2, 0.9]), jnp.array([1, 5])
    expected, got = _perturbed(dit)(x, t, y), _perturbed(trunk)(x, t, y)
    assert float(jnp.abs(expected).max()) > 0  # the comparison is not between zeros
    # Exact: same parameters, same operations in the same order.
    np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))
