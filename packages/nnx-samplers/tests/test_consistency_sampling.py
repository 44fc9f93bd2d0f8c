"""Few-step consistency sampling and DMD2's backward simulation.

A denoiser that always answers the same image ``C`` (an exact consistency function of a
point mass at ``C``) makes every re-noised state exactly ``alpha(t) C + sigma(t) scale eps``:
its standardised residual must be standard normal, and the sample must be ``C``.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nnx_samplers import (
    SCM_TWO_STEP_MID_T,
    GVPPath,
    LinearPath,
    backward_simulation,
    consistency_sample,
    uniform_step_times,
)

C = jnp.asarray([[0.5, -0.25, 0.75]])


class _Counting:
    """The point-mass denoiser, counting its calls (NFE)."""

    def __init__(self):
        self.calls = []

    def __call__(self, x_t, t):
        self.calls.append(t)
        return jnp.broadcast_to(C, x_t.shape)


def _key(seed):
    return jax.random.key(seed, impl="rbg")


@pytest.mark.parametrize("times", [(1.0,), (1.0, SCM_TWO_STEP_MID_T), uniform_step_times(4)])
def test_sample_uses_one_evaluation_per_time(times):
    denoise = _Counting()
    noise = jax.random.normal(_key(0), (5, 3))
    out = consistency_sample(denoise, noise, times=times, key=_key(1))
    np.testing.assert_array_equal(np.asarray(out), np.broadcast_to(np.asarray(C), (5, 3)))
    assert [float(t[0]) for t in denoise.calls] == pytest.approx(list(times))


def test_first_state_is_the_scaled_noise():
    seen = []
    noise = jax.random.normal(_key(2), (4, 3))
    consistency_sample(
        lambda x, t: seen.append(x) or x,
        noise,
        times=(1.0,),
        key=_key(3),
        path=GVPPath(),
        noise_scale=0.5,
    )
    # TrigFlow at s = pi/2: x = sin(pi/2) * sigma_d * eps (float32 cos(pi/2) ~ 4e-8).
    np.testing.assert_allclose(np.asarray(seen[0]), 0.5 * np.asarray(noise), atol=1e-6)


@pytest.mark.parametrize("path,scale", [(LinearPath(), 1.0), (GVPPath(), 0.5)])
def test_backward_simulation_states_are_renoised_generator_outputs(path, scale):
    times = uniform_step_times(4)
    noise = jax.random.normal(_key(4), (20_000, 3))
    x_t, t = backward_simulation(
        _Counting(), noise, times=times, key=_key(5), path=path, noise_scale=scale
    )
    t = np.asarray(t)
    assert set(np.round(t, 6)) == set(np.round(times, 6))
    # Each step is drawn about 5000 times; all four appear with frequency 0.25 +- 0.02
    # (binomial sd 0.003).
    freqs = np.asarray([np.mean(np.isclose(t, s)) for s in times])
    np.testing.assert_allclose(freqs, 0.25, atol=0.02)
    alpha = np.asarray(path.alpha(jnp.asarray(t)))[:, None]
    sigma = np.asarray(path.sigma(jnp.asarray(t)))[:, None]
    z = (np.asarray(x_t) - alpha * np.asarray(C)) / (sigma * scale)
    # 60k standard normal values: mean within 0.02 (sd 0.004) and deviation within 0.02.
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1.0) < 0.02
    # The first step's state is the starting noise itself.
    first = np.isclose(t, 1.0)
    np.testing.assert_allclose(z[first], np.asarray(noise)[first], atol=1e-5)


def test_backward_simulation_has_no_gradient():
    noise = jax.random.normal(_key(6), (8, 3))

    def total(scale):
        x_t, _ = backward_simulation(lambda x, t: scale * x, noise, times=(1.0, 0.5), key=_key(7))
        return jnp.sum(x_t)

    assert float(jax.grad(total)(2.0)) == 0.0


def test_two_step_mid_time_is_scm_angle():
    assert pytest.approx(2 * 1.1 / math.pi) == SCM_TWO_STEP_MID_T
    assert uniform_step_times(2) == (1.0, 0.5)


@pytest.mark.parametrize("times", [(), (0.5, 1.0), (1.0, 0.0), (1.2,)])
def test_bad_times_are_rejected(times):
    with pytest.raises(ValueError, match="times"):
        consistency_sample(lambda x, t: x, jnp.zeros((1, 3)), times=times, key=_key(0))
