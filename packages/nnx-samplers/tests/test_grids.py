"""Every grid has exactly num_steps + 1 times, starts and ends where it should, and decreases."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest

import nnx_samplers as ns

# float32 grids: endpoints are stored exactly; interior comparisons use 1e-6 (float32 eps).
RTOL = 1e-6


def _check_shape_and_order(grid, num_steps):
    times = np.asarray(grid.times())
    assert grid.num_steps == num_steps
    assert times.shape == (num_steps + 1,)
    assert np.all(np.diff(times) < 0), times
    assert np.all((times >= 0) & (times <= 1)), times
    return times


@pytest.mark.parametrize("num_steps", [1, 2, 10, 50])
def test_uniform_grid(num_steps):
    times = _check_shape_and_order(ns.UniformGrid(num_steps), num_steps)
    assert times[0] == 1.0 and times[-1] == 0.0
    np.testing.assert_allclose(times, np.linspace(1, 0, num_steps + 1), rtol=RTOL, atol=1e-7)
    partial = _check_shape_and_order(ns.UniformGrid(num_steps, t_start=0.9, t_end=0.1), num_steps)
    np.testing.assert_allclose([partial[0], partial[-1]], [0.9, 0.1], rtol=RTOL)


@pytest.mark.parametrize("num_steps", [1, 2, 10, 18, 256])
def test_edm_grid_has_exactly_num_steps(num_steps):
    """The seed's Karras grid had one step too many (10 requested, 12 points); ours has N+1."""
    grid = ns.EDMGrid(num_steps)
    times = _check_shape_and_order(grid, num_steps)
    sigmas = grid.sigmas()
    assert len(sigmas) == num_steps + 1 and sigmas[-1] == 0.0
    assert sigmas[0] == 80.0
    if num_steps > 1:
        np.testing.assert_allclose(sigmas[-2], 0.002, rtol=1e-12)
        # rho = 7 schedule, EDM eq. 5, at i = 1.
        hi, lo = 80.0 ** (1 / 7), 0.002 ** (1 / 7)
        np.testing.assert_allclose(sigmas[1], (hi + (lo - hi) / (num_steps - 1)) ** 7, rtol=1e-12)
    np.testing.assert_allclose(times[0], 80.0 / 81.0, rtol=RTOL)
    assert times[-1] == 0.0
    np.testing.assert_allclose(times[:-1], [s / (1 + s) for s in sigmas[:-1]], rtol=RTOL)


@pytest.mark.parametrize("num_steps", [1, 3, 20])
def test_log_snr_grid(num_steps):
    grid = ns.LogSNRGrid(num_steps, log_snr_min=-4.0, log_snr_max=5.0)
    times = _check_shape_and_order(grid, num_steps)
    assert times[-1] == 0.0
    lambdas = np.log((1 - times[:-1]) / times[:-1])
    np.testing.assert_allclose(lambdas[0], -4.0, atol=1e-5)
    if num_steps > 1:
        np.testing.assert_allclose(lambdas[-1], 5.0, atol=1e-4)
        np.testing.assert_allclose(np.diff(lambdas), 9.0 / (num_steps - 1), atol=1e-4)

    open_grid = ns.LogSNRGrid(num_steps, log_snr_min=-4.0, log_snr_max=5.0, end_at_zero=False)
    times = _check_shape_and_order(open_grid, num_steps)
    lambdas = np.log((1 - times) / times)
    np.testing.assert_allclose(lambdas[[0, -1]], [-4.0, 5.0], atol=1e-4)
    np.testing.assert_allclose(np.diff(lambdas), 9.0 / num_steps, atol=1e-4)


def test_log_snr_grid_is_edm_grid_with_infinite_rho():
    """For the linear path lambda = -log(sigma_E), so geometric sigma_E is EDM's rho -> inf."""
    log_snr = ns.LogSNRGrid(12).times()
    edm = ns.EDMGrid(12, rho=1e6).times()
    np.testing.assert_allclose(log_snr, edm, rtol=1e-4, atol=1e-7)


def test_log_snr_grid_cosine_path():
    times = np.asarray(ns.LogSNRGrid(4, -2.0, 2.0, path=ns.GVPPath()).times())
    lambdas = -np.log(np.tan(0.5 * math.pi * times[:-1]))
    np.testing.assert_allclose(lambdas, np.linspace(-2.0, 2.0, 4), atol=1e-5)


@pytest.mark.parametrize("shift", [0.3, 1.0, 3.0, 6.93])
def test_shifted_grid(shift):
    base = ns.UniformGrid(16)
    times = _check_shape_and_order(ns.ShiftedGrid(base, shift), 16)
    assert times[0] == 1.0 and times[-1] == 0.0
    t = np.linspace(1, 0, 17)
    np.testing.assert_allclose(times, shift * t / (1 + (shift - 1) * t), rtol=RTOL, atol=1e-7)
    if shift > 1:  # a shift above 1 spends more steps near noise
        assert np.all(times[1:-1] > t[1:-1])


def test_array_grid():
    grid = ns.ArrayGrid([1.0, 0.7, 0.2, 0.0])
    times = _check_shape_and_order(grid, 3)
    np.testing.assert_allclose(times, [1.0, 0.7, 0.2, 0.0], rtol=RTOL)
    assert hash(grid) == hash(ns.ArrayGrid((1.0, 0.7, 0.2, 0.0)))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ns.UniformGrid(0), "positive int"),
        (lambda: ns.UniformGrid(4, t_start=0.2, t_end=0.5), "t_end < t_start"),
        (lambda: ns.EDMGrid(4, sigma_min=0.0), "sigma_min"),
        (lambda: ns.LogSNRGrid(4, log_snr_min=2.0, log_snr_max=1.0), "log_snr_min"),
        (lambda: ns.ShiftedGrid(ns.UniformGrid(4), 0.0), "shift > 0"),
        (lambda: ns.ArrayGrid([0.0, 1.0]), "strictly decrease"),
        (lambda: ns.ArrayGrid([1.0]), "at least 2"),
        (lambda: ns.ArrayGrid([1.5, 0.0]), r"\[0, 1\]"),
    ],
)
def test_bad_grids_raise_clear_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_shift_time_endpoints_and_inverse():
    t = jnp.linspace(0, 1, 11)
    shifted = ns.shift_time(t, 4.0)
    assert float(shifted[0]) == 0.0 and float(shifted[-1]) == 1.0
    np.testing.assert_allclose(ns.shift_time(shifted, 0.25), t, rtol=1e-6, atol=1e-7)
