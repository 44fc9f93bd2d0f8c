"""Device meshes with the four named axes every rule table refers to.

The mesh always has the axes ``("data", "fsdp", "sequence", "tensor")`` in that order, outermost
first. Axes of size 1 cost nothing, and keeping all four means every strategy's rules can be
applied to every mesh. The order matters for multi-host runs: ``jax.devices()`` lists devices
process by process, so the outermost axes (data, then fsdp) are the ones that span hosts, and the
innermost axis (tensor) stays inside one host where the interconnect is fastest.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import jax
from jax.sharding import AxisType, Mesh

__all__ = ["MESH_AXES", "MeshConfig", "make_mesh"]

MESH_AXES: tuple[str, str, str, str] = ("data", "fsdp", "sequence", "tensor")
"""Names of the mesh axes, outermost first."""


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """Sizes of the four mesh axes; at most one may be ``-1`` (inferred from the device count).

    | field      | what it splits                                   | default |
    |------------|--------------------------------------------------|---------|
    | `data`     | the batch; parameters replicated along it        | -1      |
    | `fsdp`     | the batch and the parameters / optimiser state   | 1       |
    | `sequence` | the token sequence (context parallelism)         | 1       |
    | `tensor`   | attention heads and the MLP hidden width         | 1       |

    Example: ``MeshConfig(fsdp=-1)`` on 8 devices is a pure FSDP mesh ``data=1, fsdp=8``
    (``data`` defaults to -1, so pass ``data=1`` when another axis is -1).
    """

    data: int = -1
    fsdp: int = 1
    sequence: int = 1
    tensor: int = 1

    def sizes(self) -> tuple[int, int, int, int]:
        """Axis sizes in `MESH_AXES` order, possibly containing one -1."""
        return (self.data, self.fsdp, self.sequence, self.tensor)

    def resolve(self, num_devices: int) -> tuple[int, int, int, int]:
        """Replaces a -1 by the size that makes the product equal ``num_devices``.

        Args:
          num_devices: number of devices the mesh will span (all processes together).

        Returns:
          The four axis sizes, all positive, whose product is ``num_devices``.

        Raises:
          ValueError: if a size is 0 or below -1, if more than one size is -1, or if the sizes
            cannot multiply to ``num_devices``.
        """
        sizes = self.sizes()
        named = dict(zip(MESH_AXES, sizes))
        shown = " x ".join(f"{name}={size}" for name, size in named.items())
        bad = [f"{name}={size}" for name, size in named.items() if size == 0 or size < -1]
        if bad:
            raise ValueError(
                f"Mesh axis sizes must be positive or -1 (inferred), got {', '.join(bad)}; "
                "use 1 for an axis you do not need."
            )
        inferred = [name for name, size in named.items() if size == -1]
        if len(inferred) > 1:
            raise ValueError(
                f"At most one mesh axis may be -1 (inferred), got {' and '.join(inferred)} in "
                f"{shown}; set all but one of them to an explicit size."
            )
        known = math.prod(size for size in sizes if size != -1)
        if inferred:
            if num_devices % known:
                raise ValueError(
                    f"Cannot infer mesh axis {inferred[0]!r}: the other axes of {shown} multiply "
                    f"to {known}, which does not divide the {num_devices} devices; choose sizes "
                    f"whose product divides {num_devices}."
                )
            return tuple(num_devices // known if size == -1 else size for size in sizes)  # type: ignore[return-value]
        if known != num_devices:
            raise ValueError(
                f"Mesh axes {shown} multiply to {known} but there are {num_devices} devices; "
                f"make the product {num_devices}, or set one axis to -1 to infer it."
            )
        return sizes


def make_mesh(config: MeshConfig, *, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """Builds a mesh with axes `MESH_AXES` over all devices of all processes.

    Multi-host: call `nnx_sharding.initialize_distributed` first; ``jax.devices()`` then lists
    the devices of every process, and each process builds the same global mesh. On TPU the
    device order follows the physical topology (``jax.make_mesh``).

    Args:
      config: axis sizes; one may be -1.
      devices: devices to span, e.g. ``jax.devices()[:4]`` for a sub-mesh; defaults to every
        device of every process.

    Returns:
      A ``jax.sharding.Mesh`` with axis types ``Auto`` (sharding is propagated by the compiler
      from the input and output shardings of ``jax.jit``).
    """
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("make_mesh got an empty device list.")
    shape = config.resolve(len(devices))
    return jax.make_mesh(
        shape, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES), devices=devices
    )
