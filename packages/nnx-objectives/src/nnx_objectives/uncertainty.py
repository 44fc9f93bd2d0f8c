"""EDM2's learned uncertainty weighting of a per-example loss (also sCM's adaptive weighting).

Karras et al. 2024 (EDM2, Sec. 5 "Learned uncertainty weighting", Eq. 21) learn a log-variance
``u(sigma)`` and minimise

    L' = L / exp(u) + u,

whose minimum over ``u`` is at ``u = ln E[L | sigma]``: every noise level then contributes
equally. EDM2 computes ``u`` with a magnitude-preserving Fourier embedding of
``c_noise = ln(sigma) / 4`` followed by a weight-normalised linear layer to one number.
Lu & Song 2024 (sCM, Eq. 8) use the same form, ``e^{w(t)} / D ||.||^2 - w(t)``, with ``w = -u``.

Time convention: ``t`` in [0, 1], 0 = data, 1 = noise. The head takes our ``t`` and feeds
``c_noise = ln(sigma_E) / 4 = logit(t) / 4`` (``sigma_E = t / (1 - t)``), which is EDM2's input
for EDM objectives and a smooth function of ``t`` for every other one.

Parts: ``LogVarHead`` (``t -> u``, on ``nnx_nets.MPFourier`` fixed random features),
``WithLogVar`` (a network paired with its head) and ``UncertaintyWeighted`` (the objective
wrapper).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax import Array

from nnx_nets import MPFourier
from nnx_objectives.protocols import Objective

__all__ = ["LogVarHead", "UncertaintyWeighted", "WithLogVar"]


class LogVarHead(nnx.Module):
    """EDM2's log-variance head: ``u(t) = <w / ||w||, MPFourier(logit(t) / 4)>``.

    The linear layer is EDM2's ``MPConv`` with an empty kernel: its weight is normalised to
    unit norm on every call (EDM2 also rewrites the stored weight to unit norm during
    training, "forced weight normalisation"; that in-place write is not done here, which
    changes only the optimiser's effective step size).

    Args:
      num_channels: Fourier features (EDM2: 128).
      rngs: ``nnx.Rngs`` with a ``params`` stream.
    """

    def __init__(self, num_channels: int = 128, *, rngs: nnx.Rngs):
        # One key split in two (not two draws of the stream): the tables of earlier releases.
        key_freqs, key_phases = jax.random.split(rngs.params())
        self.fourier = MPFourier(num_channels, keys=(key_freqs, key_phases), dtype=jnp.float32)
        weight = jax.random.normal(rngs.params(), (num_channels, 1))
        self.weight = nnx.Param(weight, logical_axes=(None, None))

    def __call__(self, t: Array) -> Array:
        """Log-variance ``u`` of shape ``(B,)`` at time ``t`` ``(B,)`` (0 = data, 1 = noise)."""
        t = jnp.clip(jnp.asarray(t, dtype=jnp.float32), 1e-6, 1.0 - 1e-6)
        c_noise = (jnp.log(t) - jnp.log1p(-t)) / 4.0
        features = self.fourier(c_noise)
        weight = self.weight[...]
        fan_in = weight.shape[0]
        # EDM2 normalize(): w / (eps + ||w|| / sqrt(fan_in)), then the 1 / sqrt(fan_in) gain.
        norm = 1e-4 + jnp.linalg.norm(weight, axis=0, keepdims=True) / math.sqrt(fan_in)
        weight = weight / norm / math.sqrt(fan_in)
        return (features @ weight)[:, 0]


class WithLogVar(nnx.Module):
    """A network paired with its log-variance head, for ``UncertaintyWeighted``.

    Calling it forwards every argument to ``net``, so it is itself a network for samplers.

    Args:
      net: any network (``(x_t, t, y)``, ``(x_t, r, t, y)``, ``REPAModel``, ``EDMPrecond``...).
      head: a ``LogVarHead`` (or any module ``head(t) -> (B,)``).
    """

    def __init__(self, net: Any, head: nnx.Module):
        self.net = net
        self.head = head

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.net(*args, **kwargs)


@dataclass(frozen=True)
class UncertaintyWeighted:
    """Wrap an objective: ``loss' = loss / exp(u(t)) + u(t)`` (EDM2 Eq. 21).

    Takes a ``WithLogVar`` model: the inner objective gets ``model.net``; the head gets the
    inner objective's ``aux["t"]``. Keyword arguments pass through. With ``EDMObjective`` this
    is EDM2's loss exactly (EDM2 sums ``(weight / e^u) (D - x0)^2 + u`` over elements; the mean
    used here divides both terms by the same count). With ``ConsistencyObjective`` it is
    sCM's adaptive weighting with ``w = -u``.

    Attributes:
      objective: the wrapped objective; it must report ``aux["t"]`` ``(B,)``.
    """

    objective: Objective

    def __call__(
        self, model: WithLogVar, x0: Array, y: Array, key: Array, **kwargs: Any
    ) -> tuple[Array, dict[str, Array]]:
        if not isinstance(model, WithLogVar):
            raise TypeError(
                f"UncertaintyWeighted needs a WithLogVar(net, head) model, got "
                f"{type(model).__name__}; wrap it: WithLogVar(model, LogVarHead(rngs=rngs))."
            )
        loss, aux = self.objective(model.net, x0, y, key, **kwargs)
        if "t" not in aux:
            raise KeyError(
                f"{type(self.objective).__name__} does not report aux['t'], which the "
                "log-variance head needs."
            )
        logvar = model.head(aux["t"]).astype(jnp.float32)
        weighted = loss * jnp.exp(-logvar) + logvar
        return weighted, {**aux, "logvar": logvar, "loss_before_uncertainty": loss}
