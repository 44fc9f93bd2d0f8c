"""Prediction <-> velocity conversions against closed forms, and the EDM change of variables."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx_samplers as ns

# float32 throughout; the conversions divide by alpha, sigma or 1 - t, which stay >= 0.1 on
# the times used here, so a few ulps of float32 (1e-7) grow to at most ~1e-5.
RTOL, ATOL = 1e-4, 2e-5

TIMES = [0.1, 0.35, 0.6, 0.9]


@pytest.fixture(scope="module")
def points():
    # numpy randomness: jax.random would add an XLA compilation to every test.
    return jnp.asarray(1.5 * np.random.default_rng(0).standard_normal((128, 2)), jnp.float32)


def _normal(seed, shape):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def test_adapters_recover_the_exact_velocity(mixture, points):
    def edm_denoiser(x_edm, sigma):
        # The mixture's posterior mean written in EDM variables: D(x_E, sigma_E).
        return mixture.data(x_edm / (1 + sigma), sigma / (1 + sigma))

    @jax.jit
    def velocities(t):
        return {
            "exact": mixture.velocity(points, t),
            "noise": ns.VelocityFromNoise(mixture.noise)(points, t),
            "x0": ns.VelocityFromData(mixture.data)(points, t),
            "score": ns.VelocityFromScore(lambda x, t: -mixture.noise(x, t) / t)(points, t),
            "edm": ns.VelocityFromEDMDenoiser(edm_denoiser)(points, t),
        }

    for t in TIMES:
        out = velocities(jnp.asarray(t))
        for name in ("noise", "x0", "score", "edm"):
            np.testing.assert_allclose(
                out[name], out["exact"], rtol=RTOL, atol=ATOL, err_msg=f"{name} at t={t}"
            )


def test_predictions_from_velocity(mixture, points):
    @jax.jit
    def predictions(t):
        v = mixture.velocity(points, t)
        return {
            "data": (ns.data_from_velocity(points, v, t), mixture.data(points, t)),
            "noise": (ns.noise_from_velocity(points, v, t), mixture.noise(points, t)),
            # Linear path: score = -(x + (1 - t) v) / t.
            "score": (ns.score_from_velocity(points, v, t), -(points + (1 - t) * v) / t),
        }

    for t in TIMES:
        for name, (value, exact) in predictions(jnp.asarray(t)).items():
            np.testing.assert_allclose(value, exact, rtol=RTOL, atol=ATOL, err_msg=f"{name} {t}")


@pytest.mark.parametrize("path", [ns.LinearPath(), ns.GVPPath()], ids=["linear", "cosine"])
def test_generic_path_round_trip(path):
    @jax.jit
    def round_trip(x0, eps, t):
        tt = t[:, None]
        x = path.alpha(tt) * x0 + path.sigma(tt) * eps
        v = path.d_alpha(tt) * x0 + path.d_sigma(tt) * eps
        return {
            "x0": (ns.data_from_velocity(x, v, t, path), x0),
            "eps": (ns.noise_from_velocity(x, v, t, path), eps),
            "v from x0": (ns.velocity_from_data(x, x0, t, path), v),
            "v from eps": (ns.velocity_from_noise(x, eps, t, path), v),
            "v from score": (ns.velocity_from_score(x, -eps / path.sigma(tt), t, path), v),
        }

    for name, (value, exact) in round_trip(
        _normal(1, (64, 3)), _normal(2, (64, 3)), jnp.linspace(0.1, 0.9, 64)
    ).items():
        np.testing.assert_allclose(value, exact, rtol=RTOL, atol=ATOL, err_msg=name)


def test_cosine_path_derivatives_and_log_snr():
    """alpha', sigma' are the derivatives of alpha, sigma; t_from_log_snr inverts lambda."""
    path = ns.GVPPath()

    @jax.jit
    def check(t):
        return (
            (jax.vmap(jax.grad(path.alpha))(t), path.d_alpha(t)),
            (jax.vmap(jax.grad(path.sigma))(t), path.d_sigma(t)),
            (path.t_from_log_snr(ns.log_snr(path, t)), t),
            ns.log_snr(path, jnp.asarray(1.0)),
        )

    *pairs, log_snr_at_noise = check(jnp.linspace(0.05, 0.95, 7))
    for value, exact in pairs:
        np.testing.assert_allclose(value, exact, rtol=1e-5)
    assert float(log_snr_at_noise) == -np.inf  # not NaN although cos(pi/2) < 0 in float32


def test_edm_change_of_variables():
    """x_t = (1 - t) x0 + t eps  <=>  x_E = x0 + sigma_E eps with sigma_E = t / (1 - t)."""

    @jax.jit
    def convert(x0, eps):
        t = jnp.linspace(0.05, 0.95, 16)
        x_t = (1 - t[:, None]) * x0 + t[:, None] * eps
        x_edm, sigma = ns.edm_from_linear(x_t, t)
        back, t_back = ns.linear_from_edm(x_edm, sigma)
        return {
            "sigma": (sigma, t / (1 - t)),
            "x_edm": (x_edm, x0 + sigma[:, None] * eps),
            "x_t": (back, x_t),
            "t": (t_back, t),
            "t(inf), t(0)": (
                ns.t_from_edm_sigma(jnp.asarray([jnp.inf, 0.0])),
                jnp.asarray([1.0, 0.0]),
            ),
        }

    for name, (value, exact) in convert(_normal(3, (16, 4)), _normal(4, (16, 4))).items():
        np.testing.assert_allclose(value, exact, rtol=RTOL, atol=ATOL, err_msg=name)


def test_edm_score_sign(mixture, points):
    """The seed (willisma/diffuse_nnx) had the EDM score's sign wrong. In EDM variables the score
    is (D - x_E) / sigma_E^2; by the chain rule the linear-path score is that over 1 - t."""

    @jax.jit
    def scores(t):
        x_edm, sigma = ns.edm_from_linear(points, t)
        edm_score = (mixture.data(points, t) - x_edm) / sigma**2
        linear_score = ns.score_from_velocity(points, mixture.velocity(points, t), t)
        return edm_score / (1 - t), linear_score

    for t in TIMES:
        edm_score, linear_score = scores(jnp.asarray(t))
        np.testing.assert_allclose(edm_score, linear_score, rtol=RTOL, atol=ATOL, err_msg=str(t))
