"""Improved DDPM's hybrid objective against closed forms.

* the posterior ``q(x_{k-1} | x_k, x0)`` against Gaussian conditioning of the two-step chain
  ``x_{k-1} = sqrt(abar_{k-1}) x0 + sqrt(1 - abar_{k-1}) e1``, ``x_k = sqrt(alpha_k) x_{k-1} +
  sqrt(beta_k) e2`` (written here independently of the module's tables);
* the VB term: zero for the exact noise and the posterior variance, the Gaussian KL in closed
  form for the variance ``beta_k``, the exact Gaussian bin mass at ``k = 0``;
* the stop-gradient: the VB term trains only the variance channels.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nnx_objectives import DDPMSchedule, ImprovedDDPMObjective

SCHEDULE = DDPMSchedule()
OBJECTIVE = ImprovedDDPMObjective(SCHEDULE)
SHAPE = (4, 2, 2, 3)
AB = np.asarray(SCHEDULE.alphas_cumprod())  # float64


def _data(seed=0):
    rng = np.random.default_rng(seed)
    # Interior values of the 256-bin grid, away from the +-1 end bins.
    x0 = np.round(rng.uniform(-0.9, 0.9, SHAPE) * 127.5) / 127.5
    return jnp.asarray(x0, jnp.float32), jnp.asarray(rng.standard_normal(SHAPE), jnp.float32)


def _independent_posterior(x0, x_t, k):
    ab, ab_prev = AB[k], (AB[k - 1] if k > 0 else 1.0)
    alpha = ab / ab_prev
    gain = math.sqrt(alpha) * (1 - ab_prev) / (1 - ab)  # Cov(x_{k-1}, x_k) / Var(x_k)
    mean = math.sqrt(ab_prev) * x0 + gain * (x_t - math.sqrt(ab) * x0)
    var = (1 - ab_prev) - gain * math.sqrt(alpha) * (1 - ab_prev)
    return mean, var


@pytest.mark.parametrize("k", [1, 10, 500, 999])
def test_posterior_is_gaussian_conditioning(k):
    x0, eps = (np.asarray(a, np.float64) for a in _data())
    x_t = math.sqrt(AB[k]) * x0 + math.sqrt(1 - AB[k]) * eps
    steps = jnp.full((SHAPE[0],), k, jnp.int32)
    mean, log_var = OBJECTIVE.posterior(
        jnp.asarray(x0, jnp.float32), jnp.asarray(x_t, jnp.float32), steps
    )
    ref_mean, ref_var = _independent_posterior(x0, x_t, k)
    # float32 tables and arithmetic on O(1) values: 1e-5 absolute (measured 1.8e-7;
    # variance 2.6e-7 relative).
    np.testing.assert_allclose(np.asarray(mean), ref_mean, atol=1e-5)
    np.testing.assert_allclose(np.exp(np.asarray(log_var)), ref_var, rtol=1e-5)


def _oracle(eps, values):
    """A network that returns the true noise and constant variance values."""
    return lambda x_t, s, y: jnp.concatenate([eps, jnp.full_like(eps, values)], axis=-1)


# Small k: beta_tilde / beta = (1 - abar_{k-1}) / (1 - abar_k) is far from 1 only there.
@pytest.mark.parametrize("k", [1, 3, 10])
def test_vb_term_closed_forms(k):
    x0, eps = _data()
    y, steps = jnp.zeros((SHAPE[0],), jnp.int32), jnp.full((SHAPE[0],), k, jnp.int32)
    _, aux = OBJECTIVE.loss_at(_oracle(eps, -1.0), x0, y, steps, eps)
    # Exact noise, variance beta_tilde (v = -1): the model's p equals q. The mean is recovered
    # through x0_hat = (x_k - sqrt(1 - abar) eps) / sqrt(abar) in float32: measured 1.2e-11 bits.
    np.testing.assert_allclose(np.asarray(aux["mse"]), 0.0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(aux["vb"]), 0.0, atol=1e-6)

    _, aux = OBJECTIVE.loss_at(_oracle(eps, 1.0), x0, y, steps, eps)
    ab, ab_prev = AB[k], AB[k - 1]
    ratio = (1 - ab_prev) / (1 - ab)  # beta_tilde / beta
    expected = 0.5 * (-1 - math.log(ratio) + ratio) / math.log(2)  # KL(N(m, bt) || N(m, b))
    # float32 logs and ratios: measured 1.8e-6 relative.
    np.testing.assert_allclose(np.asarray(aux["vb"]), expected, rtol=1e-4)
    assert expected > 1e-3, expected  # a KL that could be told from zero


def test_decoder_nll_at_step_zero_is_the_bin_mass():
    x0, eps = _data()
    y, steps = jnp.zeros((SHAPE[0],), jnp.int32), jnp.zeros((SHAPE[0],), jnp.int32)
    _, aux = OBJECTIVE.loss_at(_oracle(eps, -1.0), x0, y, steps, eps)
    # k = 0: the model mean is x0 and its variance beta_tilde_1 (the clipped log-variance).
    std = math.sqrt((1 - AB[1] / AB[0]) * (1 - AB[0]) / (1 - AB[1]))
    cdf = lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2)))  # noqa: E731
    mass = cdf(1 / 255 / std) - cdf(-1 / 255 / std)
    # The upstream tanh approximation of Phi is within 2e-4; the mass is 0.40: 2e-3 bits
    # (measured 2.9e-4).
    np.testing.assert_allclose(np.asarray(aux["vb"]), -math.log2(mass), atol=2e-3)


def test_vb_term_trains_only_the_variance():
    x0, eps = _data()
    steps = jnp.asarray([0, 3, 400, 999], jnp.int32)
    ab = jnp.asarray(AB[np.asarray(steps)], jnp.float32)[:, None, None, None]
    x_t = jnp.sqrt(ab) * x0 + jnp.sqrt(1 - ab) * eps
    out = jnp.concatenate([0.7 * eps + 0.1, jnp.full_like(eps, 0.3)], axis=-1)

    def part(name, out):
        return jnp.sum(OBJECTIVE.loss_from_output(out, x0, eps, steps, x_t)[1][name])

    grad_vb = jax.grad(lambda o: part("vb", o))(out)
    grad_mse = jax.grad(lambda o: part("mse", o))(out)
    assert float(jnp.max(jnp.abs(grad_vb[..., :3]))) == 0.0
    assert float(jnp.min(jnp.abs(grad_vb[..., 3:]))) > 0.0
    assert float(jnp.max(jnp.abs(grad_mse[..., 3:]))) == 0.0


def test_call_draws_steps_and_refuses_eps_only_networks():
    x0, _ = _data()
    y = jnp.zeros((SHAPE[0],), jnp.int32)
    seen = []

    def model(x_t, s, y):
        seen.append(s)
        return jnp.concatenate([jnp.zeros_like(x_t), jnp.zeros_like(x_t)], axis=-1)

    loss, aux = OBJECTIVE(model, x0, y, jax.random.key(0))
    assert loss.shape == (SHAPE[0],) and bool(jnp.all(jnp.isfinite(loss)))
    # The network sees k / T with k an integer in [0, T); aux["t"] is (k + 1) / T.
    np.testing.assert_allclose(np.asarray(aux["t"]) - np.asarray(seen[0]), 1e-3, atol=1e-7)
    with pytest.raises(ValueError, match="needs a 2C-channel output"):
        OBJECTIVE(lambda x_t, s, y: x_t, x0, y, jax.random.key(0))
