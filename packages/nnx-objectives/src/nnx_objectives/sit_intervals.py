"""SiT's ``train_eps`` / ``sample_eps``: which time interval is safe for a path and prediction.

Time convention: ``t`` in [0, 1], 0 = data, 1 = noise. SiT (``transport.check_interval`` and
``create_transport``) runs the other way; rewritten with ``t = 1 - t_SiT`` its rules are:

| path | prediction | interval (ours) | default ``train_eps`` / ``sample_eps`` |
|---|---|---|---|
| VP | any | ``[eps, 1]`` | 1e-5 / 1e-3 |
| Linear, GVP | noise, score, x0 | ``[eps, 1 - eps]`` | 1e-3 / 1e-3 |
| Linear, GVP | velocity | ``[0, 1]`` | 0 / 0 |

VP's ``sigma'`` is infinite at ``t = 0``; noise and score models divide by ``sigma`` (t = 0)
or ``alpha`` (t = 1 on Linear and GVP). The interval holds for training and for the ODE
sampler (SiT's SDE sampler has further rules for its last step, which belong to samplers).
Use it as ``TimeInterval(UniformTime(), *sit_time_interval(path, prediction))``.
"""

from __future__ import annotations

from nnx_objectives.predictions import Prediction, VelocityPrediction
from nnx_samplers import GVPPath, LinearPath, Path, VPPath

__all__ = ["sit_default_eps", "sit_time_interval"]


def sit_default_eps(path: Path, prediction: Prediction) -> tuple[float, float]:
    """SiT's default ``(train_eps, sample_eps)`` for a path and prediction (table above)."""
    if isinstance(path, VPPath):
        return 1e-5, 1e-3
    if isinstance(path, LinearPath | GVPPath):
        if isinstance(prediction, VelocityPrediction):
            return 0.0, 0.0
        return 1e-3, 1e-3
    raise TypeError(
        f"SiT defines eps only for LinearPath, GVPPath and VPPath, got {type(path).__name__}; "
        "choose the interval yourself with TimeInterval."
    )


def sit_time_interval(
    path: Path, prediction: Prediction, *, eps: float | None = None
) -> tuple[float, float]:
    """The ``(t_min, t_max)`` SiT trains (or ODE-samples) on, in our time convention.

    Args:
      path: ``LinearPath``, ``GVPPath`` or ``VPPath``.
      prediction: the network's prediction type.
      eps: SiT's ``train_eps`` (or ``sample_eps`` for sampling); ``None`` takes SiT's
        training default from ``sit_default_eps``.

    Returns:
      ``(t_min, t_max)`` with 0 = data, 1 = noise.
    """
    default_train_eps, _ = sit_default_eps(path, prediction)
    eps = default_train_eps if eps is None else float(eps)
    if not 0.0 <= eps < 0.5:
        raise ValueError(f"eps must lie in [0, 0.5), got {eps}.")
    if isinstance(path, VPPath):
        return eps, 1.0
    if isinstance(prediction, VelocityPrediction):
        return 0.0, 1.0
    return eps, 1.0 - eps
