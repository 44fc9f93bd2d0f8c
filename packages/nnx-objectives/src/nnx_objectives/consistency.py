"""Continuous-time consistency training and distillation, sCT / sCD (Lu & Song 2024, sCM).

Time convention: ``t`` in [0, 1], 0 = data, 1 = noise; TrigFlow's angle is ``s = pi t / 2``
and its state ``x_s = cos(s) x0 + sin(s) sigma_d eps`` (see ``trigflow``). The network is
``F = model(x_s / sigma_d, t, y)`` and the consistency function
``f = cos(s) x_s - sin(s) sigma_d F``.

The continuous-time consistency gradient (sCM Eq. 5-6) is
``grad_theta E[-w(s) sigma_d sin(s) F_theta^T df_theta-/ds]`` with ``theta- = sg(theta)`` and
the total derivative along the probability-flow ODE

    df/ds = -cos(s) (sigma_d F - dx_s/ds) - sin(s) (x_s + sigma_d dF/ds).

With sCM's prior weight ``w(s) = 1 / (sigma_d tan s)`` the factor becomes ``cos(s)``, and
sCM's Algorithm 1 implements it as a squared-error surrogate:

    g = -cos^2(s) (sigma_d F- - dx_s/ds) - r cos(s) sin(s) (x_s + sigma_d dF-/ds)     (JVP form)
    g <- g / (||g|| + c)                                   (tangent normalisation, c = 0.1)
    L = mean_elements( (F_theta - F_theta- - g)^2 )         (gradient: -(2/D) dF/dtheta^T g)

where ``r = min(1, step / warmup_steps)`` is the tangent warm-up and ``||g||`` the per-example
L2 norm over all elements. The product ``cos(s) sin(s) dF-/ds`` comes from one ``jax.jvp`` of
``F`` with tangents ``(cos sin dx_s/ds / sigma_d, cos sin * 2/pi)`` for its inputs
``(x_s / sigma_d, t)`` (``dt/ds = 2 / pi``). sCM's adaptive weighting
``e^{w_phi(t)} / D ||.||^2 - w_phi(t)`` is ``UncertaintyWeighted(ConsistencyObjective(...))``
with ``u = -w_phi``.

The loss value equals ``mean(g^2)`` and is not a measure of progress; only its gradient
matters.

What distinguishes sCT from sCD is ``dx_s/ds``:

* sCT (``ConditionalTangent``): the single-sample estimate ``cos(s) sigma_d eps - sin(s) x0``;
* sCD (``TeacherTangent``): ``sigma_d F_teacher(x_s / sigma_d, t, y)`` from a pretrained
  TrigFlow diffusion model, optionally with classifier-free guidance
  ``F_null + w (F_cond - F_null)``.

Left out from the paper: the JVP-friendly network changes (adaptive double normalisation,
positional time embeddings with small Fourier scale, flash-attention JVP kernels) belong to the
networks; sCD's guidance as a network input (guidance-conditioned students) is not provided;
the teacher's own TrigFlow pretraining is ``InterpolantObjective`` with ``GVPPath`` on
``x0 / sigma_d`` (its velocity is ``(pi / 2) F``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
from jax import Array

from nnx_objectives.interpolant import mean_over_elements
from nnx_objectives.model_jvp import network_jvp
from nnx_objectives.protocols import Network, TimeDistribution
from nnx_objectives.trigflow import TrigFlowTime, trigflow_angle, trigflow_state
from nnx_samplers import combine_guidance, expand_time

__all__ = ["ConditionalTangent", "ConsistencyObjective", "TangentSource", "TeacherTangent"]


@runtime_checkable
class TangentSource(Protocol):
    """Where ``dx_s/ds`` comes from: ``source(x0=, eps=, x_s=, t=, y=, sigma_data=) -> (B, ...)``."""

    def __call__(
        self, *, x0: Array, eps: Array, x_s: Array, t: Array, y: Array, sigma_data: float
    ) -> Array: ...


@dataclass(frozen=True)
class ConditionalTangent:
    """sCT: ``dx_s/ds = cos(s) sigma_d eps - sin(s) x0``, the conditional TrigFlow velocity."""

    def __call__(
        self, *, x0: Array, eps: Array, x_s: Array, t: Array, y: Array, sigma_data: float
    ) -> Array:
        s = expand_time(trigflow_angle(t), x0)
        return jnp.cos(s) * sigma_data * eps - jnp.sin(s) * x0


@dataclass(frozen=True)
class TeacherTangent:
    """sCD: ``dx_s/ds = sigma_d F_teacher(x_s / sigma_d, t, y)``, under stop-gradient.

    With ``guidance_scale != 1`` the teacher is guided,
    ``F = F(., null_label) + guidance_scale (F(., y) - F(., null_label))``.

    Attributes:
      teacher: pretrained TrigFlow network ``teacher(x / sigma_d, t, y) -> F``.
      guidance_scale: classifier-free guidance scale of the teacher (1 = none).
      null_label: the explicit null label, required when ``guidance_scale != 1``.
    """

    teacher: Any
    guidance_scale: float = 1.0
    null_label: int | None = None

    def __post_init__(self) -> None:
        if self.guidance_scale != 1.0 and self.null_label is None:
            raise ValueError("TeacherTangent with guidance_scale != 1 needs null_label.")

    def __call__(
        self, *, x0: Array, eps: Array, x_s: Array, t: Array, y: Array, sigma_data: float
    ) -> Array:
        scaled = x_s / sigma_data
        f_cond = self.teacher(scaled, t, y).astype(jnp.float32)
        if self.guidance_scale != 1.0:
            null = jnp.full_like(y, self.null_label)
            f_null = self.teacher(scaled, t, null).astype(jnp.float32)
            # cond + (w - 1)(cond - null) = null + w (cond - null): one guidance formula
            f_cond = combine_guidance(f_cond, f_null, self.guidance_scale)
        return jax.lax.stop_gradient(sigma_data * f_cond)


@dataclass(frozen=True)
class ConsistencyObjective:
    """sCT (default) or sCD (``tangent=TeacherTangent(teacher)``) with TrigFlow.

    ``objective(model, x0, y, key, *, step=None)``; ``model(x_s / sigma_d, t, y) -> F``.
    ``step`` (an int or a traced scalar) is required when ``tangent_warmup_steps > 0``.

    Attributes:
      tangent: source of ``dx_s/ds`` (``ConditionalTangent`` for sCT).
      sigma_data: the data's standard deviation (0.5).
      time_distribution: law of ``t`` (``TrigFlowTime(P_mean, P_std, sigma_data)``).
      normalisation_constant: ``c`` of the tangent normalisation ``g / (||g|| + c)``;
        ``None`` turns normalisation off.
      tangent_warmup_steps: ``H``; the second term of ``g`` is scaled by ``min(1, step / H)``.
        0 disables the warm-up.
    """

    tangent: TangentSource = field(default_factory=ConditionalTangent)
    sigma_data: float = 0.5
    time_distribution: TimeDistribution = field(default_factory=TrigFlowTime)
    normalisation_constant: float | None = 0.1
    tangent_warmup_steps: int = 0

    def __post_init__(self) -> None:
        if self.sigma_data <= 0:
            raise ValueError(f"sigma_data must be positive, got {self.sigma_data}.")
        if self.normalisation_constant is not None and self.normalisation_constant <= 0:
            raise ValueError(
                f"normalisation_constant must be positive or None, got {self.normalisation_constant}."
            )
        if self.tangent_warmup_steps < 0:
            raise ValueError(f"tangent_warmup_steps must be >= 0, got {self.tangent_warmup_steps}.")
        distribution = self.time_distribution
        if isinstance(distribution, TrigFlowTime) and distribution.sigma_data != self.sigma_data:
            raise ValueError(
                f"time_distribution has sigma_data={distribution.sigma_data} but the objective "
                f"has sigma_data={self.sigma_data}; pass TrigFlowTime(sigma_data="
                f"{self.sigma_data}, ...)."
            )

    def warmup_ratio(self, step: int | Array | None) -> Array:
        """``r = min(1, step / H)``; 1 without warm-up."""
        if self.tangent_warmup_steps == 0:
            return jnp.asarray(1.0, dtype=jnp.float32)
        if step is None:
            raise ValueError(
                f"ConsistencyObjective has tangent_warmup_steps={self.tangent_warmup_steps}: "
                "pass the training step, objective(model, x0, y, key, step=step)."
            )
        ratio = jnp.asarray(step, dtype=jnp.float32) / self.tangent_warmup_steps
        return jnp.minimum(ratio, 1.0)

    def tangent_direction(
        self, model: Network, x0: Array, y: Array, t: Array, eps: Array, warmup_ratio: Array
    ) -> tuple[Array, Array, Array]:
        """``(F_theta, g, ||g||)`` before normalisation, at given ``t`` and ``eps``.

        ``g = cos(s) * df-/ds`` (with the warm-up factor on its second term); ``F_theta``
        carries the gradient, ``g`` does not.
        """
        x0 = x0.astype(jnp.float32)
        eps = eps.astype(jnp.float32)
        sigma_data = self.sigma_data
        x_s = trigflow_state(x0, eps, t, sigma_data)
        dx_ds = self.tangent(x0=x0, eps=eps, x_s=x_s, t=t, y=y, sigma_data=sigma_data)
        dx_ds = jax.lax.stop_gradient(dx_ds.astype(jnp.float32))
        s = trigflow_angle(t)
        cos_sin = jnp.cos(s) * jnp.sin(s)
        f_theta, f_jvp = network_jvp(
            model,
            (x_s / sigma_data, t),
            (expand_time(cos_sin, x0) * dx_ds / sigma_data, cos_sin * (2.0 / math.pi)),
            y,
        )
        if f_theta.shape != x0.shape:
            raise ValueError(
                f"the model returned shape {f_theta.shape} for data of shape {x0.shape}."
            )
        f_minus = jax.lax.stop_gradient(f_theta.astype(jnp.float32))
        f_jvp = jax.lax.stop_gradient(f_jvp.astype(jnp.float32))
        cos_e = expand_time(jnp.cos(s), x0)
        g = -(cos_e**2) * (sigma_data * f_minus - dx_ds) - warmup_ratio * (
            expand_time(cos_sin, x0) * x_s + sigma_data * f_jvp
        )
        norm = jnp.sqrt(jnp.sum(jnp.reshape(g**2, (g.shape[0], -1)), axis=1))
        return f_theta.astype(jnp.float32), g, norm

    def loss_at(
        self,
        model: Network,
        x0: Array,
        y: Array,
        t: Array,
        eps: Array,
        *,
        step: int | Array | None = None,
    ) -> tuple[Array, dict[str, Array]]:
        """The surrogate loss at given ``t`` ``(B,)`` and ``eps`` (deterministic)."""
        f_theta, g, norm = self.tangent_direction(model, x0, y, t, eps, self.warmup_ratio(step))
        if self.normalisation_constant is not None:
            g = g / expand_time(norm + self.normalisation_constant, g)
        residual = f_theta - jax.lax.stop_gradient(f_theta) - g
        loss = mean_over_elements(residual**2)
        return loss, {"t": t, "tangent_norm": norm}

    def __call__(
        self,
        model: Network,
        x0: Array,
        y: Array,
        key: Array,
        *,
        step: int | Array | None = None,
    ) -> tuple[Array, dict[str, Array]]:
        """``objective(model, x0, y, key, step=...) -> ((B,) loss, aux)``."""
        key_time, key_noise = jax.random.split(key)
        t = self.time_distribution(key_time, (x0.shape[0],))
        eps = jax.random.normal(key_noise, x0.shape, dtype=jnp.float32)
        return self.loss_at(model, x0, y, t, eps, step=step)
