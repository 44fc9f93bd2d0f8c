"""Helpers shared by the nnx-nets tests."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


def random_model(ctor, seed: int = 0, scale: float = 0.3) -> nnx.Module:
    """``ctor()`` built abstractly, every variable then drawn from N(0, scale^2) on the host.

    Eager construction compiles every initialiser once per shape (about a second each on the
    CI cores); the tests only need random non-zero weights, and a fresh DiT-style network is
    exactly zero at the output (adaLN-Zero), which would make a parity test prove nothing.
    """
    graphdef, state = nnx.split(nnx.eval_shape(ctor))
    rng = np.random.default_rng(seed)
    state = jax.tree.map(
        lambda s: jnp.asarray(scale * rng.standard_normal(s.shape), s.dtype), state
    )
    return nnx.merge(graphdef, state)
