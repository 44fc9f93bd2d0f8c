"""The test kit: XLA flags per jaxlib version, random weights, tiny presets."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nnx_nets.testing import (
    TINY_PRESETS,
    fast_compile_flags,
    random_model,
    randomise_parameters,
    tiny_model,
    xla_test_flags,
)


def test_fusion_emitter_flag_only_where_jaxlib_knows_it():
    # jaxlib 0.11.1 removed the flag and aborts on it; 0.11.0 still accepts it.
    assert "--xla_cpu_use_fusion_emitters=false" in fast_compile_flags("0.11.0")
    assert "--xla_cpu_use_fusion_emitters=false" in fast_compile_flags("0.10.2")
    assert "--xla_cpu_use_fusion_emitters=false" not in fast_compile_flags("0.11.1")
    assert "--xla_cpu_use_fusion_emitters=false" not in fast_compile_flags("0.12.0.1")
    with pytest.raises(ValueError, match="release number"):
        fast_compile_flags("dev")


def test_flags_are_added_once_and_user_flags_win():
    once = xla_test_flags("", 8, "0.12.0.1")
    assert once.split().count("--xla_force_host_platform_device_count=8") == 1
    assert xla_test_flags(once, 8, "0.12.0.1") == once  # every suite's conftest calls it
    user = xla_test_flags("--xla_force_host_platform_device_count=4", 8, "0.12.0.1")
    assert "--xla_force_host_platform_device_count=4" in user.split()
    assert "--xla_force_host_platform_device_count=8" not in user.split()


def test_conftest_gave_eight_cpu_devices():
    assert jax.device_count() == 8 and jax.devices()[0].platform == "cpu"


@pytest.mark.parametrize("name", sorted(TINY_PRESETS))
def test_tiny_presets_have_random_non_zero_weights(name):
    leaves = jax.tree.leaves(nnx.state(tiny_model(name), nnx.Param))
    assert leaves and all(np.asarray(leaf).std() > 0 for leaf in leaves if leaf.size > 1)
    again = jax.tree.leaves(nnx.state(tiny_model(name), nnx.Param))
    other = jax.tree.leaves(nnx.state(tiny_model(name, seed=1), nnx.Param))
    assert all(np.array_equal(a, b) for a, b in zip(leaves, again))  # seeded
    assert not all(np.array_equal(a, b) for a, b in zip(leaves, other))


def test_tiny_dit_output_is_not_zero():
    # adaLN-Zero: a freshly initialised DiT outputs exactly 0, so a parity test on it proves
    # nothing; the kit's weights must reach the output.
    model = tiny_model("dit")
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 8, 8, 3)), jnp.float32)
    out = model(x, jnp.array([0.2, 0.7]), jnp.array([1, 5]))
    assert out.shape == (2, 8, 8, 6) and float(jnp.abs(out).mean()) > 0.1


def test_fan_in_scale_and_keys():
    model = random_model(lambda: nnx.Linear(400, 3, rngs=nnx.Rngs(0)), scale="fan_in")
    # 1200 draws of N(0, 1/400): the sample std is within 10% of 0.05 (about 5 sigma).
    assert abs(float(np.std(model.kernel.get_value())) - 0.05) < 0.005
    dropout = random_model(lambda: nnx.Dropout(0.5, rngs=nnx.Rngs(0)))
    keys = [
        leaf
        for leaf in jax.tree.leaves(nnx.state(dropout))
        if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)
    ]
    assert keys and all(str(jax.random.key_impl(key)) == "rbg" for key in keys)


def test_randomise_parameters_in_place_on_an_abstract_module():
    model = nnx.eval_shape(lambda: nnx.LayerNorm(64, rngs=nnx.Rngs(0)))
    randomise_parameters(model, seed=0, vector_scale=0.02)
    scale, bias = np.asarray(model.scale.get_value()), np.asarray(model.bias.get_value())
    # 64 draws of N(1, 0.02^2) and N(0, 0.02^2): means within 0.02 (about 8 sigma).
    assert abs(scale.mean() - 1) < 0.02 and abs(bias.mean()) < 0.02 and bias.std() > 0


def test_unknown_preset_lists_the_valid_ones():
    with pytest.raises(ValueError, match="dit_dh"):
        tiny_model("dti")
