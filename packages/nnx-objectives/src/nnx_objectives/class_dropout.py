"""Class dropout for classifier-free guidance: replace labels by an explicit null label.

The network's label table has ``num_classes + 1`` rows and row ``num_classes`` is the null
label; it is always passed as the argument ``null_label`` (CONVENTIONS.md), never written as
a literal such as 1000. DiT, SiT and REPA drop labels with probability 0.1 (Ho & Salimans
2022).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array

from nnx_objectives.protocols import Objective

__all__ = ["ClassDropout", "drop_labels"]


def _check_probability(probability: float) -> None:
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"the label dropout probability must lie in [0, 1], got {probability}.")


def drop_labels(key: Array, y: Array, *, probability: float, null_label: int) -> Array:
    """Replace each label by ``null_label`` with probability ``probability``, independently.

    Args:
      key: PRNG key.
      y: ``(B,)`` int labels in ``[0, num_classes)``.
      probability: drop probability in [0, 1] (0.1 in DiT/SiT/REPA/MeanFlow).
      null_label: the null label, ``num_classes`` for the networks of this library.

    Returns:
      ``(B,)`` labels of the same dtype, with dropped entries equal to ``null_label``.
    """
    _check_probability(probability)
    y = jnp.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"labels must have shape (batch,), got {y.shape}.")
    dropped = jax.random.bernoulli(key, probability, y.shape)
    return jnp.where(dropped, jnp.asarray(null_label, dtype=y.dtype), y)


@dataclass(frozen=True)
class ClassDropout:
    """Wrap an objective so that its labels are dropped to ``null_label`` first.

    ``ClassDropout(objective, probability=0.1, null_label=num_classes)(model, x0, y, key)``
    splits ``key``, drops labels with one half and calls ``objective`` with the other. Keyword
    arguments (e.g. REPA's ``images``) pass through. ``aux["label_dropped"]`` is 1.0 where the
    label became ``null_label``.

    Attributes:
      objective: the wrapped objective.
      probability: drop probability in [0, 1].
      null_label: the explicit null label.
    """

    objective: Objective
    probability: float
    null_label: int

    def __post_init__(self) -> None:
        _check_probability(self.probability)

    def __call__(
        self, model: Any, x0: Array, y: Array, key: Array, **kwargs: Any
    ) -> tuple[Array, dict[str, Array]]:
        key_drop, key_inner = jax.random.split(key)
        dropped_y = drop_labels(
            key_drop, y, probability=self.probability, null_label=self.null_label
        )
        loss, aux = self.objective(model, x0, dropped_y, key_inner, **kwargs)
        was_dropped = jnp.logical_and(dropped_y == self.null_label, jnp.asarray(y) != dropped_y)
        return loss, {**aux, "label_dropped": was_dropped.astype(jnp.float32)}
