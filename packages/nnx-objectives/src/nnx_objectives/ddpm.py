"""Improved DDPM's hybrid objective: noise MSE plus the variational bound for a learned variance.

Time convention: DDPM's integer step ``k = 0 .. T-1`` is the library time ``t = (k + 1) / T``
(``t = 0`` is data, ``t = 1`` is noise; ``nnx_samplers.DDPMSchedule``). The network is called
with its *network time* ``k / T`` (DiT with ``time_scale = T`` sees the integer ``k``) and
returns ``2 C`` channels: the noise ``eps`` and the variance values ``v`` in ``[-1, 1]``.

Per example (Nichol & Dhariwal 2021, "Improved DDPM", sec. 3.1 and eq. 15-16; the code is
facebookresearch/DiT ``diffusion/gaussian_diffusion.py``, ``training_losses`` and
``_vb_terms_bpd``, with ``loss_type = MSE`` and ``learn_sigma = True`` as DiT trains)::

    k ~ U{0, .., T-1},  x_k = sqrt(abar_k) x0 + sqrt(1 - abar_k) eps
    mse = mean((eps - eps_hat)^2)
    vb  = KL(q(x_{k-1} | x_k, x0) || p(x_{k-1} | x_k)) / log 2         (k > 0)
        = -log p(x0 | x_1) / log 2, discretised on 256 bins in [-1, 1]   (k = 0)
    loss = mse + vlb_weight * vb

where ``p`` uses the stop-gradient ``eps_hat`` for its mean (the VB term trains only the
variance) and the variance ``exp(f log beta_k + (1 - f) log beta_tilde_k)``, ``f = (v + 1) / 2``.
Both terms are means over elements; the paper's ``lambda = 0.001`` multiplies
``L_vlb = sum_k L_k = T E_k[L_k]``, so ``vlb_weight = 1000 lambda / T = 1`` for ``T = 1000``
(DiT's setting).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
from jax import Array

from nnx_objectives.interpolant import mean_over_elements
from nnx_objectives.protocols import Network
from nnx_samplers import DDPMSchedule, expand_time

__all__ = [
    "ImprovedDDPMObjective",
    "discretized_gaussian_log_likelihood",
    "normal_kl",
]


def normal_kl(mean1: Array, logvar1: Array, mean2: Array, logvar2: Array) -> Array:
    """Elementwise ``KL(N(mean1, e^logvar1) || N(mean2, e^logvar2))`` in nats."""
    return 0.5 * (
        -1.0
        + logvar2
        - logvar1
        + jnp.exp(logvar1 - logvar2)
        + (mean1 - mean2) ** 2 * jnp.exp(-logvar2)
    )


def _approx_standard_normal_cdf(x: Array) -> Array:
    # The tanh approximation of the upstream code (a fast Phi, error below 2e-4).
    return 0.5 * (1.0 + jnp.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def discretized_gaussian_log_likelihood(x: Array, means: Array, log_scales: Array) -> Array:
    """Elementwise log-probability of ``x`` in [-1, 1] under a Gaussian discretised to 256 bins.

    Bins have width ``2 / 255`` and the end bins extend to ``-inf`` / ``+inf`` (Ho et al.
    2020, eq. 13; upstream ``discretized_gaussian_log_likelihood``).
    """
    centred = x - means
    inv_std = jnp.exp(-log_scales)
    cdf_plus = _approx_standard_normal_cdf(inv_std * (centred + 1.0 / 255.0))
    cdf_min = _approx_standard_normal_cdf(inv_std * (centred - 1.0 / 255.0))
    log_cdf_plus = jnp.log(jnp.maximum(cdf_plus, 1e-12))
    log_one_minus_cdf_min = jnp.log(jnp.maximum(1.0 - cdf_min, 1e-12))
    log_delta = jnp.log(jnp.maximum(cdf_plus - cdf_min, 1e-12))
    return jnp.where(
        x < -0.999, log_cdf_plus, jnp.where(x > 0.999, log_one_minus_cdf_min, log_delta)
    )


@functools.lru_cache(maxsize=8)
def _tables(schedule: DDPMSchedule) -> dict[str, tuple[float, ...]]:
    """DiT's float64 tables, indexed by ``k`` (``GaussianDiffusion.__init__``)."""
    ab = schedule.alphas_cumprod()
    ab_prev = (1.0, *ab[:-1])
    betas = [1.0 - a / p for a, p in zip(ab, ab_prev)]
    post_var = [b * (1.0 - p) / (1.0 - a) for b, a, p in zip(betas, ab, ab_prev)]
    return {
        "alpha_bar": ab,
        "log_beta": tuple(math.log(b) for b in betas),
        # beta_tilde_0 = 0: the log uses beta_tilde_1 there, as upstream does.
        "log_post_var": tuple(math.log(v) for v in (post_var[1], *post_var[1:])),
        "coef_x0": tuple(b * math.sqrt(p) / (1.0 - a) for b, a, p in zip(betas, ab, ab_prev)),
        "coef_xt": tuple(
            (1.0 - p) * math.sqrt(1.0 - b) / (1.0 - a) for b, a, p in zip(betas, ab, ab_prev)
        ),
    }


