"""Distribution matching distillation: the generator's DMD loss and the fake score's loss.

Yin et al. 2024, "One-step Diffusion with Distribution Matching Distillation" (DMD, Eq. 7-8)
and Yin et al. 2024, "Improved Distribution Matching Distillation for Fast Image Synthesis"
(DMD2, arXiv 2405.14867, Sec. 3-4). A generator ``G`` is trained to minimise
``KL(p_fake || p_real)`` between its output distribution and the data distribution, both
diffused to a time ``t``. Its gradient (DMD Eq. 7) is

    grad_theta KL = E_{z, t, x_t} [ w_t alpha_t (s_fake(x_t, t) - s_real(x_t, t)) dG/dtheta ],

where ``x_t = alpha_t G(z) + sigma_t eps``, ``s_real`` is the frozen teacher's score and
``s_fake`` the score of the generator's own distribution, learnt online by a second network
(DMD Eq. 6; `FakeScoreLoss`). Written with clean-data predictions ``mu`` (on every path
``s(x_t) = (alpha_t mu(x_t) - x_t) / sigma_t^2``), ``s_fake - s_real = alpha_t / sigma_t^2
(mu_fake - mu_real)``, and DMD's weight ``w_t = sigma_t^2 / alpha_t * D / ||mu_real - x||_1``
(Eq. 8) leaves the per-example direction

    grad_x = (mu_fake(x_t) - mu_real(x_t)) / mean_elements |x - mu_real(x_t)|,

``x = G(z)``. As in DMD2's code (tianweiy/DMD2 ``main/edm/edm_guidance.py``,
``compute_distribution_matching_loss``) it is applied through the surrogate

    L = 0.5 * mean_elements( (x - sg(x - grad_x))^2 ),

whose gradient with respect to ``x`` is ``grad_x / D`` (``D`` elements per example); the value
is ``0.5 * mean(grad_x^2)`` and is a diagnostic only. ``t`` is uniform in
``[t_min, t_max]`` (DMD2: timesteps 2% .. 98% of the schedule).

Time convention: ``t`` in [0, 1], 0 = data, 1 = noise; ``x_t = alpha(t) x0 + sigma(t) eps``.
The real and fake scores are passed as clean-data predictors ``mu(x_t, t, y) -> x0_hat``;
`data_predictor` turns a velocity network into one (with optional classifier-free guidance
for the real score, DMD2's ``real_guidance_scale``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array

from nnx_objectives.interpolant import mean_over_elements
from nnx_objectives.protocols import Network, Objective
from nnx_samplers import LinearPath, Path, data_from_velocity, expand_time

__all__ = ["DataPredictor", "DistributionMatchingLoss", "FakeScoreLoss", "data_predictor"]

LINEAR = LinearPath()

DataPredictor = Callable[[Array, Array, Array], Array]
"""``mu(x_t (B, ...), t (B,), y (B,)) -> x0_hat (B, ...)``, ``t`` 0 = data, 1 = noise."""


def data_predictor(
    network: Network,
    *,
    path: Path = LINEAR,
    guidance_scale: float = 1.0,
    null_label: int | None = None,
) -> DataPredictor:
    """The clean-data prediction of a velocity network, optionally guided.

    ``x0_hat = data_from_velocity(x_t, v, t)`` (linear path: ``x_t - t v``) with
    ``v = v(., null) + w (v(., y) - v(., null))`` when ``guidance_scale = w != 1``.

    Args:
      network: ``network(x_t, t, y) -> v`` (velocity, our time convention); ``t`` is
        ``(B,)``, or ``(B, F)`` for clips ``x_t: (B, F, ...)`` with one time per frame.
      path: the network's path.
      guidance_scale: classifier-free guidance weight (1: conditional only).
      null_label: the explicit null label, required when ``guidance_scale != 1``.
    """
    if guidance_scale != 1.0 and null_label is None:
        raise ValueError("data_predictor with guidance_scale != 1 needs null_label.")

    def predict(x_t: Array, t: Array, y: Array) -> Array:
        v = network(x_t, t, y).astype(jnp.float32)
        if guidance_scale != 1.0:
            v_null = network(x_t, t, jnp.full_like(y, null_label)).astype(jnp.float32)
            v = v_null + guidance_scale * (v - v_null)
        if t.ndim == 2 and x_t.ndim > 2:  # clips with one time per frame: (B, F, ...)
            flat = x_t.shape[0] * x_t.shape[1]
            x0 = data_from_velocity(
                x_t.reshape(flat, *x_t.shape[2:]),
                v.reshape(flat, *v.shape[2:]),
                t.reshape(flat),
                path,
            )
            return x0.reshape(x_t.shape)
        return data_from_velocity(x_t, v, t, path)

    return predict


@dataclass(frozen=True)
class DistributionMatchingLoss:
    """DMD's generator loss (DMD Eq. 7-8, DMD2 Sec. 3), as a stop-gradient MSE surrogate.

    ``loss(x, y, key, *, real, fake) -> (loss (B,), aux)``: ``x`` ``(B, ...)`` are generator
    samples carrying the generator's gradient; ``real`` and ``fake`` are `DataPredictor`s.
    Neither predictor receives a gradient (their outputs are under stop-gradient).

    Attributes:
      path: the diffusion path of the scores (linear for flow-matching teachers).
      t_min: lower end of the uniform time (DMD2: 0.02 of the schedule).
      t_max: upper end of the uniform time (DMD2: 0.98).
      normalise: divide by ``mean |x - mu_real|`` (DMD Eq. 8's weight); ``False`` leaves
        ``sigma_t^2 / alpha_t^2`` times the plain KL gradient of the noised distributions.
      eps_normaliser: added to the normaliser ``mean |x - mu_real|`` (guards a zero).
    """

    path: Path = field(default_factory=LinearPath)
    t_min: float = 0.02
    t_max: float = 0.98
    normalise: bool = True
    eps_normaliser: float = 1e-6

    def __post_init__(self) -> None:
        if not 0.0 <= self.t_min < self.t_max <= 1.0:
            raise ValueError(
                f"need 0 <= t_min < t_max <= 1, got t_min={self.t_min}, t_max={self.t_max}."
            )

    def direction(
        self, x: Array, y: Array, t: Array, eps: Array, *, real: DataPredictor, fake: DataPredictor
    ) -> tuple[Array, Array]:
        """``(grad_x (B, ...), normaliser (B,))`` at given ``t`` ``(B,)`` and noise, no gradient."""
        x = jax.lax.stop_gradient(x.astype(jnp.float32))
        t_x = expand_time(t, x)
        x_t = self.path.alpha(t_x) * x + self.path.sigma(t_x) * eps
        mu_real = jax.lax.stop_gradient(real(x_t, t, y).astype(jnp.float32))
        mu_fake = jax.lax.stop_gradient(fake(x_t, t, y).astype(jnp.float32))
        normaliser = mean_over_elements(jnp.abs(x - mu_real)) + self.eps_normaliser
        if not self.normalise:
            normaliser = jnp.ones_like(normaliser)
        return (mu_fake - mu_real) / expand_time(normaliser, x), normaliser

    def loss_at(
        self, x: Array, y: Array, t: Array, eps: Array, *, real: DataPredictor, fake: DataPredictor
    ) -> tuple[Array, dict[str, Array]]:
        """The surrogate at given ``t`` and ``eps`` (deterministic)."""
        grad, normaliser = self.direction(x, y, t, eps, real=real, fake=fake)
        x = x.astype(jnp.float32)
        loss = 0.5 * mean_over_elements((x - jax.lax.stop_gradient(x - grad)) ** 2)
        return loss, {"t": t, "dmd_normaliser": normaliser}

    def __call__(
        self, x: Array, y: Array, key: Array, *, real: DataPredictor, fake: DataPredictor
    ) -> tuple[Array, dict[str, Array]]:
        key_time, key_noise = jax.random.split(key)
        t = jax.random.uniform(
            key_time, (x.shape[0],), jnp.float32, minval=self.t_min, maxval=self.t_max
        )
        eps = jax.random.normal(key_noise, x.shape, jnp.float32)
        return self.loss_at(x, y, t, eps, real=real, fake=fake)


@dataclass(frozen=True)
class FakeScoreLoss:
    """The fake score's denoising loss on generator samples (DMD Eq. 6, DMD2 Sec. 4.2).

    The fake score is trained with the teacher's own objective (here any nnx-objectives
    `Objective`, e.g. the linear-path velocity `InterpolantObjective`) on generator samples
    under stop-gradient: its minimiser is the score (velocity) of the generator's current
    distribution. ``loss(fake_model, x_gen, y, key) -> (loss (B,), aux)``; the generator gets
    no gradient from it.

    Attributes:
      objective: the denoising objective, ``objective(model, x0, y, key)``.
    """

    objective: Objective

    def __call__(
        self, fake_model: Any, x_gen: Array, y: Array, key: Array
    ) -> tuple[Array, dict[str, Array]]:
        return self.objective(fake_model, jax.lax.stop_gradient(x_gen), y, key)
