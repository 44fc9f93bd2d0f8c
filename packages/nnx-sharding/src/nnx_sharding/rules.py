"""Rule tables: logical axis names (set on parameters by the networks) -> mesh axes.

Networks name each parameter dimension with a logical axis (``CONVENTIONS.md``); a strategy is
nothing more than a table from those names to mesh axes. One model therefore runs replicated,
FSDP, tensor-parallel or sequence-parallel by swapping the table, never by editing the model.

| logical name | meaning                                  | replicate | fsdp   | tensor   | fsdp_tensor    |
|--------------|------------------------------------------|-----------|--------|----------|----------------|
| `embed`      | residual-stream width                    | -         | `fsdp` | -        | `fsdp`         |
| `mlp`        | MLP hidden width                         | -         | -      | `tensor` | `tensor`       |
| `heads`      | attention heads x head dim               | -         | -      | `tensor` | `tensor`       |
| `classes`    | label-embedding rows                     | -         | -      | -        | -              |
| `channels`   | image / latent channels, patch pixels    | -         | -      | -        | -              |
| `None`       | small or unshardable dims                | -         | -      | -        | -              |

Activations: ``batch`` -> ``("data", "fsdp")`` in every table; ``seq`` -> ``"sequence"`` in the
tables made by `sequence_rules` (context parallelism), replicated otherwise; under tensor
parallelism the activation names ``mlp`` and ``heads`` follow their parameters onto ``tensor``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Literal

__all__ = [
    "DEFAULT_MIN_SHARD_BYTES",
    "MeshAxes",
    "Rules",
    "fsdp_rules",
    "fsdp_tensor_rules",
    "replicate_rules",
    "sequence_rules",
    "tensor_rules",
]

MeshAxes = str | tuple[str, ...] | None
"""Where one logical axis goes: one mesh axis, several (sharded over their product), or none."""

DEFAULT_MIN_SHARD_BYTES: int = 2**18
"""FSDP replicates tensors smaller than this (256 KiB): biases, norm scales and other small
tensors would cost one collective each for a negligible saving in memory."""

PARAM_AXES: tuple[str, ...] = ("embed", "mlp", "heads", "classes", "channels")
ACTIVATION_AXES: tuple[str, ...] = ("batch", "seq", "embed", "mlp", "heads")
BATCH_AXES: tuple[str, str] = ("data", "fsdp")


@dataclasses.dataclass(frozen=True)
class Rules:
    """One sharding strategy: where each logical axis of parameters and activations goes.

    Attributes:
      name: short name for messages and logs, e.g. ``"fsdp"``.
      params: logical name -> mesh axes for parameters and optimiser state. Every logical
        name used by the model must be a key (map it to ``None`` to replicate); an unknown
        name is an error, so a typo never silently replicates a tensor.
      activations: logical name -> mesh axes for activations and input batches
        (`logical_constraint`, `global_batch`). Names missing here are replicated.
      min_shard_bytes: tensors with fewer bytes than this are replicated whatever their
        logical axes (``0`` shards everything the table says).
      indivisible: what to do when a dimension does not divide the size of its mesh axes:
        ``"error"`` (default) raises `ShardingError`; ``"replicate"`` leaves that one
        dimension unsharded (documented fallback for models with odd widths, e.g. a
        ``num_classes + 1`` label table sharded along ``classes``).
    """

    name: str
    params: Mapping[str, MeshAxes]
    activations: Mapping[str, MeshAxes]
    min_shard_bytes: int = 0
    indivisible: Literal["error", "replicate"] = "error"

    def __post_init__(self) -> None:
        if self.min_shard_bytes < 0:
            raise ValueError(f"min_shard_bytes must be >= 0, got {self.min_shard_bytes}.")
        if self.indivisible not in ("error", "replicate"):
            raise ValueError(
                f"indivisible must be 'error' or 'replicate', got {self.indivisible!r}."
            )

    def with_params(self, **axes: MeshAxes) -> Rules:
        """Returns a copy whose parameter table has extra or changed entries.

        Example: ``fsdp_rules().with_params(classes="fsdp")`` also shards the label table.
        """
        return dataclasses.replace(self, params={**self.params, **axes})

    def with_activations(self, **axes: MeshAxes) -> Rules:
        """Returns a copy whose activation table has extra or changed entries."""
        return dataclasses.replace(self, activations={**self.activations, **axes})


def axes_tuple(axes: MeshAxes) -> tuple[str, ...]:
    """The mesh axes of one rule entry as a tuple (``None`` -> ``()``)."""
    if axes is None:
        return ()
    if isinstance(axes, str):
        return (axes,)
    return tuple(axes)


def _table(names: tuple[str, ...], **axes: MeshAxes) -> dict[str, MeshAxes]:
    return {name: axes.get(name) for name in names}


def replicate_rules() -> Rules:
    """Data parallelism: parameters and optimiser state replicated, the batch split."""
    return Rules(
        name="replicate",
        params=_table(PARAM_AXES),
        activations=_table(ACTIVATION_AXES, batch=BATCH_AXES),
    )


def fsdp_rules(*, min_shard_bytes: int = DEFAULT_MIN_SHARD_BYTES) -> Rules:
    """Fully sharded data parallelism (ZeRO-3): ``embed`` dims split along ``fsdp``.

    Parameters and optimiser state are stored 1/fsdp per device; the compiler gathers each
    weight just before it is used and reduce-scatters its gradient.

    Args:
      min_shard_bytes: tensors smaller than this are replicated.
    """
    return Rules(
        name="fsdp",
        params=_table(PARAM_AXES, embed="fsdp"),
        activations=_table(ACTIVATION_AXES, batch=BATCH_AXES),
        min_shard_bytes=min_shard_bytes,
    )


def tensor_rules(*, min_shard_bytes: int = 0) -> Rules:
    """Tensor (Megatron) parallelism: attention heads and the MLP hidden width split along
    ``tensor``; the residual stream replicated within a tensor group.

    Args:
      min_shard_bytes: tensors smaller than this are replicated.
    """
    return Rules(
        name="tensor",
        params=_table(PARAM_AXES, mlp="tensor", heads="tensor"),
        activations=_table(ACTIVATION_AXES, batch=BATCH_AXES, mlp="tensor", heads="tensor"),
        min_shard_bytes=min_shard_bytes,
    )


def fsdp_tensor_rules(*, min_shard_bytes: int = DEFAULT_MIN_SHARD_BYTES) -> Rules:
    """FSDP and tensor parallelism together: ``embed`` along ``fsdp``, ``mlp`` and ``heads``
    along ``tensor`` (a 2-D weight such as an MLP kernel is split in both dimensions).

    Args:
      min_shard_bytes: tensors smaller than this are replicated.
    """
    return Rules(
        name="fsdp_tensor",
        params=_table(PARAM_AXES, embed="fsdp", mlp="tensor", heads="tensor"),
        activations=_table(ACTIVATION_AXES, batch=BATCH_AXES, mlp="tensor", heads="tensor"),
        min_shard_bytes=min_shard_bytes,
    )


def sequence_rules(params: Rules | None = None) -> Rules:
    """Context / sequence parallelism: the token axis ``seq`` split along ``sequence``.

    Parameters follow ``params`` (replicated by default; pass ``fsdp_rules()`` to shard them
    too). Token activations are split where the model or the input pipeline names them, inside
    `activation_sharding`: nnx-nets' DiT family constrains its tokens, queries and MLP hidden
    states (through Flax's logical-axis rules, which `activation_sharding` sets); other models
    call `logical_constraint` (``("batch", "seq", None)`` on a token sequence); `global_batch`
    with ``logical_axes=("batch", "seq")`` splits image rows, which flatten row-major into
    tokens. Attention gathers keys and values along ``sequence`` (queries stay split), so
    attention and MLP FLOPs split across the ``sequence`` devices.

    Args:
      params: the table whose parameter rules and threshold are kept.
    """
    base = replicate_rules() if params is None else params
    return dataclasses.replace(
        base,
        name=f"{base.name}+sequence",
        activations={**base.activations, "seq": "sequence"},
    )
