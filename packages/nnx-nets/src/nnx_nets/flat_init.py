"""Initialisers that draw a matrix and reshape it, for conv kernels.

With jax 0.10's default ``jax_threefry_partitionable=True``, XLA:CPU compiles random draws
with several non-unit axes very slowly: about 10 s of CPU for one ``jax.random.normal`` of shape
``(3, 3, 8, 16)`` and 3 s for ``(2, 4, 8)``, against about 0.6 s for 2-D shapes (measured on
the CI machine kind). Building a network with dozens of conv kernels would spend minutes
compiling its initialisers. Drawing the kernel as a ``(prod(shape[:-1]), shape[-1])`` matrix
and reshaping gives the same distribution: the fan-in (``kh * kw * in`` for an HWIO kernel) is
unchanged, so fan-in variance scaling (LeCun, He) and fixed-scale initialisers are exact. Do
not wrap fan-out or fan-average initialisers.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from flax import nnx


def flat_initializer(init: nnx.Initializer) -> nnx.Initializer:
    """Wrap ``init`` so that an n-D kernel is drawn as a 2-D ``(fan_in, out)`` matrix."""

    def wrapped(key, shape, dtype=jnp.float32):
        if len(shape) <= 2:
            return init(key, shape, dtype)
        matrix = init(key, (math.prod(shape[:-1]), shape[-1]), dtype)
        return matrix.reshape(shape)

    return wrapped


lecun_normal_flat = flat_initializer(nnx.initializers.lecun_normal())
