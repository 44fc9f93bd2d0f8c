"""The precision policy and the remat policies of the DiT family (`nnx_nets.precision`).

- the float32 policy is today's network (the default, bit for bit the same as naming it);
- the bfloat16 policy keeps float32 parameters and output, runs the token stream in bfloat16,
  and stays within a stated relative error of the float32 network on random weights;
- remat policies change what the backward pass stores, not the numbers;
- attention picks cuDNN only on a GPU with half-precision inputs.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nnx_nets import (
    DiT,
    DiTDH,
    LightningDiT,
    MeanFlowDiT,
    Precision,
    remat_policy,
    resolve_precision,
)
from nnx_nets.attention import attention_implementation
from nnx_nets.testing import TINY_PRESETS, random_model

FAMILY = ["dit", "lightning_dit", "meanflow_dit", "dit_dh"]


def _inputs(model, seed=1):
    rng = np.random.default_rng(seed)
    size = model.input_size
    x = jnp.asarray(rng.standard_normal((2, size, size, model.in_channels)), jnp.float32)
    return x, jnp.array([0.3, 0.8]), jnp.array([1, 4])


def _forward(model, x, t, y):
    if isinstance(model, MeanFlowDiT):
        return model(x, 0.5 * t, t, y)
    return model(x, t, y)


def _tiny(name, seed=0, **overrides):
    cls, kwargs = TINY_PRESETS[name]
    return random_model(lambda: cls(**(kwargs | overrides), rngs=nnx.Rngs(0)), seed, scale="fan_in")


def test_names_resolve_to_policies_and_bad_names_fail():
    assert resolve_precision("float32") == Precision.float32() == Precision()
    mixed = resolve_precision("bfloat16")
    assert mixed.param_dtype == jnp.float32
    assert mixed.compute_dtype == mixed.residual_dtype == jnp.bfloat16
    assert resolve_precision(jnp.bfloat16) == mixed and not mixed.is_float32
    with pytest.raises(ValueError, match="unknown precision 'float64'; valid: a Precision"):
        resolve_precision("float64")
    assert remat_policy(True) == "full" and remat_policy(False) == "none"
    with pytest.raises(ValueError, match="unknown remat policy 'some'; valid: none, dots_sav"):
        remat_policy("some")


@pytest.mark.parametrize("name", FAMILY)
def test_float32_policy_is_the_default_network_bit_for_bit(name):
    default, named = _tiny(name), _tiny(name, precision=Precision.float32())
    x, t, y = _inputs(default)
    np.testing.assert_array_equal(_forward(named, x, t, y), _forward(default, x, t, y))


@pytest.mark.parametrize("name", FAMILY)
def test_bfloat16_policy_is_close_to_float32_with_float32_params(name):
    ref_model, bf16 = _tiny(name), _tiny(name, precision="bfloat16")
    x, t, y = _inputs(ref_model)
    ref, out = _forward(ref_model, x, t, y), _forward(bf16, x, t, y)
    assert out.dtype == jnp.float32 and float(jnp.abs(ref).max()) > 0
    assert {leaf.dtype for leaf in jax.tree.leaves(nnx.state(bf16, nnx.Param))} == {
        jnp.dtype("float32")
    }
    # bfloat16 rounds to 2^-9 relative (8-bit mantissa): every matmul input and the token
    # stream are rounded, about ten roundings deep through two blocks of fan-in-scaled random
    # weights. Measured relative L2 errors (jax 0.10.2, CPU): DiT 0.0068, LightningDiT 0.0059,
    # MeanFlowDiT 0.0086, DiT-DH 0.0056. Bound 0.02 (2.3x the largest); the error must also
    # be non-zero, or the bfloat16 path silently computed in float32.
    rel = float(jnp.linalg.norm(out - ref) / jnp.linalg.norm(ref))
    assert 0 < rel < 0.02, rel


@pytest.mark.parametrize("remat", ["dots_saveable", "full"])
def test_remat_policies_change_memory_not_numbers(remat):
    base = _tiny("dit", scan_blocks=True)
    other = _tiny("dit", scan_blocks=True, remat=remat)
    x, t, y = _inputs(base)

    def loss_grad(model):
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        loss = lambda p: jnp.mean(nnx.merge(graphdef, p, rest)(x, t, y) ** 2)  # noqa: E731
        return jax.value_and_grad(loss)(params)

    (loss_a, grads_a), (loss_b, grads_b) = loss_grad(base), loss_grad(other)
    # Recomputation repeats the same float32 operations; XLA may fuse them differently, so
    # allow float32 round-off (1e-6 relative) rather than demanding identical bits.
    np.testing.assert_allclose(loss_b, loss_a, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(grads_a), jax.tree.leaves(grads_b)):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("cls", [DiT, LightningDiT, MeanFlowDiT, DiTDH])
def test_every_family_member_takes_the_policy_and_the_remat_name(cls):
    name = {DiT: "dit", LightningDiT: "lightning_dit", MeanFlowDiT: "meanflow_dit"}.get(cls)
    _, kwargs = TINY_PRESETS[name or "dit_dh"]
    model = nnx.eval_shape(
        lambda: cls(**kwargs, precision="bfloat16", remat="dots_saveable", rngs=nnx.Rngs(0))
    )
    assert model.precision == Precision.mixed() and model.remat == "dots_saveable"


def test_attention_uses_cudnn_only_on_gpu_with_half_precision(monkeypatch):
    assert attention_implementation(jnp.bfloat16, 64) == "xla"  # on this CPU
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert attention_implementation(jnp.bfloat16, 72) == "cudnn"  # DiT-XL: 1152 / 16 heads
    assert attention_implementation(jnp.float16, 64) == "cudnn"
    assert attention_implementation(jnp.float32, 64) == "xla"  # cuDNN has no float32 kernel
    assert attention_implementation(jnp.bfloat16, 256) == "xla"  # head width past cuDNN's
