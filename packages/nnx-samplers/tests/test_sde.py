"""Stochastic samplers reproduce the Gaussian mixture's moments and mode weights.

8192 samples each. For every statistic the test computes its Monte Carlo standard error
from the samples themselves and requires the deviation from the exact value to stay under
4 standard errors (a false alarm has probability < 1e-4 per statistic; 9 statistics per
sampler). The step counts make the discretisation bias small next to that: measured
|z| <= 1.6 with these settings. Mode weights are checked through the mean posterior
responsibility, whose expectation under the exact distribution is exactly the weight.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx_samplers as ns

NUM_SAMPLES = 8192
MAX_Z = 4.0


def _z_scores(samples, responsibilities, mixture):
    samples = np.asarray(samples, np.float64)
    responsibilities = np.asarray(responsibilities, np.float64)
    n = samples.shape[0]
    mean = samples.mean(0)
    centred = samples - mean
    products = (centred[:, :, None] * centred[:, None, :]).reshape(n, -1)
    covariance = products.mean(0).reshape(2, 2) * n / (n - 1)
    return {
        "mean": (mean - np.asarray(mixture.mean())) / (samples.std(0) / math.sqrt(n)),
        "covariance": (covariance - np.asarray(mixture.covariance()))
        / (products.std(0).reshape(2, 2) / math.sqrt(n)),
        "weights": (responsibilities.mean(0) - np.asarray(mixture.weights))
        / (responsibilities.std(0) / math.sqrt(n)),
    }


def _sample_and_responsibilities(mixture, solver, grid, x, key, field=None):
    field = mixture.velocity if field is None else field
    samples = ns.sample(field, x, solver, grid, key=key).sample
    return samples, mixture.responsibilities(samples)


CASES = {
    # SiT's headline SDE: D(t) = sigma(t) = t, 250 steps (SiT's default count).
    "euler_maruyama_sigma": (ns.EulerMaruyama(), ns.UniformGrid(250)),
    # The linear-KL coefficient, infinite at t = 1, capped at t = 0.96.
    "euler_maruyama_sbdm": (ns.EulerMaruyama(ns.SBDMDiffusion()), ns.UniformGrid(250)),
    # EDM's churn (ImageNet-64 values but s_noise 1: inflation would bias the variance).
    "edm_churn": (ns.EDMStochastic(s_churn=40.0, s_tmin=0.05, s_tmax=50.0), ns.EDMGrid(64)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_sde_sampler_matches_mixture(name, mixture):
    solver, grid = CASES[name]
    t_start = float(grid.times()[0])
    noise = np.random.default_rng(1).standard_normal((NUM_SAMPLES, 2))
    x_start = jnp.asarray(t_start * noise, jnp.float32)
    key_sampler = jax.random.key(2)
    run = jax.jit(lambda x, key: _sample_and_responsibilities(mixture, solver, grid, x, key))
    samples, responsibilities = run(x_start, key_sampler)
    assert np.all(np.isfinite(np.asarray(samples)))
    for statistic, z in _z_scores(samples, responsibilities, mixture).items():
        assert np.all(np.abs(z) < MAX_Z), f"{name}: {statistic} z-scores {z}"


def test_z_scores_detect_a_wrong_score_sign(mixture):
    """The check above can fail: flipping the score term's sign (a Langevin step that pushes
    mass away) must be caught, here through the covariance."""

    def flipped(x, t):
        v = mixture.velocity(x, t)
        score = ns.score_from_velocity(x, v, t)
        return v - 2.0 * t * score  # EM then integrates v + D score with D = t

    x_start = jnp.asarray(np.random.default_rng(3).standard_normal((NUM_SAMPLES, 2)), jnp.float32)
    solver, grid = ns.EulerMaruyama(), ns.UniformGrid(100)
    run = jax.jit(
        lambda x, key: _sample_and_responsibilities(mixture, solver, grid, x, key, flipped)
    )
    z = _z_scores(*run(x_start, jax.random.key(4)), mixture)
    assert np.max(np.abs(z["covariance"])) > 10 * MAX_Z


def test_euler_maruyama_first_and_last_steps_stay_finite(mixture):
    """SBDM's D(t) = t / (1 - t) is infinite at t = 1; the first step must still be finite,
    and the step to t = 0 must add no noise (the same key twice gives the same sample, and
    a different key in the last step alone changes nothing)."""
    solver = ns.EulerMaruyama(ns.SBDMDiffusion())
    x = jnp.asarray(np.random.default_rng(5).standard_normal((64, 2)), jnp.float32)
    times = ns.UniformGrid(10).times()
    step = jax.jit(lambda t, t_next, key: solver.step(mixture.velocity, x, (), t, t_next, key)[0])
    first = step(times[0], times[1], jax.random.key(6))
    assert np.all(np.isfinite(np.asarray(first)))
    last_a = step(times[-2], times[-1], jax.random.key(7))
    last_b = step(times[-2], times[-1], jax.random.key(8))
    np.testing.assert_array_equal(np.asarray(last_a), np.asarray(last_b))
    # ... while an interior step does depend on the key.
    mid_a = step(times[4], times[5], jax.random.key(7))
    mid_b = step(times[4], times[5], jax.random.key(8))
    assert np.max(np.abs(np.asarray(mid_a) - np.asarray(mid_b))) > 1e-2


def test_diffusion_coefficients_in_our_time():
    """SiT's coefficients after t_SiT = 1 - t, at t = 0.25 on the linear path (exact forms)."""
    t = jnp.asarray(0.25)
    np.testing.assert_allclose(ns.ConstantDiffusion(2.0)(t), 2.0)
    np.testing.assert_allclose(ns.SigmaDiffusion()(t), 0.25)
    np.testing.assert_allclose(ns.LinearDiffusion()(t), 0.25)
    np.testing.assert_allclose(ns.SBDMDiffusion()(t), 0.25**2 / 0.75 + 0.25, rtol=1e-6)
    np.testing.assert_allclose(ns.SBDMDiffusion()(jnp.asarray(1.0)), 0.96 / 0.04, rtol=1e-5)
    np.testing.assert_allclose(
        ns.DecreasingDiffusion()(t), 0.25 * (1 - math.cos(math.pi * 0.25)) ** 2, rtol=1e-6
    )
    np.testing.assert_allclose(ns.DecreasingDiffusion()(jnp.asarray(1.0)), 1.0, rtol=1e-6)
    np.testing.assert_allclose(
        ns.IncreasingDecreasingDiffusion()(t), math.sin(math.pi * 0.25) ** 2, rtol=1e-6
    )


def test_stochastic_solvers_require_a_key(mixture):
    x = jnp.zeros((2, 2))
    with pytest.raises(ValueError, match="key="):
        ns.sample(mixture.velocity, x, ns.EulerMaruyama(), ns.UniformGrid(4))
    with pytest.raises(ValueError, match="key="):
        ns.sample(mixture.velocity, x, ns.EDMStochastic(s_churn=1.0), ns.EDMGrid(4))


def test_edm_sampler_rejects_a_grid_starting_at_one(mixture):
    with pytest.raises(ValueError, match="starts below t = 1"):
        ns.sample(mixture.velocity, jnp.zeros((2, 2)), ns.EDMStochastic(), ns.UniformGrid(4))
