"""MeanFlow (Geng et al. 2025): learn the average velocity with a ``jax.jvp`` target.

Time convention: ``t`` in [0, 1], 0 = data, 1 = noise; linear path
``z_t = (1 - t) x0 + t eps``, conditional velocity ``v = eps - x0``. MeanFlow's paper uses
the same convention.

The network predicts the average velocity over ``[r, t]``,
``u(z_t, r, t) = 1 / (t - r) * integral_r^t v(z_s, s) ds``, so that
``z_r = z_t - (t - r) u``. Differentiating ``(t - r) u = integral_r^t v`` in ``t`` gives the
MeanFlow identity (paper Eq. 6)

    u(z_t, r, t) = v(z_t, t) - (t - r) d/dt u(z_t, r, t),
    d/dt u = v . grad_z u + du/dt (total derivative along the flow; dr/dt = 0),

which becomes the regression target (Eq. 10) ``u_tgt = sg(v - (t - r) du/dt)``, with
``du/dt`` from ``jax.jvp(u, (z, r, t), (v, 0, 1))`` and ``t - r`` clipped to [0, 1] as the
official code does. The loss is ``w * ||u - u_tgt||^2`` summed over elements with the adaptive
weight ``w = sg(1 / (||Delta||^2 + c)^p)`` (Eq. 22); with ``p = 1`` the weighted loss sits near
1 whatever the model does, which is expected.

Sampling of ``(r, t)``: both from one time distribution (logit-normal(-0.4, 1.0) for ImageNet),
ordered so that ``t >= r``; the first ``floor(B * equal_times_fraction)`` rows take ``r = t``
(the official ``data_proportion``, 0.75: 25% of the rows have ``r != t``). Rows with ``r = t``
are plain flow matching: their target is ``v``.

Classifier-free guidance folded into training (paper Sec. 4.2, Eq. 19-21): inside the interval
``t_min <= t <= t_max``, the velocity that defines the target becomes

    v_tilde = omega v + kappa u(z_t, t, t | y) + (1 - omega - kappa) u(z_t, t, t | null),

with both guidance terms under stop-gradient, so the effective scale is
``omega / (1 - kappa)``; ``omega = 1, kappa = 0`` is no guidance (the official defaults are
``omega = 1, kappa = 0.5``: Gsunshine/meanflow ``meanflow.py``, class ``MeanFlow``). Labels are
dropped to the null label and dropped rows keep ``v_tilde = v``. Where they are dropped is
``MeanFlowGuidance.drop_placement``: ``"first_rows"`` (official ``MeanFlow.cond_drop``: draw
``n ~ Binomial(B, label_dropout)`` and drop the first ``n`` rows, which are rows with
``r = t`` while ``n <= floor(B * equal_times_fraction)``) or ``"independent"`` (each row with
probability ``label_dropout``, whatever its ``r``). The
guidance terms are evaluated with the model as given (if it has dropout, the trainer chooses
its mode; DiffuseNNX's bug was to leave the model in eval mode afterwards).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
from jax import Array

from nnx_objectives.class_dropout import drop_labels
from nnx_objectives.model_jvp import network_jvp
from nnx_objectives.protocols import TimeDistribution, TwoTimeNetwork
from nnx_objectives.time_distributions import LogitNormalTime
from nnx_samplers import expand_time

__all__ = [
    "DROP_PLACEMENTS",
    "MeanFlowGuidance",
    "MeanFlowObjective",
    "drop_first_rows",
    "meanflow_target",
    "sample_two_times",
]

DROP_PLACEMENTS = ("first_rows", "independent")


def sample_two_times(
    key: Array,
    batch_size: int,
    time_distribution: TimeDistribution,
    equal_times_fraction: float,
) -> tuple[Array, Array]:
    """Draw ``(r, t)`` ``(B,)`` each with ``r <= t``; the first rows get ``r = t``.

    Args:
      key: PRNG key.
      batch_size: ``B``.
      time_distribution: law of both draws before ordering.
      equal_times_fraction: fraction of rows with ``r = t`` (MeanFlow's ``data_proportion``);
        ``floor(B * fraction)`` rows, the first ones.
    """
    if not 0.0 <= equal_times_fraction <= 1.0:
        raise ValueError(f"equal_times_fraction must lie in [0, 1], got {equal_times_fraction}.")
    key_a, key_b = jax.random.split(key)
    first = time_distribution(key_a, (batch_size,))
    second = time_distribution(key_b, (batch_size,))
    t, r = jnp.maximum(first, second), jnp.minimum(first, second)
    num_equal = int(batch_size * equal_times_fraction)
    r = jnp.where(jnp.arange(batch_size) < num_equal, t, r)
    return r, t


def drop_first_rows(key: Array, y: Array, *, probability: float, null_label: int) -> Array:
    """MeanFlow's official class dropout: the first ``n ~ Binomial(B, probability)`` rows.

    Gsunshine/meanflow ``meanflow.py``, ``MeanFlow.cond_drop``: one uniform draw per row sets
    how many rows are dropped, and the dropped rows are the leading ones (the rows that
    `sample_two_times` gives ``r = t``).

    Args:
      key: PRNG key.
      y: ``(B,)`` int labels.
      probability: drop probability in [0, 1] (0.1).
      null_label: the null label (``num_classes``).

    Returns:
      ``(B,)`` labels, rows ``[0, n)`` equal to ``null_label``.
    """
    y = jnp.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"labels must have shape (batch,), got {y.shape}.")
    count = jnp.sum(jax.random.uniform(key, y.shape) < probability)
    return jnp.where(jnp.arange(y.shape[0]) < count, jnp.asarray(null_label, y.dtype), y)


def meanflow_target(
    model: TwoTimeNetwork, z: Array, r: Array, t: Array, y: Array, velocity: Array
) -> tuple[Array, Array]:
    """The network's average velocity and its MeanFlow target (paper Eq. 10).

    ``u, du/dt = jvp(u(., ., ., y), (z, r, t), (velocity, 0, 1))`` and
    ``u_tgt = sg(velocity - clip(t - r, 0, 1) du/dt)``. When ``velocity`` is the true marginal
    velocity of a flow and ``model`` is its exact average velocity, ``u_tgt == u``.

    Args:
      model: ``model(z, r, t, y) -> u``.
      z: ``(B, ...)`` the state ``z_t``.
      r: ``(B,)`` start time, ``r <= t``.
      t: ``(B,)`` current time (0 = data, 1 = noise).
      y: ``(B,)`` labels passed to the model.
      velocity: ``(B, ...)`` the tangent of ``z`` (the conditional or guided velocity).

    Returns:
      ``(u, u_tgt)``, both ``(B, ...)``; gradients flow only through ``u``.
    """
    u, du_dt = network_jvp(model, (z, r, t), (velocity, jnp.zeros_like(r), jnp.ones_like(t)), y)
    gap = expand_time(jnp.clip(t - r, 0.0, 1.0), z)
    target = velocity.astype(jnp.float32) - gap * du_dt.astype(jnp.float32)
    return u, jax.lax.stop_gradient(target)


@dataclass(frozen=True)
class MeanFlowGuidance:
    """Classifier-free guidance folded into MeanFlow training, with class dropout.

    Attributes:
      null_label: the explicit null label (``num_classes``).
      omega: weight of the conditional velocity ``v`` (1 = no guidance).
      kappa: weight of the model's own conditional average velocity at ``r = t``.
      t_min: guidance applies where ``t_min <= t <= t_max`` (0 = data, 1 = noise).
      t_max: upper end of the guidance interval.
      label_dropout: probability of replacing a label by ``null_label`` (0.1).
      drop_placement: ``"first_rows"`` (official: the first ``n ~ Binomial(B, label_dropout)``
        rows, which have ``r = t``; `drop_first_rows`) or ``"independent"`` (each row on its
        own, whatever its ``r``).

    Defaults are the official ones (Gsunshine/meanflow ``meanflow.py``: ``omega = 1.0``,
    ``kappa = 0.5``, ``class_dropout_prob = 0.1``, ``t_start = 0``, ``t_end = 1``).
    """

    null_label: int
    omega: float = 1.0
    kappa: float = 0.5
    t_min: float = 0.0
    t_max: float = 1.0
    label_dropout: float = 0.1
    drop_placement: str = "first_rows"

    def __post_init__(self) -> None:
        if not 0.0 <= self.t_min <= self.t_max <= 1.0:
            raise ValueError(
                f"the guidance interval needs 0 <= t_min <= t_max <= 1, got "
                f"[{self.t_min}, {self.t_max}]."
            )
        if not 0.0 <= self.label_dropout <= 1.0:
            raise ValueError(f"label_dropout must lie in [0, 1], got {self.label_dropout}.")
        if self.drop_placement not in DROP_PLACEMENTS:
            raise ValueError(
                f"drop_placement={self.drop_placement!r}; use one of {DROP_PLACEMENTS}."
            )

    def drop(self, key: Array, y: Array) -> Array:
        """``(B,)`` labels with the dropped rows set to ``null_label`` (``drop_placement``)."""
        drop = drop_first_rows if self.drop_placement == "first_rows" else drop_labels
        return drop(key, y, probability=self.label_dropout, null_label=self.null_label)

    @property
    def effective_scale(self) -> float:
        """The guidance scale the trained model behaves as: ``omega / (1 - kappa)``."""
        return self.omega / (1.0 - self.kappa)


@dataclass(frozen=True)
class MeanFlowObjective:
    """MeanFlow's loss for a two-time network ``model(z_t, r, t, y) -> u``.

    Attributes:
      time_distribution: law of the two times before ordering (logit-normal(-0.4, 1.0)).
      equal_times_fraction: fraction of rows with ``r = t`` (official ``data_proportion``).
      adaptive_power: ``p`` of the adaptive weight; 0 gives the plain squared error.
      adaptive_constant: ``c`` of the adaptive weight.
      guidance: CFG folded into training with class dropout; ``None`` for neither.
    """

    time_distribution: TimeDistribution = field(
        default_factory=lambda: LogitNormalTime(mean=-0.4, std=1.0)
    )
    equal_times_fraction: float = 0.75
    adaptive_power: float = 1.0
    adaptive_constant: float = 0.01
    guidance: MeanFlowGuidance | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.equal_times_fraction <= 1.0:
            raise ValueError(
                f"equal_times_fraction must lie in [0, 1], got {self.equal_times_fraction}."
            )
        if self.adaptive_power < 0 or self.adaptive_constant <= 0:
            raise ValueError(
                "adaptive_power must be >= 0 and adaptive_constant > 0, got "
                f"{self.adaptive_power} and {self.adaptive_constant}."
            )

    def _guided_velocity(
        self, model: TwoTimeNetwork, z: Array, t: Array, y: Array, velocity: Array
    ) -> Array:
        guidance = self.guidance
        assert guidance is not None
        null = jnp.full_like(y, guidance.null_label)
        guided = guidance.omega * velocity
        if guidance.kappa != 0.0:
            u_cond = jax.lax.stop_gradient(model(z, t, t, y)).astype(jnp.float32)
            guided = guided + guidance.kappa * u_cond
        uncond_weight = 1.0 - guidance.omega - guidance.kappa
        if uncond_weight != 0.0:
            u_null = jax.lax.stop_gradient(model(z, t, t, null)).astype(jnp.float32)
            guided = guided + uncond_weight * u_null
        use_guidance = (t >= guidance.t_min) & (t <= guidance.t_max) & (y != guidance.null_label)
        return jnp.where(expand_time(use_guidance, z), guided, velocity)

    def loss_at(
        self, model: TwoTimeNetwork, x0: Array, y: Array, r: Array, t: Array, eps: Array
    ) -> tuple[Array, dict[str, Array]]:
        """The loss at given ``(r, t)`` ``(B,)`` and ``eps`` with labels ``y`` already dropped.

        Rows whose label equals the guidance's null label keep the plain velocity as tangent.
        """
        te = expand_time(t, x0)
        x0 = x0.astype(jnp.float32)
        eps = eps.astype(jnp.float32)
        z = (1.0 - te) * x0 + te * eps
        velocity = eps - x0
        if self.guidance is not None:
            velocity = self._guided_velocity(model, z, t, y, velocity)
        u, target = meanflow_target(model, z, r, t, y, velocity)
        if u.shape != x0.shape:
            raise ValueError(f"the model returned shape {u.shape} for data of shape {x0.shape}.")
        delta = u.astype(jnp.float32) - target
        squared = jnp.sum(jnp.reshape(delta**2, (delta.shape[0], -1)), axis=1)
        weight = jax.lax.stop_gradient(
            1.0 / (squared + self.adaptive_constant) ** self.adaptive_power
        )
        aux = {"t": t, "r": r, "loss_unweighted": squared, "adaptive_weight": weight}
        return weight * squared, aux

    def __call__(
        self, model: TwoTimeNetwork, x0: Array, y: Array, key: Array
    ) -> tuple[Array, dict[str, Array]]:
        """``objective(model, x0, y, key) -> ((B,) loss, aux)``; ``model(z, r, t, y) -> u``."""
        key_time, key_noise, key_drop = jax.random.split(key, 3)
        r, t = sample_two_times(
            key_time, x0.shape[0], self.time_distribution, self.equal_times_fraction
        )
        eps = jax.random.normal(key_noise, x0.shape, dtype=jnp.float32)
        if self.guidance is not None:
            y = self.guidance.drop(key_drop, y)
        loss, aux = self.loss_at(model, x0, y, r, t, eps)
        if self.guidance is not None:
            aux["label_dropped"] = (y == self.guidance.null_label).astype(jnp.float32)
        return loss, aux
