"""Sharded initialisation: parameters and optimiser state are born on their shards.

``nnx.eval_shape`` traces the constructor without allocating anything, the rules turn the
abstract state into ``NamedSharding``s, and the constructor runs again inside ``jax.jit`` with
those ``out_shardings``: each device computes only its own shards, so the full model never
exists on one device or one host (unlike building on the host and calling ``device_put``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import jax
from flax import nnx
from jax.sharding import Mesh

from nnx_sharding.rules import Rules
from nnx_sharding.specs import abstract_with_shardings, named_shardings

__all__ = ["abstract_state", "sharded_init"]

T = TypeVar("T")


def abstract_state(
    build: Callable[[], Any], *, mesh: Mesh, rules: Rules
) -> tuple[nnx.GraphDef, nnx.State]:
    """Graph definition and sharded abstract state of what ``build`` returns; no allocation.

    Args:
      build: zero-argument constructor, e.g.
        ``lambda: (DiT(..., rngs=nnx.Rngs(0)), nnx.Optimizer(...))``. It must create its own
        ``nnx.Rngs`` (keys are then traced, not captured).
      mesh: the target mesh.
      rules: the strategy.

    Returns:
      ``(graphdef, state)`` where every leaf of ``state`` is a ``jax.ShapeDtypeStruct`` with its
      ``NamedSharding``: the target for `restore_state` or ``jax.jit`` ``out_shardings``.
    """
    graphdef, state = nnx.split(nnx.eval_shape(build))
    return graphdef, abstract_with_shardings(state, mesh=mesh, rules=rules)


def sharded_init(
    build: Callable[[], T],
    *,
    mesh: Mesh,
    rules: Rules,
    compiler_options: Mapping[str, Any] | None = None,
) -> T:
    """Runs ``build`` so that every parameter and optimiser array is created already sharded.

    Args:
      build: zero-argument constructor returning an NNX object or a tuple of them, e.g.
        ``lambda: (model := DiT(..., rngs=nnx.Rngs(0)), nnx.Optimizer(model, tx, wrt=nnx.Param))``.
        It must create its own ``nnx.Rngs``. Random values equal those of an eager ``build()``
        (JAX's partitionable threefry makes them independent of the sharding).
      mesh: the device mesh (`make_mesh`).
      rules: the strategy (`fsdp_rules()` ...), applied to the ``logical_axes`` metadata.
      compiler_options: XLA options for compiling the initialiser, e.g.
        ``{"xla_backend_optimization_level": 0}`` halves compile time on CPU for a function
        that runs once.

    Returns:
      What ``build`` returns, with arrays laid out as the rules say.

    Raises:
      ShardingError: a parameter does not fit the mesh (see `logical_to_spec`).
    """
    graphdef, abstract = nnx.split(nnx.eval_shape(build))
    shardings = named_shardings(abstract, mesh=mesh, rules=rules)

    def init() -> nnx.State:
        return nnx.split(build())[1]

    options = None if compiler_options is None else dict(compiler_options)
    state = jax.jit(init, out_shardings=shardings, compiler_options=options)()
    return nnx.merge(graphdef, state)
