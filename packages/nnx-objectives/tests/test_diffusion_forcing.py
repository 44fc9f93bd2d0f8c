"""Diffusion Forcing loss: independent per-frame times, zero for the exact per-frame field."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nnx_objectives import DiffusionForcingObjective

CLIP = np.linspace(-1.0, 1.0, 3 * 4 * 2 * 2).reshape(1, 3, 4, 2, 2).astype(np.float32)


def exact_velocity(x, t, y):
    """Point-mass data ``x0 = CLIP``: x_t = (1 - t) x0 + t eps, so v = eps - x0 = (x_t - x0)/t."""
    del y
    te = t[..., None, None, None]
    return (x - CLIP) / te


def test_exact_per_frame_field_has_zero_loss_and_a_shared_time_does_not():
    x0 = jnp.asarray(np.repeat(CLIP, 4, axis=0))
    objective = DiffusionForcingObjective()
    loss, aux = objective(exact_velocity, x0, jnp.zeros(4, jnp.int32), jax.random.key(0))
    # (x_t - x0)/t recovers eps - x0 up to float32 rounding divided by t >= ~1e-3 here.
    assert loss.shape == (4,) and float(jnp.max(loss)) < 1e-8

    def one_time(x, t, y):  # the clip's mean time for every frame: wrong for independent t
        return exact_velocity(x, jnp.broadcast_to(jnp.mean(t, 1, keepdims=True), t.shape), y)

    wrong, _ = objective(one_time, x0, jnp.zeros(4, jnp.int32), jax.random.key(0))
    assert float(jnp.min(wrong)) > 1e-3


def test_times_are_drawn_independently_per_frame():
    seen = {}

    def record(x, t, y):
        seen["t"] = t
        return jnp.zeros_like(x)

    x0 = jnp.zeros((512, 3, 2, 2, 1))
    DiffusionForcingObjective()(record, x0, jnp.zeros(512, jnp.int32), jax.random.key(1))
    t = np.asarray(seen["t"])
    assert t.shape == (512, 3)
    # Uniform(0, 1) per frame: across-frame correlation ~ N(0, 1/512); 0.15 is ~3.4 sigma.
    assert abs(np.corrcoef(t[:, 0], t[:, 1])[0, 1]) < 0.15
    assert abs(t.mean() - 0.5) < 0.03  # std of the mean of 1536 U(0,1): 0.0074


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="per-frame times"):
        DiffusionForcingObjective().loss_at(
            exact_velocity, jnp.asarray(CLIP), jnp.zeros(1, jnp.int32), jnp.ones((1,)), CLIP
        )
