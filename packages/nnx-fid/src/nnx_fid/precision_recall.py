"""Improved precision and recall (Kynkaanniemi et al., 2019) as ADM's ``ManifoldEstimator``.

Each set of features spans a manifold estimate: the union of balls around its points whose
radius is the distance to the point's k-th nearest neighbour within the set (k = 3, the point
itself excluded: index k of the sorted distances including the zero self-distance)::

    precision = share of samples inside at least one reference ball
    recall    = share of reference points inside at least one sample ball

Distances are **squared** Euclidean, ``max(|u|^2 - 2 u.v + |v|^2, 0)``, and "inside" is ``<=``,
as in ADM. ADM evaluates the distance blocks in float16 and redoes them in float32 when any is
non-finite; here they run in float32 at ``Precision.HIGHEST`` (``dtype`` can select float16).
ADM uses the 10k images of the reference batch against all samples.

Everything is computed in fixed-shape blocks of ``batch_size`` rows and columns (padded blocks
are masked), so memory stays at ``batch_size^2`` distances and nothing recompiles.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

HIGHEST = jax.lax.Precision.HIGHEST


@functools.partial(jax.jit, static_argnames=("dtype",))
def _squared_distances(rows: jax.Array, cols: jax.Array, dtype=jnp.float32) -> jax.Array:
    rows, cols = rows.astype(dtype), cols.astype(dtype)
    row_norms = jnp.sum(rows * rows, axis=1)[:, None]
    col_norms = jnp.sum(cols * cols, axis=1)[None, :]
    cross = jnp.dot(rows, cols.T, precision=HIGHEST)
    distances = jnp.maximum(row_norms - 2 * cross + col_norms, 0).astype(jnp.float32)
    return distances


@functools.partial(jax.jit, static_argnames=("num", "dtype"))
def _merge_smallest(best, rows, cols, col_valid, num: int, dtype=jnp.float32):
    distances = _squared_distances(rows, cols, dtype)
    distances = jnp.where(col_valid[None, :], distances, jnp.inf)
    candidates = jnp.concatenate([best, distances], axis=1)
    return -jax.lax.top_k(-candidates, num)[0]


@functools.partial(jax.jit, static_argnames=("dtype",))
def _inside(rows, row_radii, cols, col_radii, dtype=jnp.float32):
    distances = _squared_distances(rows, cols, dtype)
    cols_in_row_balls = jnp.any(distances <= row_radii[:, None], axis=0)
    rows_in_col_balls = jnp.any(distances <= col_radii[None, :], axis=1)
    return rows_in_col_balls, cols_in_row_balls


def _blocks(features: np.ndarray, batch_size: int):
    """Yield (start, padded block, validity mask) of ``batch_size`` rows."""
    for start in range(0, features.shape[0], batch_size):
        block = features[start : start + batch_size]
        valid = np.ones(batch_size, bool)
        if block.shape[0] < batch_size:
            valid[block.shape[0] :] = False
            filler = np.zeros((batch_size - block.shape[0], features.shape[1]), features.dtype)
            block = np.concatenate([block, filler])
        yield start, block, valid


def _check_features(features: np.ndarray, k: int, name: str) -> np.ndarray:
    features = np.asarray(features, np.float32)
    if features.ndim != 2:
        raise ValueError(f"{name} features must be (N, D), got {features.shape}")
    if features.shape[0] <= k:
        raise ValueError(f"{name} needs more than k={k} points, got {features.shape[0]}")
    return features


def manifold_radii(
    features: np.ndarray, *, k: int = 3, batch_size: int = 1000, dtype=jnp.float32
) -> np.ndarray:
    """Squared distance of each point to its k-th nearest neighbour in the same set.

    Args:
      features: ``(N, D)`` features, N > k.
      k: neighbourhood size (ADM: 3).
      batch_size: rows and columns per distance block.
      dtype: distance dtype (float32; ADM uses float16 first).

    Returns:
      ``(N,)`` float32 squared radii.
    """
    features = _check_features(features, k, "manifold")
    batch_size = min(batch_size, features.shape[0])
    radii = np.empty(features.shape[0], np.float32)
    for start, rows, row_valid in _blocks(features, batch_size):
        best = jnp.full((batch_size, k + 1), jnp.inf, jnp.float32)
        for _, cols, col_valid in _blocks(features, batch_size):
            best = _merge_smallest(best, rows, cols, col_valid, k + 1, dtype)
        count = int(row_valid.sum())
        radii[start : start + count] = np.asarray(best[:count, k])
    return radii


def precision_recall(
    reference: np.ndarray,
    samples: np.ndarray,
    *,
    k: int = 3,
    batch_size: int = 1000,
    dtype=jnp.float32,
) -> tuple[float, float]:
    """Improved precision and recall of ``samples`` against ``reference`` (module docstring).

    Args:
      reference: ``(N_ref, D)`` reference features (ADM: pool3 of the 10k reference images).
      samples: ``(N_gen, D)`` sample features.
      k: neighbourhood size (3).
      batch_size: rows and columns per distance block.
      dtype: distance dtype.

    Returns:
      ``(precision, recall)`` in [0, 1].
    """
    reference = _check_features(reference, k, "reference")
    samples = _check_features(samples, k, "sample")
    if reference.shape[1] != samples.shape[1]:
        raise ValueError(f"feature widths differ: {reference.shape[1]} vs {samples.shape[1]}")
    ref_radii = manifold_radii(reference, k=k, batch_size=batch_size, dtype=dtype)
    sample_radii = manifold_radii(samples, k=k, batch_size=batch_size, dtype=dtype)
    size = min(batch_size, max(reference.shape[0], samples.shape[0]))
    ref_in = np.zeros(reference.shape[0], bool)
    sample_in = np.zeros(samples.shape[0], bool)
    for r_start, rows, r_valid in _blocks(reference, size):
        r_count = int(r_valid.sum())
        r_radii = np.full(size, -np.inf, np.float32)
        r_radii[:r_count] = ref_radii[r_start : r_start + r_count]
        for s_start, cols, s_valid in _blocks(samples, size):
            s_count = int(s_valid.sum())
            s_radii = np.full(size, -np.inf, np.float32)
            s_radii[:s_count] = sample_radii[s_start : s_start + s_count]
            rows_in, cols_in = _inside(rows, r_radii, cols, s_radii, dtype)
            ref_in[r_start : r_start + r_count] |= np.asarray(rows_in)[:r_count]
            sample_in[s_start : s_start + s_count] |= np.asarray(cols_in)[:s_count]
    return float(sample_in.mean()), float(ref_in.mean())
