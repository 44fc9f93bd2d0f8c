"""Paths, predictions and SiT's weights: conversions, derivatives and SiT's own formulas."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nnx_objectives import (
    GVPPath,
    InterpolantObjective,
    LikelihoodWeight,
    LinearPath,
    NoisePrediction,
    NoWeight,
    ScorePrediction,
    VelocityPrediction,
    VelocityWeight,
    VPPath,
    X0Prediction,
    conditional_velocity,
    convert_prediction,
    interpolate,
    score_coefficient,
)

PATHS = {"linear": LinearPath(), "gvp": GVPPath(), "vp": VPPath()}
PREDICTIONS = {
    "velocity": VelocityPrediction(),
    "noise": NoisePrediction(),
    "score": ScorePrediction(),
    "x0": X0Prediction(),
}


def _truth(path, x0, eps, t, x_t):
    """Each prediction's true value written from its definition, not through the library."""
    te = t[:, None]
    sigma = np.asarray(path.sigma(te))
    return {
        "velocity": np.asarray(path.d_alpha(te)) * x0 + np.asarray(path.d_sigma(te)) * eps,
        "noise": eps,
        "score": -eps / sigma,
        "x0": x0,
    }


@pytest.mark.parametrize("path_name", PATHS)
def test_every_conversion_agrees_on_random_data(path_name, jit):
    path = PATHS[path_name]
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal((64, 3)).astype(np.float32)
    eps = rng.standard_normal((64, 3)).astype(np.float32)
    # Away from the ends, where noise/score conversions divide by alpha or sigma.
    t = np.linspace(0.05, 0.95, 64).astype(np.float32)
    x_t = x0 * np.asarray(path.alpha(t[:, None])) + eps * np.asarray(path.sigma(t[:, None]))
    truth = _truth(path, x0, eps, t, x_t)
    pairs = list(itertools.product(PREDICTIONS, PREDICTIONS))

    @jit
    def convert_all(truth, x_t, t):
        return [
            convert_prediction(
                truth[source],
                source=PREDICTIONS[source],
                target=PREDICTIONS[target],
                path=path,
                x_t=x_t,
                t=t,
            )
            for source, target in pairs
        ]

    converted = convert_all(truth, jnp.asarray(x_t), jnp.asarray(t))
    for (source, target), value in zip(pairs, converted, strict=True):
        # float32 round trip through a 2x2 solve whose entries are O(1) to O(20) (VP's
        # alpha'/sigma' at t = 0.05, score = eps / sigma): relative 1e-4 covers it.
        np.testing.assert_allclose(
            value,
            truth[target],
            rtol=1e-4,
            atol=1e-4 * np.abs(truth[target]).max(),
            err_msg=f"{source} -> {target} on {path_name}",
        )