@dataclass(frozen=True)
class ImprovedDDPMObjective:
    """Epsilon prediction with a learned variance, trained with the hybrid loss (see module).

    Example::

        objective = ImprovedDDPMObjective()            # DiT: T = 1000, linear betas
        loss, aux = objective(dit, x0, y, key)         # dit(x_k, k / T, y) -> (B, H, W, 2C)

    Attributes:
      schedule: the discrete schedule (``DDPMSchedule()``: 1e-4 to 0.02 over 1000 steps).
      vlb_weight: multiplier of the per-step VB term (1 = improved DDPM's lambda = 0.001).
    """

    schedule: DDPMSchedule = field(default_factory=DDPMSchedule)
    vlb_weight: float = 1.0

    def _gather(self, name: str, k: Array, x: Array) -> Array:
        table = jnp.asarray(_tables(self.schedule)[name], jnp.float32)
        return expand_time(table[k], x)

    def posterior(self, x0: Array, x_t: Array, k: Array) -> tuple[Array, Array]:
        """Mean and clipped log-variance of ``q(x_{k-1} | x_k, x0)`` (Ho et al. 2020, eq. 6-7).

        Args:
          x0: ``(B, ...)`` clean data.
          x_t: ``(B, ...)`` the state at step ``k``.
          k: ``(B,)`` int32 steps in ``[0, T)``.

        Returns:
          ``(mean, log_var)``, both ``(B, ...)`` float32.
        """
        mean = self._gather("coef_x0", k, x_t) * x0 + self._gather("coef_xt", k, x_t) * x_t
        return mean, jnp.broadcast_to(self._gather("log_post_var", k, x_t), x_t.shape)

    def loss_from_output(
        self, out: Array, x0: Array, eps: Array, k: Array, x_t: Array
    ) -> tuple[Array, dict[str, Array]]:
        """Per-example hybrid loss of an output ``(B, ..., 2C)`` made at ``(x_t, k)``."""
        channels = x0.shape[-1]
        if out.shape != (*x0.shape[:-1], 2 * channels):
            raise ValueError(
                f"ImprovedDDPMObjective needs a 2C-channel output (eps, variance): data "
                f"{x0.shape}, output {out.shape}; build the network with learn_sigma=True."
            )
        out, x0, eps, x_t = (a.astype(jnp.float32) for a in (out, x0, eps, x_t))
        eps_hat, values = out[..., :channels], out[..., channels:]
        mse = mean_over_elements((eps - eps_hat) ** 2)

        ab = self._gather("alpha_bar", k, x_t)
        frozen = jax.lax.stop_gradient(eps_hat)  # the VB term trains only the variance
        x0_hat = (x_t - jnp.sqrt(1.0 - ab) * frozen) / jnp.sqrt(ab)
        model_mean, min_log = self.posterior(x0_hat, x_t, k)
        fraction = (values + 1.0) / 2.0
        model_log_var = fraction * self._gather("log_beta", k, x_t) + (1.0 - fraction) * min_log
        true_mean, true_log_var = self.posterior(x0, x_t, k)

        kl = mean_over_elements(normal_kl(true_mean, true_log_var, model_mean, model_log_var))
        nll = -mean_over_elements(
            discretized_gaussian_log_likelihood(x0, model_mean, 0.5 * model_log_var)
        )
        vb = jnp.where(k == 0, nll, kl) / math.log(2.0)
        loss = mse + self.vlb_weight * vb
        t = (k + 1).astype(jnp.float32) / self.schedule.num_train_steps
        return loss, {"t": t, "mse": mse, "vb": vb}

    def loss_at(
        self, model: Network, x0: Array, y: Array, k: Array, eps: Array
    ) -> tuple[Array, dict[str, Array]]:
        """The loss at given steps ``k`` ``(B,)`` int32 and noise ``eps`` (deterministic)."""
        ab = self._gather("alpha_bar", k, x0)
        x_t = (jnp.sqrt(ab) * x0 + jnp.sqrt(1.0 - ab) * eps).astype(x0.dtype)
        network_time = k.astype(jnp.float32) / self.schedule.num_train_steps
        return self.loss_from_output(model(x_t, network_time, y), x0, eps, k, x_t)

    def __call__(
        self, model: Network, x0: Array, y: Array, key: Array
    ) -> tuple[Array, dict[str, Array]]:
        """``objective(model, x0, y, key) -> ((B,) loss, aux)`` with ``k ~ U{0, .., T-1}``."""
        key_step, key_noise = jax.random.split(key)
        k = jax.random.randint(key_step, (x0.shape[0],), 0, self.schedule.num_train_steps)
        eps = jax.random.normal(key_noise, x0.shape, jnp.float32).astype(x0.dtype)
        return self.loss_at(model, x0, y, k, eps)
