"""Class-balanced, deterministic, sharded evaluation sampling."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec

import nnx_fid


def test_exact_balance_when_divisible():
    labels = nnx_fid.balanced_labels(1000, 10, seed=0)
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(np.bincount(labels, minlength=10), np.full(10, 100))
    assert not np.all(np.diff(labels) >= 0)  # shuffled


def test_near_balance_and_determinism():
    labels = nnx_fid.balanced_labels(1003, 10, seed=1)
    counts = np.bincount(labels, minlength=10)
    assert counts.sum() == 1003 and counts.max() - counts.min() == 1
    np.testing.assert_array_equal(labels, nnx_fid.balanced_labels(1003, 10, seed=1))
    assert not np.array_equal(labels, nnx_fid.balanced_labels(1003, 10, seed=2))


@pytest.fixture(scope="module")
def mesh():
    return jax.make_mesh((8,), ("data",))


def _generate_recording(seen_specs):
    """Images whose pixels encode the label and a key-dependent offset."""

    @jax.jit
    def draw(key, labels):
        offset = jax.random.randint(key, (), 0, 10)
        pixels = (labels * 10 + offset).astype(jnp.uint8)
        return jnp.broadcast_to(pixels[:, None, None, None], (labels.shape[0], 4, 4, 3))

    def generate(key, labels):
        seen_specs.append(labels.sharding.spec)
        return draw(key, labels)

    return generate


def test_sharded_loop(mesh):
    seen = []
    images, labels = nnx_fid.generate_samples(
        _generate_recording(seen),
        num_samples=20,
        num_classes=5,
        batch_size=8,
        seed=3,
        mesh=mesh,
        progress=False,
    )
    assert images.shape == (20, 4, 4, 3) and images.dtype == np.uint8
    assert len(seen) == 3 and all(spec == PartitionSpec("data") for spec in seen)
    np.testing.assert_array_equal(images[:, 0, 0, 0] // 10, labels)  # image i has label i
    np.testing.assert_array_equal(np.bincount(labels), np.full(5, 4))
    again, again_labels = nnx_fid.generate_samples(
        _generate_recording([]),
        num_samples=20,
        num_classes=5,
        batch_size=8,
        seed=3,
        mesh=mesh,
        progress=False,
    )
    np.testing.assert_array_equal(images, again)
    np.testing.assert_array_equal(labels, again_labels)


def test_bad_inputs_are_named(mesh):
    with pytest.raises(ValueError, match="multiple of the 8 devices"):
        nnx_fid.generate_samples(
            _generate_recording([]),
            num_samples=4,
            num_classes=2,
            batch_size=6,
            seed=0,
            mesh=mesh,
            progress=False,
        )
    with pytest.raises(TypeError, match="uint8"):
        nnx_fid.generate_samples(
            lambda key, labels: jnp.zeros((labels.shape[0], 4, 4, 3)),
            num_samples=4,
            num_classes=2,
            batch_size=4,
            seed=0,
            progress=False,
        )


def test_padded_batches_repeat_the_last_index_to_the_static_size():
    batches = list(nnx_fid.padded_batches(np.arange(5, 12), 3))
    assert [count for _, count in batches] == [3, 3, 1]
    np.testing.assert_array_equal(batches[-1][0], [11, 11, 11])
    assert all(padded.shape == (3,) and padded.dtype == np.int64 for padded, _ in batches)


def test_sample_in_batches_calls_with_static_size_and_drops_padding():
    calls = []

    def sample_batch(indices, labels):
        calls.append((indices.copy(), labels.copy()))
        return np.stack([indices * 10, labels], axis=1)

    labels = np.arange(7, dtype=np.int32) % 3
    out = np.concatenate(list(nnx_fid.sample_in_batches(sample_batch, labels, batch_size=4)))
    assert [c[0].shape for c in calls] == [(4,), (4,)]
    np.testing.assert_array_equal(out[:, 0], np.arange(7) * 10)  # every index once, in order
    np.testing.assert_array_equal(out[:, 1], labels)
    with pytest.raises(ValueError, match="returned 2 rows for 4"):
        list(nnx_fid.sample_in_batches(lambda i, y: i[:2], labels, batch_size=4))
