"""Class dropout: labels go to the explicit null label at the requested rate."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nnx_objectives import ClassDropout, drop_labels


def test_drop_labels_rate_and_null_label(jit):
    y = np.arange(4000, dtype=np.int32) % 10
    dropped = np.asarray(
        jit(drop_labels, static_argnames=("probability", "null_label"))(
            jax.random.key(0, impl="rbg"), y, probability=0.1, null_label=10
        )
    )
    changed = dropped != y
    # Bernoulli(0.1) over 4000 labels: 0.1 +- 0.0047 (1 sd); 0.08..0.12 is > 4 sd.
    assert 0.08 < changed.mean() < 0.12
    np.testing.assert_array_equal(dropped[changed], 10)
    assert dropped.dtype == np.int32
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        drop_labels(jax.random.key(0, impl="rbg"), y, probability=1.5, null_label=10)


def test_wrapper_passes_dropped_labels_and_keywords():
    seen = {}

    def objective(model, x0, y, key, *, images=None):
        seen["y"], seen["images"] = y, images
        return jnp.zeros((x0.shape[0],)), {"t": jnp.zeros((x0.shape[0],))}

    wrapped = ClassDropout(objective, probability=1.0, null_label=7)
    y = np.array([0, 1, 7, 3], np.int32)
    _, aux = wrapped(None, np.zeros((4, 2), np.float32), y, jax.random.key(1, impl="rbg"), images=5)
    np.testing.assert_array_equal(np.asarray(seen["y"]), 7)
    assert seen["images"] == 5
    # The row whose label already was the null label is not counted as dropped.
    np.testing.assert_array_equal(np.asarray(aux["label_dropped"]), [1.0, 1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ClassDropout(objective, probability=-0.1, null_label=7)
