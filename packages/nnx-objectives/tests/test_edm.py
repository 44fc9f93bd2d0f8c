"""EDM: coefficients against the paper, the sigma <-> t map, the wrapper, and the optimum on a mixture."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nnx_objectives import (
    EDMObjective,
    EDMPrecond,
    LogVarHead,
    UncertaintyWeighted,
    WithLogVar,
    edm_from_linear,
    edm_loss_weight,
    edm_preconditioning,
    edm_sigma_from_t,
    linear_from_edm,
    t_from_edm_sigma,
)

SIGMAS = np.array([0.002, 0.05, 0.3, 0.5, 1.0, 3.0, 10.0, 80.0])


@pytest.mark.parametrize("sigma_data", [0.5, 1.0])
def test_coefficients_equal_the_paper_formulas(sigma_data):
    c = edm_preconditioning(jnp.asarray(SIGMAS, jnp.float32), sigma_data)
    s, sd = SIGMAS, sigma_data
    # EDM Table 1 ("Ours"), in float64.
    expected = {
        "c_skip": sd**2 / (s**2 + sd**2),
        "c_out": s * sd / np.sqrt(s**2 + sd**2),
        "c_in": 1 / np.sqrt(s**2 + sd**2),
        "c_noise": np.log(s) / 4,
    }
    for name, value in expected.items():
        # float32 evaluation of the same expressions: 1e-6 relative.
        np.testing.assert_allclose(getattr(c, name), value, rtol=2e-6, err_msg=name)
    weight = np.asarray(edm_loss_weight(jnp.asarray(SIGMAS, jnp.float32), sigma_data))
    np.testing.assert_allclose(weight, (s**2 + sd**2) / (s * sd) ** 2, rtol=2e-6)
    # lambda = 1 / c_out^2, and the effective target (x0 - c_skip x) / c_out has unit
    # variance when x0 has deviation sigma_data (EDM Appendix B.6).
    np.testing.assert_allclose(weight, 1 / expected["c_out"] ** 2, rtol=2e-6)
    target_variance = ((1 - expected["c_skip"]) ** 2 * sd**2 + expected["c_skip"] ** 2 * s**2) / (
        expected["c_out"] ** 2
    )
    np.testing.assert_allclose(target_variance, 1.0, rtol=1e-12)


def test_sigma_time_map_is_written_once_and_inverts():
    t = jnp.asarray([0.001, 0.2, 0.5, 0.9, 0.99])
    sigma = edm_sigma_from_t(t)
    np.testing.assert_allclose(
        sigma, np.array([0.001, 0.2, 0.5, 0.9, 0.99]) / (1 - np.array(t)), rtol=1e-5
    )
    np.testing.assert_allclose(t_from_edm_sigma(sigma), t, rtol=1e-6)
    x_t = np.arange(10.0, dtype=np.float32).reshape(5, 2)
    x_edm, sigma2 = edm_from_linear(x_t, t)
    np.testing.assert_allclose(x_edm, np.asarray(x_t) / (1 - np.asarray(t))[:, None], rtol=1e-6)
    back, t_back = linear_from_edm(x_edm, sigma2)
    np.testing.assert_allclose(back, x_t, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(t_back, t, rtol=1e-6)


def test_precond_wraps_any_network(networks, build, jit):
    net = build(lambda: networks["TinyNet"]((3,), rngs=nnx.Rngs(0)))
    precond = EDMPrecond(net, sigma_data=0.5)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3)).astype(np.float32)
    sigma = np.asarray([0.01, 0.5, 2.0, 40.0], np.float32)
    y = np.zeros((4,), np.int32)
    s = np.asarray(sigma)[:, None]
    c_skip, c_out, c_in = (
        0.25 / (s**2 + 0.25),
        s * 0.5 / np.sqrt(s**2 + 0.25),
        1 / np.sqrt(s**2 + 0.25),
    )

    @jit
    def evaluate(x, sigma, y, c_in):
        x_t, t = linear_from_edm(x, sigma)
        raw = net(c_in * x, jnp.log(sigma) / 4, y)
        return precond.denoise(x, sigma, y), precond(x_t, t, y), raw

    denoised, denoised_ours, raw = evaluate(x, sigma, y, c_in.astype(np.float32))
    expected = c_skip * x + c_out * np.asarray(raw)
    # float32 network evaluated two ways (different association of c_in * x): 1e-5.
    np.testing.assert_allclose(denoised, expected, rtol=1e-5, atol=1e-5)
    # In our convention the same denoiser sees x_t = x_E (1 - t) at t = sigma / (1 + sigma);
    # the round trip x_E -> x_t -> x_E costs ~1e-6 relative in float32.
    np.testing.assert_allclose(denoised_ours, expected, rtol=1e-4, atol=1e-5)


def test_edm_optimum_reaches_irreducible_loss_and_is_stationary(mixture, jit):
    """The exact denoiser E[x0 | x0 + sigma eps] reaches E_sigma[lambda tr Cov(x0 | x_E) / D]."""
    objective = EDMObjective(P_mean=-1.2, P_std=1.2, sigma_data=0.5)

    def irreducible(num_nodes, num_x_nodes):
        nodes, weights = np.polynomial.hermite_e.hermegauss(num_nodes)
        sigmas = np.exp(-1.2 + 1.2 * nodes)
        lam = (sigmas**2 + 0.25) / (sigmas * 0.5) ** 2
        trace = np.array([mixture.expected_trace_cov(1.0, s, num_x_nodes) for s in sigmas])
        return float(np.sum(weights / math.sqrt(2 * math.pi) * lam * trace / mixture.dim))

    exact, coarse = irreducible(64, 40), irreducible(40, 24)
    # Quadrature converged to < 2e-4 relative, far below the Monte-Carlo error (~0.5%).
    assert abs(exact - coarse) < 2e-4 * exact, (exact, coarse)

    batch = 1 << 16
    x0 = mixture.sample(6, batch)
    y = np.zeros((batch,), np.int32)
    key = jax.random.key(6, impl="rbg")

    @jit
    def statistics(x0, key, std_scale):
        def model(x_t, t, y):  # exact denoiser on the linear path, our convention
            return mixture.mean_x0(jnp, x_t, 1.0 - t[:, None], t[:, None], std_scale)

        sigma, eps = objective.sample(key, x0)
        x_t, t = linear_from_edm(x0 + sigma[:, None] * eps, sigma)

        def total(offset):
            loss, _ = objective(lambda x, s, y: model(x, s, y) + offset, x0, y, key)
            return jnp.sum(loss), loss

        grad, loss = jax.grad(total, has_aux=True)(jnp.zeros_like(x0))
        features = jnp.concatenate(
            [
                jnp.reshape(x_t[:, :, None] * grad[:, None, :], (batch, -1)),
                grad,
                jnp.reshape((t[:, None, None] * x_t[:, :, None]) * grad[:, None, :], (batch, -1)),
            ],
            axis=1,
        )
        return loss, jnp.mean(features, 0), jnp.std(features, 0) / math.sqrt(batch)

    loss, grad_mean, grad_se = (np.asarray(a, np.float64) for a in statistics(x0, key, 1.0))
    bad_loss, bad_mean, bad_se = (np.asarray(a, np.float64) for a in statistics(x0, key, 1.5))
    standard_error = loss.std() / math.sqrt(batch)
    assert standard_error < 0.015 * exact
    # Monte Carlo vs quadrature within 4 standard errors.
    assert abs(loss.mean() - exact) < 4 * standard_error, (loss.mean(), exact, standard_error)
    # Stationary within 4.5 standard errors for all 10 correction parameters.
    assert np.all(np.abs(grad_mean) < 4.5 * grad_se), (grad_mean, grad_se)
    # Control: a wrong posterior costs more (paired) and is not stationary.
    excess = bad_loss - loss
    assert excess.mean() > 6 * excess.std() / math.sqrt(batch)
    assert np.any(np.abs(bad_mean) > 6 * bad_se)


class _ConstantLogVar(nnx.Module):
    def __init__(self, value):
        self.value = nnx.Param(jnp.asarray(value, jnp.float32))

    def __call__(self, t):
        return jnp.broadcast_to(self.value[...], t.shape)


def test_uncertainty_weighting_is_edm2_loss_and_learns_log_of_mean(networks, build, jit):
    net = EDMPrecond(build(lambda: networks["TinyNet"]((3,), rngs=nnx.Rngs(1))), sigma_data=0.5)
    x0 = (np.random.default_rng(1).standard_normal((256, 3)) * 0.5).astype(np.float32)
    y = np.zeros((256,), np.int32)
    key = jax.random.key(7, impl="rbg")
    base = EDMObjective(P_mean=-0.4, P_std=1.0)
    head = build(lambda: LogVarHead(16, rngs=nnx.Rngs(2)), seed=2)

    @jit
    def both(x0, y, key):
        base_loss, base_aux = base(net, x0, y, key)
        loss, aux = UncertaintyWeighted(base)(WithLogVar(net, head), x0, y, key)
        return base_loss, loss, aux["logvar"], head(base_aux["t"])

    base_loss, loss, logvar, u = both(x0, y, key)
    # EDM2 Eq. 21 with the mean over elements: L / e^u + u, same draws as the base objective.
    base_loss, loss, logvar, u = (np.asarray(a) for a in (base_loss, loss, logvar, u))
    np.testing.assert_allclose(loss, base_loss * np.exp(-u) + u, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(logvar, u, rtol=1e-6)

    # With a constant log-variance, the optimum is u* = log(mean L): zero gradient there,
    # non-zero (1 - mean L e^-u) elsewhere.
    graphdef, params, rest = nnx.split(WithLogVar(net, _ConstantLogVar(0.0)), nnx.Param, ...)

    @jit
    def mean_loss_grad(params):
        def mean_loss(params):
            module = nnx.merge(graphdef, params, rest)
            return jnp.mean(UncertaintyWeighted(base)(module, x0, y, key)[0])

        return jax.grad(mean_loss)(params)

    def with_value(value):
        copy = jax.tree.map(lambda a: a, params)
        copy["head"]["value"] = nnx.Param(jnp.float32(value))
        return copy

    optimum = float(np.log(np.mean(base_loss, dtype=np.float64)))
    at_optimum = mean_loss_grad(with_value(optimum))
    away = mean_loss_grad(with_value(optimum + 0.5))
    # float32 mean of 256 terms: 1e-5 absolute.
    assert abs(float(at_optimum["head"]["value"][...])) < 1e-5
    np.testing.assert_allclose(away["head"]["value"][...], 1 - math.exp(-0.5), rtol=1e-4)
    with pytest.raises(TypeError, match="WithLogVar"):
        UncertaintyWeighted(base)(net, x0, y, key)


def test_logvar_head_is_weight_normalised_and_finite(jit):
    head = LogVarHead(2048, rngs=nnx.Rngs(jax.random.key(3, impl="rbg")))
    graphdef, state = nnx.split(head)
    t = np.asarray([0.0, 1e-3, 0.3, 0.7, 1.0], np.float32)
    evaluate = jit(lambda state, t: nnx.merge(graphdef, state)(t))
    out = np.asarray(evaluate(state, t))
    assert out.shape == (5,) and np.all(np.isfinite(out))
    # Weight normalisation: the output does not depend on the weight's scale, up to EDM2's
    # eps = 1e-4 in w / (eps + |w| / sqrt(C)), i.e. ~1e-4 relative.
    scaled = jax.tree.map(lambda a: a, state)
    scaled["weight"] = nnx.Param(np.asarray(state["weight"][...]) * 7.0)
    np.testing.assert_allclose(evaluate(scaled, t), out, rtol=2e-4, atol=1e-6)
    # MP-Fourier features have unit mean square (2048 features, random phases: +-3%).
    fourier = jit(lambda state, x: nnx.merge(graphdef, state).fourier(x))
    features = fourier(state, np.asarray([-1.0, 0.0, 0.4], np.float32))
    np.testing.assert_allclose(np.mean(np.asarray(features) ** 2, axis=1), 1.0, atol=0.1)
