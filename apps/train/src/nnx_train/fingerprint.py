"""Fingerprints of a train state's arrays and of a data-iterator position.

The fingerprint of an array is ``sum(mix(bits(x) ^ (2654435761 * flat_index))) mod 2**32``
over its elements (bits: the raw 8/16/32-bit pattern, mix: murmur3's 32-bit finaliser).
Integer addition modulo ``2**32`` does not
depend on the order of the sum, so the value is the same on any mesh or sharding, and it is
computed where the shards live (no gather).

The data-iterator position (a JSON-able dict) is fingerprinted as the first 16 hex digits of
the SHA-256 of its canonical JSON (sorted keys): a valid but different position (another
batch index, another shard) changes it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nnx_train.state import state_paths

__all__ = [
    "build_manifest",
    "describe_mismatch",
    "fingerprints",
    "position_fingerprint",
    "position_fingerprints",
    "position_name",
]

# Knuth's multiplicative-hash constant: mixes the position into each element, so that
# swapped or shifted elements change the fingerprint too.
_POSITION_WEIGHT = 2654435761


def _mix(h: jax.Array) -> jax.Array:
    """murmur3's 32-bit finaliser: every input bit flips about half of the output bits (a
    plain weighted sum misses e.g. a halving of every element, whose bit patterns all move
    by the same power of two)."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def _bits(x: jax.Array) -> jax.Array:
    """The raw bit pattern of ``x`` as uint32 (8/16-bit types widened, 64-bit split in two)."""
    if x.dtype == jnp.bool_:
        return x.astype(jnp.uint32)
    match np.dtype(x.dtype).itemsize:
        case 1:
            return jax.lax.bitcast_convert_type(x, jnp.uint8).astype(jnp.uint32)
        case 2:
            return jax.lax.bitcast_convert_type(x, jnp.uint16).astype(jnp.uint32)
        case 4:
            return jax.lax.bitcast_convert_type(x, jnp.uint32)
        case 8:
            return jax.lax.bitcast_convert_type(x, jnp.uint32)  # trailing axis of 2 words
    raise TypeError(f"No fingerprint for arrays of dtype {x.dtype}.")


def _fingerprint(x: jax.Array) -> jax.Array:
    """``sum(mix(bits ^ (w * flat_index))) mod 2**32``: order-free, so layout-free.

    Few operations per array on purpose: a train state has hundreds of arrays, and tracing
    costs about as much per operation as the arithmetic itself at small sizes.
    """
    bits = _bits(x)
    index = jax.lax.iota(jnp.uint32, bits.size).reshape(bits.shape)
    return jnp.sum(_mix(bits ^ (index * jnp.uint32(_POSITION_WEIGHT))), dtype=jnp.uint32)


_fingerprint_leaves = jax.jit(lambda leaves: [_fingerprint(leaf) for leaf in leaves])


def fingerprints(state: Any) -> dict[str, int]:
    """``{"a/b/c": fingerprint}`` of every array of ``state`` (computed on its devices).

    The same arrays give the same numbers on any mesh; a changed bit changes the number
    (except with probability about 2**-32).
    """
    leaves = jax.tree.leaves(state)
    # One compiled call per set of devices (a TrainState lives on one mesh: one call).
    groups: dict[Any, list[int]] = {}
    for index, leaf in enumerate(leaves):
        sharding = getattr(leaf, "sharding", None)
        devices = None if sharding is None else frozenset(sharding.device_set)
        groups.setdefault(devices, []).append(index)
    values: list[int] = [0] * len(leaves)
    for indices in groups.values():
        found = jax.device_get(_fingerprint_leaves([leaves[i] for i in indices]))
        for i, value in zip(indices, found):
            values[i] = int(value)
    return {"/".join(path): v for path, v in zip(state_paths(state), values)}


def position_fingerprint(position: Any) -> str:
    """16 hex digits of the SHA-256 of ``position``'s canonical JSON (bytes and str holding
    JSON, as some Grain iterators return, are parsed first)."""
    if isinstance(position, bytes | str):
        position = json.loads(position)
    text = json.dumps(position, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build_manifest(state: Any, model_name: str) -> dict:
    """The checkpoint manifest's model name and ``path -> [shape, dtype]`` of every array."""
    leaves = jax.tree.leaves(state)
    return {
        "model": model_name,
        "arrays": {
            "/".join(path): [list(leaf.shape), str(np.dtype(leaf.dtype))]
            for path, leaf in zip(state_paths(state), leaves)
        },
    }


def position_name(index: int, count: int) -> str:
    """The name of one process's iterator position in a checkpoint."""
    return f"process_{index}-of-{count}"


def position_fingerprints(data_iterator: Any) -> dict[str, str]:
    """``{"process_<i>-of-<n>": fingerprint}`` of every process's iterator position (a
    collective with several processes: the manifest is written by process 0)."""
    own = position_fingerprint(data_iterator.get_state())
    count = jax.process_count()
    if count == 1:
        return {position_name(0, 1): own}
    from jax.experimental import multihost_utils

    gathered = multihost_utils.process_allgather(np.frombuffer(bytes.fromhex(own), np.uint8))
    return {
        position_name(i, count): bytes(np.asarray(row, np.uint8)).hex()
        for i, row in enumerate(np.asarray(gathered).reshape(count, -1))
    }


def describe_mismatch(saved: dict, expected: dict) -> str:
    """Missing, unexpected and mis-shaped arrays of a manifest against the model's."""
    missing = sorted(set(expected) - set(saved))
    unexpected = sorted(set(saved) - set(expected))
    reshaped = [
        f"{k}: checkpoint {saved[k][0]} {saved[k][1]} vs model {expected[k][0]} {expected[k][1]}"
        for k in sorted(set(saved) & set(expected))
        if saved[k] != expected[k]
    ]
    parts = []
    for title, items in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("mis-shaped", reshaped),
    ):
        if items:
            shown = "; ".join(items[:5]) + (
                f"; ... ({len(items)} in all)" if len(items) > 5 else ""
            )
            parts.append(f"{title}: {shown}")
    return " | ".join(parts)
