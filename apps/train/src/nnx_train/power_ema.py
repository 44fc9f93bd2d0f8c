"""EDM2's power-function EMA and its post-hoc reconstruction (the maths, no I/O).

Karras et al., "Analyzing and Improving the Training Dynamics of Diffusion Models" (CVPR 2024),
Section 3 and Appendix C (equation numbers of the arXiv version, as upstream cites them);
upstream NVlabs/edm2 ``training/phema.py``.

A power-function EMA of the parameters ``theta_1 .. theta_t`` (``t`` counted in optimiser
steps, ``t = 1`` after the first update) weighs ``theta_tau`` in proportion to ``tau**gamma``
(Eq. 108): ``ema_t = beta_t ema_{t-1} + (1 - beta_t) theta_t`` with
``beta_t = (1 - 1/t)**(gamma + 1)`` (Eq. 127). The product of the betas telescopes, so the
weight of ``theta_tau`` in ``ema_T`` is exactly ``(tau**(gamma+1) - (tau-1)**(gamma+1)) /
T**(gamma+1)``: the integral over ``(tau - 1, tau]`` of the continuous profile
``(gamma + 1) tau**gamma / T**(gamma + 1)``. The continuous inner products below are therefore
exact for the discrete averages of a piecewise-constant parameter trajectory.

The EMA length ``sigma_rel`` is the profile's standard deviation over its width
(Eq. 123): ``sigma_rel = sqrt((gamma + 1) / ((gamma + 2)**2 (gamma + 3)))``; ``sigma_rel`` 0.05
and 0.10 are ``gamma`` 16.97 and 6.94.

Post-hoc reconstruction (Appendix C, Algorithm 3): given snapshots ``ema_i`` with profiles ``p_i``
(length ``sigma_i``, taken at step ``t_i``), the target profile ``p*`` (``sigma*`` at step
``T``) is approximated by ``sum_i x_i p_i`` minimising ``||sum_i x_i p_i - p*||_2``; the normal
equations are ``A x = b`` with ``A_ij = <p_i, p_j>`` and ``b_i = <p_i, p*>``, whose entries
have the closed form of `power_function_correlation` (Eq. 151). The weights are then divided
by their sum, and the reconstruction is ``sum_i x_i ema_i``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

__all__ = [
    "MAX_SIGMA_REL",
    "gamma_to_sigma_rel",
    "power_ema_weight",
    "power_function_correlation",
    "power_function_profile",
    "sigma_rel_to_gamma",
    "solve_posthoc_coefficients",
]

MAX_SIGMA_REL = float(np.sqrt(1 / 12))
"""EMA length of the uniform average (``gamma = 0``); shorter lengths have ``gamma > 0``."""


def gamma_to_sigma_rel(gamma: np.ndarray | float) -> np.ndarray:
    """EMA length of the power-function profile with exponent ``gamma`` (EDM2 Eq. 123).

    Upstream ``exp_to_std``. Returns float64 of ``gamma``'s shape.
    """
    gamma = np.float64(gamma)
    return np.sqrt((gamma + 1) / (gamma + 2) ** 2 / (gamma + 3))


def sigma_rel_to_gamma(sigma_rel: np.ndarray | float) -> np.ndarray:
    """Exponent ``gamma`` of the profile of EMA length ``sigma_rel`` (Eq. 126, Algorithm 2).

    ``sigma_rel**-2 = (gamma + 2)**2 (gamma + 3) / (gamma + 1)`` is the cubic
    ``gamma**3 + 7 gamma**2 + (16 - s) gamma + (12 - s) = 0`` with ``s = sigma_rel**-2``; its
    largest real root is the answer (upstream ``std_to_exp``).

    Args:
      sigma_rel: float or array in ``(0, sqrt(1/12))``: ``gamma > 0``; ``sqrt(1/12)`` is the
        uniform average of the whole run (``gamma = 0``).

    Returns:
      float64 array of ``sigma_rel``'s shape.
    """
    sigma_rel = np.float64(sigma_rel)
    flat = sigma_rel.reshape(-1)
    if np.any(flat <= 0) or np.any(flat >= MAX_SIGMA_REL):
        raise ValueError(
            f"sigma_rel must lie in (0, {MAX_SIGMA_REL:.4f}) (gamma > 0), got {flat.tolist()}; "
            "EDM2 uses 0.05..0.2."
        )
    inverse_square = flat**-2
    roots = [np.roots([1.0, 7.0, 16.0 - s, 12.0 - s]).real.max() for s in inverse_square]
    return np.float64(roots).reshape(sigma_rel.shape)


def power_ema_weight(sigma_rel: float, step: jnp.ndarray) -> jnp.ndarray:
    """``1 - beta_t`` of EDM2 Eq. 127 at ``t = step`` (the weight of the new parameters).

    Computed as ``-expm1((gamma + 1) log1p(-1/t))``: in float32 ``1 - 1/t`` loses the digits
    of ``1/t`` once ``t`` reaches 1e6 (6% error in ``1 - beta``), the log1p form keeps them.

    Args:
      sigma_rel: EMA length of the profile.
      step: int or float scalar ``t >= 1`` (optimiser steps taken, this one included).

    Returns:
      float32 scalar in ``(0, 1]`` (1 at ``t = 1``: the average starts at ``theta_1``).
    """
    exponent = float(sigma_rel_to_gamma(sigma_rel)) + 1.0
    t = jnp.asarray(step, jnp.float32)
    return -jnp.expm1(exponent * jnp.log1p(-1.0 / t))


def power_function_profile(step: float, sigma_rel: float, num_steps: int) -> np.ndarray:
    """Weights of ``theta_1 .. theta_num_steps`` in the power-function EMA at ``step``.

    ``w_tau = (tau**(gamma+1) - (tau-1)**(gamma+1)) / step**(gamma+1)`` for ``tau <= step``,
    0 after (the closed form of the recursion of Eq. 127). Returns float64 ``(num_steps,)``.
    """
    gamma = float(sigma_rel_to_gamma(sigma_rel))
    tau = np.arange(1, num_steps + 1, dtype=np.float64)
    cdf = np.minimum(tau / step, 1.0) ** (gamma + 1)
    previous = np.minimum((tau - 1) / step, 1.0) ** (gamma + 1)
    return cdf - previous


def power_function_correlation(a_step, a_sigma_rel, b_step, b_sigma_rel) -> np.ndarray:
    """``<p_a, p_b>``: the inner product of two power-function profiles (EDM2 Eq. 151).

    ``p(tau) = (gamma + 1) tau**gamma / t**(gamma + 1)`` on ``[0, t]``; for ``t_a <= t_b``
    ``<p_a, p_b> = (gamma_a + 1)(gamma_b + 1) (t_a / t_b)**gamma_b / ((gamma_a + gamma_b + 1)
    t_b)`` (upstream ``power_function_correlation``). Arguments broadcast; returns float64.
    """
    a_gamma = sigma_rel_to_gamma(np.asarray(a_sigma_rel, np.float64))
    b_gamma = sigma_rel_to_gamma(np.asarray(b_sigma_rel, np.float64))
    a_step = np.asarray(a_step, np.float64)
    b_step = np.asarray(b_step, np.float64)
    ratio = a_step / b_step
    exponent = np.where(a_step < b_step, b_gamma, -a_gamma)
    numerator = (a_gamma + 1) * (b_gamma + 1) * ratio**exponent
    return numerator / ((a_gamma + b_gamma + 1) * np.maximum(a_step, b_step))


def solve_posthoc_coefficients(
    in_steps: Sequence[float],
    in_sigma_rels: Sequence[float],
    out_steps: Sequence[float],
    out_sigma_rels: Sequence[float],
) -> np.ndarray:
    """Least-squares weights of snapshots that best reproduce other EMA profiles.

    Args:
      in_steps: ``(N,)`` step of each stored snapshot.
      in_sigma_rels: ``(N,)`` EMA length of each stored snapshot.
      out_steps: ``(M,)`` step of each wanted average.
      out_sigma_rels: ``(M,)`` EMA length of each wanted average.

    Returns:
      float64 ``(N, M)``: column ``m`` holds ``x`` with ``sum_i x_i p_i ~ p*_m``: the
      least-squares solution of ``A x = b``, divided by its sum so that the weights sum to 1
      (upstream ``solve_posthoc_coefficients`` solves, then divides: every EMA profile
      integrates to 1, so constant parameters come back unchanged; without the division the
      weights sum to ``1 +- 3e-4`` with 12 snapshots per profile, a scale error on every
      parameter).
    """
    in_steps, in_sigma_rels = np.broadcast_arrays(
        np.float64(in_steps).reshape(-1), np.float64(in_sigma_rels).reshape(-1)
    )
    out_steps, out_sigma_rels = np.broadcast_arrays(
        np.float64(out_steps).reshape(-1), np.float64(out_sigma_rels).reshape(-1)
    )
    gram = power_function_correlation(
        in_steps[:, None], in_sigma_rels[:, None], in_steps[None, :], in_sigma_rels[None, :]
    )
    target = power_function_correlation(
        in_steps[:, None], in_sigma_rels[:, None], out_steps[None, :], out_sigma_rels[None, :]
    )
    coefficients = np.linalg.lstsq(gram, target, rcond=None)[0]
    return coefficients / np.sum(coefficients, axis=0, keepdims=True)
