"""Time grids: each is a small frozen object whose ``times()`` has exactly ``num_steps + 1`` entries.

Time convention: ``t`` in [0, 1], ``t = 0`` is data, ``t = 1`` is noise; grids decrease from
their start (1, or a level just below it) to their end (0, or a small positive level).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import jax.numpy as jnp
from jax import Array

from nnx_samplers.paths import LinearPath, Path

__all__ = [
    "ArrayGrid",
    "REPAGrid",
    "EDMGrid",
    "LogSNRGrid",
    "ShiftedGrid",
    "TimeGrid",
    "UniformGrid",
    "shift_time",
]


@runtime_checkable
class TimeGrid(Protocol):
    """A decreasing sequence of times ``t_0 > t_1 > ... > t_N`` for ``N = num_steps`` steps."""

    @property
    def num_steps(self) -> int: ...

    def times(self) -> Array:
        """Returns the ``(num_steps + 1,)`` float times, first the start, last the end."""
        ...


def _time_dtype() -> jnp.dtype:
    # float64 when x64 is enabled (convergence tests), float32 otherwise.
    return jnp.result_type(float)


def _check_num_steps(num_steps: int, name: str) -> None:
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"{name}: num_steps must be a positive int, got {num_steps!r}.")


def shift_time(t: Array | float, shift: float | Array) -> Array:
    """Resolution shift ``t' = s t / (1 + (s - 1) t)`` (SD3 Eq. 23 in our time; RAE).

    It maps [0, 1] onto itself, fixes both ends, and multiplies the noise-to-signal odds
    ``t / (1 - t)`` by ``s``: for the linear path, EDM's ``sigma_E`` becomes ``s sigma_E``.
    The one definition for training-time shifts (``nnx_objectives.ShiftedTime``) and grids.

    Args:
      t: times in [0, 1] (0 = data, 1 = noise); any shape.
      shift: ``s > 0``; ``s > 1`` moves times toward noise. RAE at 256 px uses
        ``s = sqrt(196608 / 4096) ~ 6.93``. Training and sampling must read the same ``s``.

    Returns:
      Shifted times with the shape of ``t``; 0 and 1 are fixed points.
    """
    t = jnp.asarray(t)
    return shift * t / (1.0 + (shift - 1.0) * t)


@dataclass(frozen=True)
class UniformGrid:
    """``linspace(t_start, t_end, num_steps + 1)``; by default from 1 (noise) to 0 (data).

    Attributes:
      num_steps: number of solver steps ``N``.
      t_start: first time, in (0, 1].
      t_end: last time, in [0, t_start).
    """

    num_steps: int
    t_start: float = 1.0
    t_end: float = 0.0

    def __post_init__(self) -> None:
        _check_num_steps(self.num_steps, "UniformGrid")
        if not 0.0 <= self.t_end < self.t_start <= 1.0:
            raise ValueError(
                f"UniformGrid needs 0 <= t_end < t_start <= 1; got t_start={self.t_start}, "
                f"t_end={self.t_end}. Time runs from noise (1) down to data (0)."
            )

    def times(self) -> Array:
        n = self.num_steps
        values = [self.t_start + (self.t_end - self.t_start) * i / n for i in range(n)]
        return jnp.asarray([*values, self.t_end], dtype=_time_dtype())


@dataclass(frozen=True)
class EDMGrid:
    """EDM's rho schedule (Karras et al. 2022, eq. 5) in linear-path time, exactly ``num_steps`` steps.

    ``sigma_i = (sigma_max^(1/rho) + i / (N - 1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho``
    for ``i < N``, then ``sigma_N = 0``; each is mapped to ``t_i = sigma_i / (1 + sigma_i)``.
    The grid starts at ``t_0 = sigma_max / (1 + sigma_max)`` (0.98765 for 80): start from
    ``x = t_0 * eps``, the linear-path form of EDM's ``sigma_max * eps``.

    Attributes:
      num_steps: number of steps ``N`` (``N + 1`` times, the last one 0).
      sigma_min: smallest non-zero EDM noise level.
      sigma_max: largest EDM noise level.
      rho: schedule curvature (7 in EDM).
    """

    num_steps: int
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0

    def __post_init__(self) -> None:
        _check_num_steps(self.num_steps, "EDMGrid")
        if not 0.0 < self.sigma_min < self.sigma_max < math.inf:
            raise ValueError(
                f"EDMGrid needs 0 < sigma_min < sigma_max < inf; got sigma_min={self.sigma_min}, "
                f"sigma_max={self.sigma_max}."
            )
        if self.rho <= 0:
            raise ValueError(f"EDMGrid needs rho > 0; got {self.rho}.")

    def sigmas(self) -> list[float]:
        """The ``num_steps + 1`` EDM noise levels, ending with 0."""
        n = self.num_steps
        hi = self.sigma_max ** (1.0 / self.rho)
        lo = self.sigma_min ** (1.0 / self.rho)
        if n == 1:
            return [self.sigma_max, 0.0]
        return [(hi + i / (n - 1) * (lo - hi)) ** self.rho for i in range(n)] + [0.0]

    def times(self) -> Array:
        return jnp.asarray([s / (1.0 + s) for s in self.sigmas()], dtype=_time_dtype())


@dataclass(frozen=True)
class LogSNRGrid:
    """Times uniform in log-SNR ``lambda = log(alpha / sigma)`` (DPM-Solver's "logSNR" steps).

    For the linear path ``lambda = -log(sigma_E)``, so this is EDM's grid in the limit
    ``rho -> inf`` (geometric ``sigma_E``). The defaults span EDM's ``sigma_E`` range
    [0.002, 80].

    With ``end_at_zero=True`` (default) the first ``num_steps`` times are uniform in lambda
    from ``log_snr_min`` to ``log_snr_max`` and a final step goes to ``t = 0``, as in EDM;
    with ``end_at_zero=False`` all ``num_steps + 1`` times are uniform in lambda and the grid
    ends at ``t(log_snr_max) > 0``.

    Attributes:
      num_steps: number of steps ``N``.
      log_snr_min: lambda at the start (the noisiest time).
      log_snr_max: lambda of the last non-zero time.
      end_at_zero: whether the last step goes to ``t = 0``.
      path: path that defines lambda (and its inverse).
    """

    num_steps: int
    log_snr_min: float = -math.log(80.0)
    log_snr_max: float = -math.log(0.002)
    end_at_zero: bool = True
    path: Path = field(default_factory=LinearPath)

    def __post_init__(self) -> None:
        _check_num_steps(self.num_steps, "LogSNRGrid")
        if not -math.inf < self.log_snr_min < self.log_snr_max < math.inf:
            raise ValueError(
                "LogSNRGrid needs finite log_snr_min < log_snr_max; got "
                f"{self.log_snr_min}, {self.log_snr_max}."
            )

    def times(self) -> Array:
        n = self.num_steps
        num_uniform = n if self.end_at_zero else n + 1
        if num_uniform == 1:
            lambdas = [self.log_snr_min]
        else:
            span = self.log_snr_max - self.log_snr_min
            lambdas = [self.log_snr_min + span * i / (num_uniform - 1) for i in range(num_uniform)]
        t = self.path.t_from_log_snr(jnp.asarray(lambdas, dtype=_time_dtype()))
        if self.end_at_zero:
            t = jnp.concatenate([t, jnp.zeros((1,), t.dtype)])
        return t


@dataclass(frozen=True)
class ShiftedGrid:
    """Another grid with every time shifted: ``t' = s t / (1 + (s - 1) t)`` (see :func:`shift_time`).

    Attributes:
      base: grid to shift (usually ``UniformGrid``); endpoints 0 and 1 are kept.
      shift: ``s > 0``, the same value that shifted the training times.
    """

    base: TimeGrid
    shift: float

    def __post_init__(self) -> None:
        if not self.shift > 0:
            raise ValueError(f"ShiftedGrid needs shift > 0; got {self.shift}.")

    @property
    def num_steps(self) -> int:
        return self.base.num_steps

    def times(self) -> Array:
        return shift_time(self.base.times(), self.shift)


@dataclass(frozen=True)
class ArrayGrid:
    """A user-given strictly decreasing sequence of times in [0, 1].

    Attributes:
      values: at least two concrete numbers (a list, tuple or host array), stored as a tuple
        of floats so that the grid stays hashable.
    """

    values: Sequence[float]

    def __post_init__(self) -> None:
        try:
            values = tuple(float(v) for v in self.values)
        except (TypeError, ValueError) as error:
            raise ValueError(
                "ArrayGrid needs concrete numbers (a list, tuple or host array), not traced "
                f"values; build the grid outside jit. ({error})"
            ) from error
        if len(values) < 2:
            raise ValueError(f"ArrayGrid needs at least 2 times (1 step); got {len(values)}.")
        if not all(0.0 <= v <= 1.0 for v in values):
            raise ValueError(f"ArrayGrid times must lie in [0, 1]; got {values}.")
        if not all(a > b for a, b in zip(values[:-1], values[1:])):
            raise ValueError(
                f"ArrayGrid times must strictly decrease (noise 1 -> data 0); got {values}."
            )
        object.__setattr__(self, "values", values)

    @property
    def num_steps(self) -> int:
        return len(self.values) - 1

    def times(self) -> Array:
        return jnp.asarray(self.values, dtype=_time_dtype())


@dataclass(frozen=True)
class REPAGrid:
    """REPA's SDE grid: ``linspace(1, t_last, num_steps)`` and then a last step to 0.

    sihyeong/REPA ``samplers.py``, ``euler_maruyama_sampler``: ``num_steps - 1`` steps on the
    linspace plus the noise-free "mean" step from ``t_last`` to 0, ``num_steps`` in all (REPA
    uses t = 1 as noise, as this library does). Pair it with
    ``EulerMaruyama(LinearDiffusion())``, REPA's diffusion ``w(t) = 2 t`` (our ``D = t``).

    Attributes:
      num_steps: points of the linspace, also the number of steps (REPA's ``num_steps``).
      t_last: last non-zero time (REPA: 0.04).
    """

    num_steps: int
    t_last: float = 0.04

    def __post_init__(self) -> None:
        _check_num_steps(self.num_steps, "REPAGrid")
        if self.num_steps < 2 or not 0.0 < self.t_last < 1.0:
            raise ValueError(
                f"REPAGrid needs num_steps >= 2 and 0 < t_last < 1; got {self.num_steps}, "
                f"{self.t_last}."
            )

    def times(self) -> Array:
        dtype = _time_dtype()
        ramp = jnp.linspace(1.0, self.t_last, self.num_steps, dtype=dtype)
        return jnp.concatenate([ramp, jnp.zeros((1,), dtype)])
