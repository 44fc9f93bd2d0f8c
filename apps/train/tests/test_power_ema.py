"""EDM2's power-function EMA against its closed forms (Karras et al. 2024, Sec. 3, App. C)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nnx_train.ema import init_ema, power_ema_name, update_ema
from nnx_train.power_ema import (
    gamma_to_sigma_rel,
    power_ema_weight,
    power_function_correlation,
    power_function_profile,
    sigma_rel_to_gamma,
    solve_posthoc_coefficients,
)


def test_gamma_of_the_paper_lengths():
    # EDM2 Sec. 3.1: sigma_rel 0.05 and 0.10 are gamma 16.97 and 6.94 (two decimals printed).
    np.testing.assert_allclose(sigma_rel_to_gamma([0.05, 0.10]), [16.97, 6.94], atol=0.006)
    lengths = np.array([0.01, 0.05, 0.1, 0.2, 0.28])
    # Round trip through the cubic's root: float64 roots, 1e-10 relative.
    np.testing.assert_allclose(gamma_to_sigma_rel(sigma_rel_to_gamma(lengths)), lengths, rtol=1e-10)
    with pytest.raises(ValueError, match="sigma_rel must lie in"):
        sigma_rel_to_gamma(0.3)


def _tracked(sequence: np.ndarray, sigma_rel: float) -> np.ndarray:
    """The app's update (float32) over ``theta_1 .. theta_T``, from a different start."""
    ema = init_ema({"w": jnp.full(sequence.shape[1:], 123.0)}, (), (sigma_rel,))
    update = jax.jit(lambda e, p, t: update_ema(e, p, (), (sigma_rel,), t))
    for t, theta in enumerate(sequence, start=1):
        ema = update(ema, {"w": jnp.asarray(theta, jnp.float32)}, t)
    return np.asarray(ema[power_ema_name(sigma_rel)]["w"], np.float64)


@pytest.mark.parametrize("sigma_rel", [0.05, 0.10])
def test_tracked_average_equals_the_closed_form(sigma_rel):
    steps = 300
    rng = np.random.default_rng(0)
    sequence = np.cumsum(rng.normal(size=(steps, 16)), axis=0)  # a random walk
    sequence[:, 0] = np.arange(1, steps + 1)  # and theta_t = t
    weights = power_function_profile(steps, sigma_rel, steps)
    closed = weights @ sequence
    # The profile is a distribution, and the average of theta_t = t is its mean, which in
    # continuous time is (gamma + 1) / (gamma + 2) T (the mean of the profile), up to the half step of
    # the discretisation.
    assert weights.sum() == pytest.approx(1.0, abs=1e-12)
    gamma = float(sigma_rel_to_gamma(sigma_rel))
    assert closed[0] == pytest.approx((gamma + 1) / (gamma + 2) * steps, abs=0.5)
    # float32 recursion of 300 steps against the float64 closed form: values up to ~300,
    # 1e-5 relative is a few hundred float32 roundings.
    np.testing.assert_allclose(_tracked(sequence, sigma_rel), closed, rtol=1e-5, atol=1e-4)


def test_weight_keeps_its_digits_at_large_steps():
    gamma = float(sigma_rel_to_gamma(0.05))
    for step in (1, 2, 10**6, 10**8):
        exact = 1.0 if step == 1 else -np.expm1((gamma + 1) * np.log1p(-1.0 / step))
        # float32: 1e-6 relative (a naive 1 - (1 - 1/t)**(gamma+1) is 6% off at t = 1e6).
        assert float(power_ema_weight(0.05, step)) == pytest.approx(exact, rel=1e-6)


def test_correlation_equals_the_integral_of_the_profiles():
    # <p_a, p_b> by the midpoint rule on 2e6 points of [0, 100] (error ~1e-9 relative).
    grid = (np.arange(2_000_000) + 0.5) * (100 / 2_000_000)

    def density(step, sigma_rel):
        gamma = sigma_rel_to_gamma(sigma_rel)
        return np.where(grid <= step, (gamma + 1) * grid**gamma / step ** (gamma + 1), 0.0)

    for a, b in (((40, 0.05), (100, 0.1)), ((100, 0.1), (40, 0.05)), ((70, 0.2), (70, 0.07))):
        numeric = np.sum(density(*a) * density(*b)) * (100 / 2_000_000)
        assert power_function_correlation(a[0], a[1], b[0], b[1]) == pytest.approx(
            numeric, rel=1e-6
        )


def test_reconstruction_is_exact_for_a_tracked_profile():
    steps = np.arange(10, 101, 10)
    in_steps = np.concatenate([steps, steps])
    in_lengths = np.repeat([0.05, 0.10], len(steps))
    coefficients = solve_posthoc_coefficients(in_steps, in_lengths, [100, 60], [0.10, 0.05])
    # Each target is one of the inputs: the least-squares solution is that one-hot column
    # (float64 solve of a 20 x 20 Gram matrix with condition ~1e8: 1e-6 absolute).
    expected = np.zeros((20, 2))
    expected[19, 0] = expected[5, 1] = 1.0
    np.testing.assert_allclose(coefficients, expected, atol=1e-6)
    # And the rebuilt average of a random sequence is the tracked one (float64 closed form).
    sequence = np.random.default_rng(1).normal(size=(100, 8))
    profiles = np.stack([power_function_profile(t, s, 100) for t, s in zip(in_steps, in_lengths)])
    rebuilt = (coefficients.T @ profiles) @ sequence
    np.testing.assert_allclose(
        rebuilt[0], power_function_profile(100, 0.10, 100) @ sequence, atol=1e-5
    )


def test_reconstruction_of_an_untracked_length_beats_the_nearest_tracked_one():
    steps = np.arange(10, 401, 10)
    in_steps = np.concatenate([steps, steps])
    in_lengths = np.repeat([0.05, 0.10], len(steps))
    (coefficients,) = solve_posthoc_coefficients(in_steps, in_lengths, [400], [0.07]).T
    profiles = np.stack([power_function_profile(t, s, 400) for t, s in zip(in_steps, in_lengths)])
    target = power_function_profile(400, 0.07, 400)
    error = np.linalg.norm(coefficients @ profiles - target)
    nearest = np.linalg.norm(power_function_profile(400, 0.05, 400) - target)
    # Measured 7.7e-5 against 3.5e-2 and 3.7e-2 for the two inputs: 450x closer.
    assert error < nearest / 100
