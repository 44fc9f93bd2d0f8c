"""``expand_time``: the one time-broadcasting rule that samplers and objectives share."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import nnx_samplers as ns


def test_scalar_stays_scalar_and_per_sample_time_takes_the_rank_of_x():
    x = jnp.ones((3, 4, 5, 2), jnp.bfloat16)
    scalar = ns.expand_time(0.25, x)
    # 0-d, not (1, 1, 1, 1): XLA folds a scalar differently, and sampled images would move.
    assert scalar.shape == ()
    # A Python float stays weakly typed, so a bfloat16 state is not promoted to float32.
    assert (scalar * x).dtype == jnp.bfloat16
    per_sample = ns.expand_time(jnp.asarray([0.1, 0.2, 0.3]), x)
    assert per_sample.shape == (3, 1, 1, 1)
    np.testing.assert_array_equal(per_sample[:, 0, 0, 0], np.float32([0.1, 0.2, 0.3]))


@pytest.mark.parametrize("shape", [(2,), (3, 1)])
def test_wrong_time_shape_is_refused(shape):
    with pytest.raises(ValueError, match=r"scalar or have shape \(batch,\) = \(3,\)"):
        ns.expand_time(jnp.zeros(shape), jnp.ones((3, 4)))
