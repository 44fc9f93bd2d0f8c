"""The pluggable kinds that objectives consume: networks, objectives and time distributions.

The network protocols (``Network``, ``TwoTimeNetwork``) are the samplers' own
(``nnx_samplers.fields``), re-exported here: one definition for training and sampling.

Time convention (library-wide, ``CONVENTIONS.md``): ``t`` in [0, 1], ``t = 0`` is data and
``t = 1`` is noise; ``x_t = alpha(t) * x0 + sigma(t) * eps``; velocity ``v = dx_t/dt``.
Images are NHWC, but every objective here works on any ``(B, ...)`` array.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from jax import Array

from nnx_samplers import Network, TwoTimeNetwork

__all__ = ["Network", "Objective", "TimeDistribution", "TwoTimeNetwork"]


@runtime_checkable
class Objective(Protocol):
    """A training objective: ``objective(model, x0, y, key) -> (loss, aux)``.

    Args (of ``__call__``):
      model: a :class:`Network` or :class:`TwoTimeNetwork` (or a wrapper the objective
        documents, e.g. ``REPAModel``, ``WithLogVar``).
      x0: ``(B, ...)`` clean data.
      y: ``(B,)`` int32 labels.
      key: a PRNG key; every random draw of the objective comes from it.

    Returns:
      ``loss``: ``(B,)`` float32 per-example loss (the trainer takes the mean);
      ``aux``: named metrics, each ``(B,)`` or scalar. Objectives that draw a time put it in
      ``aux["t"]`` (``(B,)``, our convention), which wrappers such as ``UncertaintyWeighted``
      read.
    """

    def __call__(self, model: Any, x0: Array, y: Array, key: Array) -> tuple[Array, dict]: ...


@runtime_checkable
class TimeDistribution(Protocol):
    """A distribution of the training time ``t`` on [0, 1] (0 = data, 1 = noise).

    ``__call__(key, shape)`` draws samples; ``quantile(u)`` is the inverse CDF, so that
    ``quantile(uniform)`` has the same law and quadrature over ``u`` computes expectations.
    """

    def __call__(self, key: Array, shape: tuple[int, ...]) -> Array: ...

    def quantile(self, u: Array) -> Array: ...
