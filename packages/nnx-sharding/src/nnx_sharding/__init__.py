"""nnx_sharding: meshes, logical-axis rules, sharded init, global batches and checkpoints.

JAX's SPMD runtime does the work; this package maps the ``logical_axes`` metadata that
networks put on their parameters to mesh axes, one table per strategy (replicate, FSDP,
tensor, FSDP + tensor, sequence), and keeps the full model off any single device or host.
"""

from nnx_sharding.activations import activation_sharding, logical_constraint
from nnx_sharding.checkpoint import restore_sharded, restore_state, save_state
from nnx_sharding.data import batch_sharding, global_batch, local_batch_shards
from nnx_sharding.distributed import ProcessInfo, initialize_distributed, process_info
from nnx_sharding.init import abstract_state, sharded_init
from nnx_sharding.memory import bytes_per_device
from nnx_sharding.mesh import MESH_AXES, MeshConfig, make_mesh
from nnx_sharding.rules import (
    DEFAULT_MIN_SHARD_BYTES,
    MeshAxes,
    Rules,
    fsdp_rules,
    fsdp_tensor_rules,
    replicate_rules,
    sequence_rules,
    tensor_rules,
)
from nnx_sharding.specs import (
    ShardingError,
    abstract_with_shardings,
    logical_to_spec,
    named_shardings,
    partition_specs,
)

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MIN_SHARD_BYTES",
    "MESH_AXES",
    "MeshAxes",
    "MeshConfig",
    "ProcessInfo",
    "Rules",
    "ShardingError",
    "abstract_state",
    "abstract_with_shardings",
    "activation_sharding",
    "batch_sharding",
    "bytes_per_device",
    "fsdp_rules",
    "fsdp_tensor_rules",
    "global_batch",
    "initialize_distributed",
    "local_batch_shards",
    "logical_constraint",
    "logical_to_spec",
    "make_mesh",
    "named_shardings",
    "partition_specs",
    "process_info",
    "replicate_rules",
    "restore_sharded",
    "restore_state",
    "save_state",
    "sequence_rules",
    "sharded_init",
    "tensor_rules",
]