def test_linear_path_closed_forms(jit):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 4)).astype(np.float32)
    v = rng.standard_normal((5, 4)).astype(np.float32)
    t = np.array([0.1, 0.3, 0.5, 0.7, 0.9], np.float32)
    tt = t[:, None]

    @jit
    def from_velocity(v, x, t):
        kwargs = {"path": LinearPath(), "x_t": x, "t": t, "source": VelocityPrediction()}
        return [
            convert_prediction(v, target=target, **kwargs)
            for target in (X0Prediction(), NoisePrediction(), ScorePrediction())
        ]

    x0_hat, eps_hat, score_hat = from_velocity(v, x, t)
    # Linear path (SiT, Ma et al. 2024):
    # x0 = x - t v, eps = x + (1 - t) v, score = -(x + (1 - t) v) / t.
    np.testing.assert_allclose(x0_hat, x - tt * v, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(eps_hat, x + (1 - tt) * v, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(score_hat, -(x + (1 - tt) * v) / tt, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("path_name", PATHS)
def test_derivatives_match_autodiff_and_endpoints(path_name, jit):
    path = PATHS[path_name]
    t = np.linspace(0.02, 0.98, 25).astype(np.float32)

    @jit
    def both(t):
        pairs = [
            (derivative(t), jax.vmap(jax.grad(value))(t))
            for value, derivative in ((path.alpha, path.d_alpha), (path.sigma, path.d_sigma))
        ]
        ends = jnp.asarray([0.0, 1.0])
        return pairs, path.alpha(ends), path.sigma(ends)

    pairs, alpha_ends, sigma_ends = both(t)
    for closed_form, autodiff in pairs:
        # float32 derivative of exp/sqrt/cos expressions: 2e-5 relative.
        np.testing.assert_allclose(closed_form, autodiff, rtol=2e-5, atol=2e-5)
    # t = 0 is data and t = 1 is noise (VP reaches alpha(1) = exp(-5.025) = 0.00657 only).
    np.testing.assert_allclose(alpha_ends[0], 1.0, atol=1e-7)
    np.testing.assert_allclose(sigma_ends[0], 0.0, atol=1e-7)
    assert float(alpha_ends[1]) < 0.007 and float(sigma_ends[1]) > 0.99997


def test_vp_path_matches_sit_in_sit_time(jit):
    """SiT's VPCPlan in its own time (t_SiT = 1 - t), written out independently."""
    beta_min, beta_max = 0.1, 20.0
    t = np.linspace(0.01, 0.99, 11)
    t_sit = 1.0 - t
    log_mean = -0.25 * (1 - t_sit) ** 2 * (beta_max - beta_min) - 0.5 * (1 - t_sit) * beta_min
    alpha_sit = np.exp(log_mean)
    sigma_sit = np.sqrt(1 - alpha_sit**2)
    path = VPPath()
    alpha, sigma = jit(lambda t: (path.alpha(t), path.sigma(t)))(t.astype(np.float32))
    np.testing.assert_allclose(alpha, alpha_sit, rtol=1e-5)
    np.testing.assert_allclose(sigma, sigma_sit, rtol=1e-5)


@pytest.mark.parametrize("path_name", PATHS)
def test_weights_equal_sits_drift_var_formula(path_name, jit):
    """SiT: drift_var = (d_alpha/alpha) sigma^2 - sigma d_sigma in its time (t_SiT = 1 - t).

    Velocity weight (drift_var / sigma)^2, likelihood weight drift_var / sigma^2. SiT's
    derivatives are taken in t_SiT, so each is minus ours; evaluated by central differences
    of SiT's alpha and sigma in float64 (independent of the library's derivatives).
    """
    path = PATHS[path_name]
    t = np.linspace(0.05, 0.95, 19)

    t_sit, h = 1.0 - t, 1e-3
    # SiT's alpha(t_SiT) = alpha(1 - t_SiT) of ours, at t_SiT and t_SiT +- h in one call.
    grid = np.concatenate([1.0 - t_sit, 1.0 - (t_sit + h), 1.0 - (t_sit - h)]).astype(np.float32)

    @jit
    def evaluate(grid, t):
        return (
            path.alpha(grid),
            path.sigma(grid),
            score_coefficient(path, t),
            VelocityWeight()(path, t),
            LikelihoodWeight()(path, t),
            NoWeight()(path, t),
        )

    alpha, sigma, coefficient, velocity_w, likelihood_w, no_w = (
        np.asarray(a, np.float64) for a in evaluate(grid, t.astype(np.float32))
    )
    (a, a_plus, a_minus), (s, s_plus, s_minus) = np.split(alpha, 3), np.split(sigma, 3)
    drift_var = (a_plus - a_minus) / (2 * h) / a * s**2 - s * (s_plus - s_minus) / (2 * h)
    # Central differences with h = 1e-3 on float32 values: ~1e-3 relative error.
    np.testing.assert_allclose(coefficient, drift_var, rtol=3e-3)
    np.testing.assert_allclose(velocity_w, (drift_var / s) ** 2, rtol=6e-3)
    np.testing.assert_allclose(likelihood_w, drift_var / s**2, rtol=3e-3)
    np.testing.assert_array_equal(no_w, np.ones_like(t))


@pytest.mark.parametrize("path_name", PATHS)
def test_noise_loss_with_velocity_weight_is_the_velocity_loss(path_name, jit):
    """(g / sigma)^2 ||eps_hat - eps||^2 == ||v_hat - v||^2 with v_hat converted from eps_hat."""
    path = PATHS[path_name]
    rng = np.random.default_rng(2)
    x0, eps, eps_hat = (rng.standard_normal((32, 6)).astype(np.float32) for _ in range(3))
    t = np.linspace(0.05, 0.95, 32).astype(np.float32)
    noise_objective = InterpolantObjective(
        path=path, prediction=NoisePrediction(), weight=VelocityWeight()
    )

    @jit
    def two_ways(x0, eps, eps_hat, t):
        weighted, _ = noise_objective.loss_from_output(eps_hat, x0, eps, t)
        x_t = interpolate(path, x0, eps, t)
        v_hat = convert_prediction(
            eps_hat,
            source=NoisePrediction(),
            target=VelocityPrediction(),
            path=path,
            x_t=x_t,
            t=t,
        )
        return weighted, jnp.mean((v_hat - conditional_velocity(path, x0, eps, t)) ** 2, axis=1)

    weighted, velocity_loss = two_ways(x0, eps, eps_hat, t)
    # Same quantity computed two ways in float32; VP's weight reaches ~10^2 at t = 0.95.
    np.testing.assert_allclose(weighted, velocity_loss, rtol=2e-4)
    assert math.isfinite(float(jnp.sum(weighted)))
