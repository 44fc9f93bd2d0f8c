"""`LinearVelocityAsTrigFlow`: a linear-path velocity network read as a TrigFlow network.

For data ``x0 ~ N(M, S0^2)`` per element, the exact linear-path velocity and the exact
TrigFlow output have closed forms (Gaussian posteriors). The wrapper applied to the first must
give the second at every time; its consistency function must be ``x_s`` at ``t = 0`` and the
posterior mean of ``x0`` given pure noise at ``t = 1``.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from nnx_objectives import LinearVelocityAsTrigFlow, trigflow_consistency_function

M, S0, SIGMA_D = 0.3, 0.7, 0.5


def _posterior_mean(x, a, b):
    """E[x0 | a x0 + b eps = x] for x0 ~ N(M, S0^2), eps ~ N(0, 1)."""
    return M + a * S0**2 / (a**2 * S0**2 + b**2) * (x - a * M)


def _linear_velocity(x_t, t, y):
    del y
    t = t.reshape(-1, 1)
    x0 = _posterior_mean(x_t, 1 - t, t)
    eps = (x_t - (1 - t) * x0) / t
    return eps - x0


def _exact_trigflow(x_scaled, t):
    s = (0.5 * math.pi * t).reshape(-1, 1)
    x_s = SIGMA_D * x_scaled
    x0 = _posterior_mean(x_s, jnp.cos(s), SIGMA_D * jnp.sin(s))
    eps = (x_s - jnp.cos(s) * x0) / (SIGMA_D * jnp.sin(s))
    return jnp.cos(s) * eps - jnp.sin(s) * x0 / SIGMA_D


def test_wrapper_gives_the_exact_trigflow_output():
    wrapper = LinearVelocityAsTrigFlow(_linear_velocity, sigma_data=SIGMA_D)
    t = jnp.linspace(0.05, 0.95, 19)
    x = jax.random.normal(jax.random.key(0, impl="rbg"), (19, 3))
    y = jnp.zeros((19,), jnp.int32)
    # float32 arithmetic on O(1) values through two changes of variables: 1e-5.
    np.testing.assert_allclose(wrapper(x, t, y), _exact_trigflow(x, t), atol=1e-5)


def test_consistency_function_boundaries():
    wrapper = LinearVelocityAsTrigFlow(_linear_velocity, sigma_data=SIGMA_D)
    x_s = jax.random.normal(jax.random.key(1, impl="rbg"), (4, 3))
    y = jnp.zeros((4,), jnp.int32)
    near_data = trigflow_consistency_function(wrapper, x_s, 1e-4, y, sigma_data=SIGMA_D)
    # At t = 1e-4 the state is data up to O(t): 1e-3.
    np.testing.assert_allclose(near_data, x_s, atol=1e-3)
    at_noise = trigflow_consistency_function(wrapper, x_s, 1.0 - 1e-6, y, sigma_data=SIGMA_D)
    # From pure noise the posterior mean of x0 is the data mean (S0^2 * cos(s) ~ 1e-6 weight).
    np.testing.assert_allclose(at_noise, M, atol=1e-4)
