"""The VP path (SiT ``VPCPlan``, the VP-SDE of Song et al. 2021) against its closed form."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import nnx_samplers as ns

BETA_MIN, BETA_MAX = 0.1, 20.0
# Away from t = 0, where sigma' is infinite (SiT keeps VP times in [1e-5, 1]).
TIMES = np.linspace(0.05, 1.0, 20)


def _closed_form(t: np.ndarray) -> dict[str, np.ndarray]:
    """float64 reference: alpha = exp(-t^2 (b1 - b0) / 4 - t b0 / 2), sigma = sqrt(1 - alpha^2)."""
    alpha = np.exp(-0.25 * t**2 * (BETA_MAX - BETA_MIN) - 0.5 * t * BETA_MIN)
    sigma = np.sqrt(1.0 - alpha**2)
    beta = BETA_MIN + t * (BETA_MAX - BETA_MIN)
    d_alpha = -0.5 * beta * alpha
    return {
        "alpha": alpha,
        "sigma": sigma,
        "d_alpha": d_alpha,
        "d_sigma": -alpha * d_alpha / sigma,
        "log_snr": np.log(alpha / sigma),
        # the VP-SDE's g(t)^2 / 2 = beta(t) / 2 (Song et al. 2021, Eq. 32 ff.)
        "score_coefficient": 0.5 * beta,
    }


def test_vp_path_matches_its_closed_form():
    path = ns.VPPath()
    t = jnp.asarray(TIMES, jnp.float32)
    got = {
        "alpha": path.alpha(t),
        "sigma": path.sigma(t),
        "d_alpha": path.d_alpha(t),
        "d_sigma": path.d_sigma(t),
        "log_snr": ns.log_snr(path, t),
        "score_coefficient": ns.score_coefficient(path, t),
    }
    exact = _closed_form(TIMES)
    for name, value in got.items():
        # float32 against float64: exp / sqrt / expm1 are within a few ulps (1e-7 relative);
        # d_sigma and the score coefficient divide by sigma >= 0.2 here, so 1e-5 is ample.
        np.testing.assert_allclose(value, exact[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_vp_path_derivatives_and_log_snr_inverse():
    """alpha', sigma' are the derivatives of alpha, sigma; t_from_log_snr inverts lambda."""
    path = ns.VPPath()
    t = jnp.asarray(TIMES[:-1], jnp.float32)
    # Autodiff and the closed form round differently: 1e-5 relative, and 1e-6 absolute where
    # sigma' falls to 1e-3 near t = 1 (float32 cancellation in the chain rule through expm1).
    for value, derivative in ((path.alpha, path.d_alpha), (path.sigma, path.d_sigma)):
        np.testing.assert_allclose(
            jax.vmap(jax.grad(value))(t), derivative(t), rtol=1e-5, atol=1e-6
        )
    # lambda changes by ~10 over [0.05, 1] and float32 log carries ~1e-7 relative error.
    np.testing.assert_allclose(path.t_from_log_snr(ns.log_snr(path, t)), t, rtol=1e-5)
    # beta_min == beta_max: the quadratic degenerates to a line and must stay finite.
    flat = ns.VPPath(beta_min=1.0, beta_max=1.0)
    np.testing.assert_allclose(flat.t_from_log_snr(ns.log_snr(flat, t)), t, rtol=1e-5)


def test_vp_velocity_from_noise_is_exact():
    """An exact noise predictor on the VP path gives the exact conditional velocity."""
    rng = np.random.default_rng(0)
    x0 = jnp.asarray(rng.standard_normal((8, 3)), jnp.float32)
    eps = jnp.asarray(rng.standard_normal((8, 3)), jnp.float32)
    path = ns.VPPath()
    t = jnp.linspace(0.1, 0.8, 8)
    x = ns.interpolate(path, x0, eps, t)
    field = ns.VelocityFromNoise(lambda x_t, t_: eps, path)
    # alpha >= 0.04 on [0.1, 0.8]: dividing by it turns float32 rounding (1e-7) into <= 1e-5.
    np.testing.assert_allclose(
        field(x, t), ns.conditional_velocity(path, x0, eps, t), rtol=1e-4, atol=1e-4
    )


def test_vp_log_snr_grid_is_monotone_in_time():
    """LogSNRGrid accepts the VP path: times fall from 1 to 0 with lambda uniform between."""
    times = np.asarray(ns.LogSNRGrid(6, -4.0, 4.0, path=ns.VPPath()).times())
    assert times[0] > times[1] > times[-2] > times[-1] == 0.0
    lambdas = np.asarray(ns.log_snr(ns.VPPath(), jnp.asarray(times[:-1])))
    np.testing.assert_allclose(np.diff(lambdas), np.diff(lambdas)[0], rtol=1e-3)
