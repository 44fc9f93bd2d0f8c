"""SiT objectives on a Gaussian mixture: the exact optimum reaches the irreducible loss and is stationary.

For ``x0`` from the 2-D mixture of ``conftest.mixture`` every prediction's residual at the
optimum is ``kappa(t) (x0 - E[x0 | x_t])`` with ``kappa`` = ``-det / sigma`` (velocity,
``det = alpha sigma' - alpha' sigma``), ``-alpha / sigma`` (noise, and score in SiT's noise
units) or 1 (x0). The irreducible loss is therefore

    E_t[ w(t) kappa(t)^2 E_{x_t}[ tr Cov(x0 | x_t) ] / D ],

computed here by deterministic quadrature in float64: Gauss-Legendre over the quantile level
``u`` of ``t`` (``t = quantile(u)`` from scipy) and tensor Gauss-Hermite over ``x_t`` per
mixture component. The objective's Monte-Carlo mean at the optimum must match it within its
standard error, and the gradient with respect to a small affine correction of the optimum must
vanish within its standard error; a deliberately wrong "optimum" must fail both checks.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from nnx_objectives import (
    GVPPath,
    InterpolantObjective,
    LinearPath,
    LogitNormalTime,
    NoisePrediction,
    ScorePrediction,
    ShiftedTime,
    TimeInterval,
    UniformTime,
    VelocityPrediction,
    VPPath,
    X0Prediction,
    interpolate,
)

BATCH = 1 << 16
CASES = {
    "linear-velocity-uniform": dict(
        path=LinearPath(),
        path_name="linear",
        prediction=VelocityPrediction(),
        time=UniformTime(),
        quantile=lambda u: u,
    ),
    "gvp-noise-logitnormal": dict(
        path=GVPPath(),
        path_name="gvp",
        prediction=NoisePrediction(),
        time=TimeInterval(LogitNormalTime(0.0, 1.0), 1e-3, 1 - 1e-3),
        quantile=lambda u: 1e-3 + (1 - 2e-3) * special.expit(special.ndtri(u)),
    ),
    "vp-score-uniform": dict(
        path=VPPath(),
        path_name="vp",
        prediction=ScorePrediction(),
        time=TimeInterval(UniformTime(), 1e-5, 1.0),
        quantile=lambda u: 1e-5 + (1 - 1e-5) * u,
    ),
    "linear-x0-shifted": dict(
        path=LinearPath(),
        path_name="linear",
        prediction=X0Prediction(),
        time=ShiftedTime(LogitNormalTime(0.0, 1.0), 2.0),
        quantile=lambda u: (
            2 * special.expit(special.ndtri(u)) / (1 + special.expit(special.ndtri(u)))
        ),
    ),
}


def irreducible_loss(mixture, coefficients, case, num_t_nodes, num_x_nodes):
    nodes, weights = np.polynomial.legendre.leggauss(num_t_nodes)
    u, weights = 0.5 * (nodes + 1), 0.5 * weights
    t = case["quantile"](u)
    alpha, sigma, d_alpha, d_sigma = coefficients(case["path_name"], t)
    prediction = case["prediction"]
    if isinstance(prediction, VelocityPrediction):
        kappa_squared = ((alpha * d_sigma - d_alpha * sigma) / sigma) ** 2
    elif isinstance(prediction, NoisePrediction | ScorePrediction):
        kappa_squared = (alpha / sigma) ** 2
    else:
        kappa_squared = np.ones_like(t)
    trace = np.array(
        [mixture.expected_trace_cov(a, s, num_x_nodes) for a, s in zip(alpha, sigma, strict=True)]
    )
    per_t = kappa_squared * trace / mixture.dim
    return float(np.sum(weights * per_t))


def optimal_model(mixture, path, prediction, std_scale=1.0):
    """The exact minimiser, written from the definitions (``std_scale != 1`` spoils it)."""

    def model(x_t, t, y):
        te = t[:, None]
        alpha, sigma = path.alpha(te), path.sigma(te)
        x0_hat = mixture.mean_x0(jnp, x_t, alpha, sigma, std_scale)
        eps_hat = (x_t - alpha * x0_hat) / sigma
        if isinstance(prediction, VelocityPrediction):
            return path.d_alpha(te) * x0_hat + path.d_sigma(te) * eps_hat
        if isinstance(prediction, NoisePrediction):
            return eps_hat
        if isinstance(prediction, ScorePrediction):
            return -eps_hat / sigma
        return x0_hat

    return model


def output_gradient_statistics(objective, model, path, x0, y, key):
    """Per-example loss, and mean and standard error of the gradient of the loss with respect
    to a small correction ``x_t A + b + t x_t C`` of the model (zero at the optimum).

    The per-example gradient is ``dL_i/d out_i`` (from one reverse pass through the
    objective, with an additive output offset) contracted with the correction's features.
    """
    t, eps = objective.sample(key, x0)
    x_t = interpolate(path, x0, eps, t)

    def total(offset):
        loss, aux = objective(lambda x, s, y: model(x, s, y) + offset, x0, y, key)
        return jnp.sum(loss), (loss, aux["t"])

    output_grad, (loss, aux_t) = jax.grad(total, has_aux=True)(jnp.zeros_like(x0))
    per_example = jnp.concatenate(
        [
            jnp.reshape(x_t[:, :, None] * output_grad[:, None, :], (x0.shape[0], -1)),  # A
            output_grad,  # b
            jnp.reshape(
                t[:, None, None] * x_t[:, :, None] * output_grad[:, None, :], (x0.shape[0], -1)
            ),  # C
        ],
        axis=1,
    )
    mean = jnp.mean(per_example, axis=0)
    standard_error = jnp.std(per_example, axis=0) / math.sqrt(x0.shape[0])
    return loss, mean, standard_error, jnp.max(jnp.abs(aux_t - t))


@pytest.mark.parametrize("name", CASES)
def test_optimum_reaches_irreducible_loss_and_is_stationary(mixture, path_coefficients, name, jit):
    case = CASES[name]
    objective = InterpolantObjective(
        path=case["path"], prediction=case["prediction"], time_distribution=case["time"]
    )
    coarse = irreducible_loss(mixture, path_coefficients, case, 32, 24)
    exact = irreducible_loss(mixture, path_coefficients, case, 64, 40)
    # Quadrature converged to < 2e-4 relative, far below the Monte-Carlo error (~0.5%).
    assert abs(coarse - exact) < 2e-4 * exact, (coarse, exact)

    key_objective = jax.random.key(5, impl="rbg")
    x0 = mixture.sample(5, BATCH)
    y = np.zeros((BATCH,), np.int32)

    @jit
    def statistics(x0, key, std_scale):
        path = case["path"]
        model = optimal_model(mixture, path, case["prediction"], std_scale)
        return output_gradient_statistics(objective, model, path, x0, y, key)

    loss, grad_mean, grad_se, t_gap = statistics(x0, key_objective, 1.0)
    bad_loss, bad_mean, bad_se, _ = statistics(x0, key_objective, 1.5)
    # The time the objective drew is the one its public sample() gives for the same key.
    assert float(t_gap) == 0.0
    loss, bad_loss = np.asarray(loss, np.float64), np.asarray(bad_loss, np.float64)
    standard_error = loss.std() / math.sqrt(BATCH)
    # The Monte-Carlo estimate is precise enough to mean something (< 1.5% of the value) ...
    assert standard_error < 0.015 * exact
    # ... and agrees with the quadrature within 4 standard errors.
    assert abs(loss.mean() - exact) < 4 * standard_error, (loss.mean(), exact, standard_error)
    # Stationary: every gradient component is within 4.5 standard errors of 0 (10 components).
    assert np.all(np.abs(grad_mean) < 4.5 * grad_se), (grad_mean, grad_se)
    # Control: a wrong posterior (component stds x1.5) costs more (paired difference, same
    # samples) and is not stationary.
    excess = bad_loss - loss
    assert excess.mean() > 6 * excess.std() / math.sqrt(BATCH), excess.mean()
    assert np.any(np.abs(bad_mean) > 6 * bad_se), (bad_mean, bad_se)
