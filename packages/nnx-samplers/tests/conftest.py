"""Closed-form fixtures for the nnx-samplers suite: a Gaussian mixture with its exact velocity.

The suite runs on fake CPU devices with cheap compiles (``nnx_nets.testing``, a test-only
import: nnx-samplers itself does not depend on nnx-nets).
"""

from __future__ import annotations

from nnx_nets.testing import configure_cpu_tests

configure_cpu_tests()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import pytest  # noqa: E402


class GaussianMixture:
    """Diagonal-covariance Gaussian mixture data ``p_0``; exact linear-path quantities.

    On the linear path ``x_t = (1 - t) x0 + t eps`` each component k is Gaussian with mean
    ``(1 - t) mu_k`` and variance ``c_k(t) = (1 - t)^2 s_k + t^2`` (per dimension), so with
    ``r_k = x - (1 - t) mu_k`` and posterior weights ``w_k(x, t)``::

        E[eps | x, k] = t r_k / c_k,   E[x0 | x, k] = mu_k + (1 - t) s_k r_k / c_k
        v(x, t) = sum_k w_k (E[eps | x, k] - E[x0 | x, k])

    which is finite on all of [0, 1].
    """

    def __init__(self, weights, means, variances):
        self.weights = jnp.asarray(weights, jnp.float32)
        self.means = jnp.asarray(means, jnp.float32)
        self.variances = jnp.asarray(variances, jnp.float32)

    def _parts(self, x, t):
        t = jnp.broadcast_to(jnp.asarray(t, x.dtype), x.shape[:1])[:, None, None]
        means = self.means.astype(x.dtype)[None]
        variances = self.variances.astype(x.dtype)[None]
        marginal_var = (1 - t) ** 2 * variances + t**2
        residual = x[:, None, :] - (1 - t) * means
        z = residual / marginal_var
        log_p = jnp.log(self.weights.astype(x.dtype))[None] - 0.5 * jnp.sum(
            residual * z + jnp.log(marginal_var), axis=-1
        )
        posterior = jax.nn.softmax(log_p, axis=-1)[..., None]
        return t, means, variances, z, posterior

    def velocity(self, x, t):
        t, means, variances, z, posterior = self._parts(x, t)
        per_component = t * z - means - (1 - t) * variances * z
        return jnp.sum(posterior * per_component, axis=1)

    def noise(self, x, t):
        t, _, _, z, posterior = self._parts(x, t)
        return jnp.sum(posterior * t * z, axis=1)

    def data(self, x, t):
        t, means, variances, z, posterior = self._parts(x, t)
        return jnp.sum(posterior * (means + (1 - t) * variances * z), axis=1)

    def responsibilities(self, x):
        """Posterior component probabilities at t = 0; their mean over p_0 is ``weights``."""
        _, _, _, _, posterior = self._parts(x, 0.0)
        return posterior[..., 0]

    def mean(self):
        return jnp.sum(self.weights[:, None] * self.means, axis=0)

    def covariance(self):
        centred = self.means - self.mean()
        within = jnp.diag(jnp.sum(self.weights[:, None] * self.variances, axis=0))
        between = jnp.einsum("k,ki,kj->ij", self.weights, centred, centred)
        return within + between


@pytest.fixture(scope="session")
def mixture() -> GaussianMixture:
    """Three overlapping 2-D components: smooth enough that 8 steps are in the asymptotic range."""
    return GaussianMixture(
        weights=[0.5, 0.3, 0.2],
        means=[[1.5, 0.0], [-1.0, 1.0], [0.0, -1.5]],
        variances=[[0.5, 0.3], [0.4, 0.6], [0.3, 0.3]],
    )


def rk4_solve(field, x, times):
    """Classical RK4 along ``times`` (a reference integrator independent of the package)."""

    def body(x, interval):
        t, t_next = interval
        h = t_next - t
        k1 = field(x, t)
        k2 = field(x + 0.5 * h * k1, t + 0.5 * h)
        k3 = field(x + 0.5 * h * k2, t + 0.5 * h)
        k4 = field(x + h * k3, t_next)
        return x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4), None

    return jax.lax.scan(body, x, (times[:-1], times[1:]))[0]


@pytest.fixture(scope="session")
def reference_solver():
    """RK4 reference; callers use 4096 uniform steps in float64 (self-error below 1e-12)."""
    return rk4_solve
