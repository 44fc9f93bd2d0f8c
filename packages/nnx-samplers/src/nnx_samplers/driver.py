"""The one sampling loop: a ``lax.scan`` over a time grid that counts network evaluations.

Time convention: ``t`` in [0, 1], ``t = 0`` is data, ``t = 1`` is noise; the grid runs from
its start (noise) to its end (data) and every solver integrates ``dx/dt = field(x, t)``
along it.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
from jax import Array

from nnx_samplers.grids import TimeGrid

__all__ = ["Solution", "Solver", "sample"]


@runtime_checkable
class Solver(Protocol):
    """A stateless one-step method: hyperparameters in the object, everything else passed in.

    ``init(field, x, times) -> state`` builds the carried state (a pytree; ``()`` if none)
    from the start ``x`` and the ``(N + 1,)`` grid. ``step(field, x, state, t, t_next, key)``
    advances from ``t`` to ``t_next < t`` and returns ``(x_next, state, nfe)`` where ``nfe`` is
    the int32 number of field evaluations the step made. ``key`` is ``None`` unless the caller
    passed one; stochastic solvers raise a ``ValueError`` without it.
    """

    def init(self, field: Any, x: Array, times: Array) -> Any: ...

    def step(
        self, field: Any, x: Array, state: Any, t: Array, t_next: Array, key: Array | None
    ) -> tuple[Array, Any, Array]: ...


class Solution(NamedTuple):
    """Result of :func:`sample`.

    Attributes:
      sample: final state at the grid's last time, shape and dtype of ``x_start``.
      nfe: int32 scalar, number of field evaluations (a guided field evaluated on a doubled
        batch counts once).
      trajectory: ``(num_steps + 1, *x_start.shape)`` states at every grid time, starting
        with ``x_start``; ``None`` unless ``return_trajectory=True``.
    """

    sample: Array
    nfe: Array
    trajectory: Array | None


def _check_times(times: Array, num_steps: int) -> None:
    if times.shape != (num_steps + 1,):
        raise ValueError(
            f"grid.times() has shape {times.shape} but the grid says num_steps={num_steps}; "
            f"a grid must return num_steps + 1 = {num_steps + 1} times."
        )
    if isinstance(times, jax.core.Tracer):
        return
    values = times.tolist()
    if not all(0.0 <= v <= 1.0 for v in values):
        raise ValueError(f"grid times must lie in [0, 1]; got {values}.")
    if not all(a > b for a, b in zip(values[:-1], values[1:])):
        raise ValueError(f"grid times must strictly decrease (noise 1 -> data 0); got {values}.")


def sample(
    field: Any,
    x_start: Array,
    solver: Solver,
    grid: TimeGrid,
    *,
    key: Array | None = None,
    return_trajectory: bool = False,
) -> Solution:
    """Integrates ``dx/dt = field(x, t)`` from the grid's first time to its last.

    The loop is one ``lax.scan``, so its cost of tracing does not grow with the number of
    steps. The function is pure: wrap the call in ``jax.jit`` (or ``nnx.jit`` when the field
    closes over an NNX module); a second call with the same shapes does not recompile.

    Args:
      field: velocity field ``f(x, t) -> dx/dt`` (or a two-time field ``u(x, r, t)`` for
        :class:`~nnx_samplers.EulerJump`), ``t`` a scalar; t = 0 is data, t = 1 is noise.
      x_start: ``(B, ...)`` state at ``grid.times()[0]``; for a grid starting at 1 that is
        pure noise ``eps``, for one starting at ``t_0 < 1`` use ``t_0 * eps`` (linear path).
      solver: e.g. ``Euler()``, ``Heun()``, ``EulerMaruyama()``, ``DPMSolverPlusPlus2M()``.
      grid: e.g. ``UniformGrid(50)``; exactly ``grid.num_steps`` steps are taken.
      key: PRNG key for stochastic solvers; step ``i`` uses ``fold_in(key, i)``.
      return_trajectory: also return the state at every grid time.

    Returns:
      :class:`Solution` ``(sample, nfe, trajectory)``.
    """
    with jax.ensure_compile_time_eval():
        times = jnp.asarray(grid.times())
    _check_times(times, grid.num_steps)
    state = solver.init(field, x_start, times)

    def body(carry, inputs):
        x, state, nfe = carry
        index, t, t_next = inputs
        step_key = None if key is None else jax.random.fold_in(key, index)
        x_next, state, step_nfe = solver.step(field, x, state, t, t_next, step_key)
        x_next = x_next.astype(x.dtype)
        carry = (x_next, state, nfe + jnp.asarray(step_nfe, jnp.int32))
        return carry, (x_next if return_trajectory else None)

    carry = (x_start, state, jnp.zeros((), jnp.int32))
    steps = (jnp.arange(grid.num_steps), times[:-1], times[1:])
    (x_end, _, nfe), states = jax.lax.scan(body, carry, steps)
    trajectory = None
    if return_trajectory:
        trajectory = jnp.concatenate([x_start[None], states], axis=0)
    return Solution(sample=x_end, nfe=nfe, trajectory=trajectory)
