"""How many bytes of a sharded tree each device holds (a check that FSDP really shards)."""

from __future__ import annotations

from typing import Any

import jax

__all__ = ["bytes_per_device"]


def bytes_per_device(tree: Any) -> dict[jax.Device, int]:
    """Bytes of ``tree``'s arrays stored on each addressable device of this process.

    Args:
      tree: pytree of ``jax.Array`` (an ``nnx.State`` works: Variables flatten to arrays).

    Returns:
      Device -> bytes of all shards on it (replicated arrays count in full on every device).
    """
    totals: dict[jax.Device, int] = {}
    for leaf in jax.tree.leaves(tree):
        if not isinstance(leaf, jax.Array):
            continue
        for shard in leaf.addressable_shards:
            totals[shard.device] = totals.get(shard.device, 0) + shard.data.nbytes
    return totals
