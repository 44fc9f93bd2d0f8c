"""Time distributions: samples against quantiles, the resolution shift, SiT's intervals."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from nnx_objectives import (
    GVPPath,
    LinearPath,
    LogitNormalTime,
    NoisePrediction,
    ScorePrediction,
    ShiftedTime,
    TimeInterval,
    TrigFlowTime,
    UniformTime,
    VelocityPrediction,
    VPPath,
    resolution_shift,
    shift_time,
    sit_default_eps,
    sit_time_interval,
)

NUM_SAMPLES = 20_000


def _independent_quantile(name, u):
    """Each law's inverse CDF written with scipy, independently of the library."""
    if name == "uniform":
        return u
    if name == "logit_normal":
        return special.expit(-0.4 + 1.0 * special.ndtri(u))
    if name == "shifted":
        base = special.expit(special.ndtri(u))
        return 3.0 * base / (1 + 2.0 * base)
    if name == "interval":
        return 1e-3 + (1 - 2e-3) * special.expit(0.5 + 2.0 * special.ndtri(u))
    if name == "trigflow":
        return (2 / math.pi) * np.arctan(np.exp(-1.0 + 1.4 * special.ndtri(u)) / 0.5)
    raise KeyError(name)


DISTRIBUTIONS = {
    "uniform": UniformTime(),
    "logit_normal": LogitNormalTime(mean=-0.4, std=1.0),
    "shifted": ShiftedTime(LogitNormalTime(0.0, 1.0), shift=3.0),
    "interval": TimeInterval(LogitNormalTime(0.5, 2.0), t_min=1e-3, t_max=1 - 1e-3),
    "trigflow": TrigFlowTime(P_mean=-1.0, P_std=1.4, sigma_data=0.5),
}


@pytest.mark.parametrize("name", DISTRIBUTIONS)
def test_samples_follow_the_quantile_function(name, jit):
    distribution = DISTRIBUTIONS[name]
    samples = np.asarray(
        jit(distribution, static_argnums=1)(jax.random.key(3, impl="rbg"), (NUM_SAMPLES,))
    )
    u = np.linspace(0.01, 0.99, 33)
    quantiles = np.asarray(jit(distribution.quantile)(jnp.asarray(u, jnp.float32)))
    # The library's quantile equals the independent formula (float32 vs float64: 1e-5).
    np.testing.assert_allclose(quantiles, _independent_quantile(name, u), rtol=2e-5, atol=2e-6)
    # Kolmogorov-Smirnov of the samples against that quantile's CDF: with 20k samples the
    # 0.1% critical value is 1.95 / sqrt(n) = 0.0138.
    grid = _independent_quantile(name, np.linspace(1e-4, 1 - 1e-4, 4001))
    statistic = stats.kstest(
        samples, lambda x: np.interp(x, grid, np.linspace(1e-4, 1 - 1e-4, 4001))
    ).statistic
    assert statistic < 1.95 / math.sqrt(NUM_SAMPLES), statistic
    assert samples.min() >= 0.0 and samples.max() <= 1.0


def test_shift_formula_and_resolution_value():
    t = np.linspace(0, 1, 11)
    shifted = np.asarray(shift_time(jnp.asarray(t), 6.93))
    np.testing.assert_allclose(shifted, 6.93 * t / (1 + 5.93 * t), rtol=1e-6)
    # It multiplies EDM's sigma_E = t / (1 - t) by s.
    inner = slice(1, -1)
    np.testing.assert_allclose(
        shifted[inner] / (1 - shifted[inner]), 6.93 * t[inner] / (1 - t[inner]), rtol=1e-5
    )
    assert shifted[0] == 0.0 and shifted[-1] == 1.0
    # Zheng et al. 2025 (RAE), s = sqrt(dim / 4096): 256 px (768 x 16 x 16) gives s = 6.93;
    # at 512 px 13.86.
    assert resolution_shift(768 * 16 * 16) == pytest.approx(6.9282, abs=1e-4)
    assert resolution_shift(768 * 32 * 32) == pytest.approx(13.8564, abs=1e-4)
    with pytest.raises(ValueError, match="positive"):
        resolution_shift(0)


def test_logit_normal_moments():
    samples = np.asarray(
        LogitNormalTime(mean=-0.4, std=1.0)(jax.random.key(4, impl="rbg"), (NUM_SAMPLES,))
    )
    logits = special.logit(samples)
    # Mean and std of N(-0.4, 1) from 20k samples: standard errors 0.007 and 0.005.
    assert abs(logits.mean() + 0.4) < 0.03 and abs(logits.std() - 1.0) < 0.03


def test_sit_intervals():
    # SiT's create_transport / check_interval, rewritten in our time (0 = data).
    assert sit_time_interval(VPPath(), VelocityPrediction()) == (1e-5, 1.0)
    assert sit_time_interval(VPPath(), NoisePrediction(), eps=1e-3) == (1e-3, 1.0)
    assert sit_time_interval(LinearPath(), VelocityPrediction()) == (0.0, 1.0)
    assert sit_time_interval(GVPPath(), ScorePrediction()) == (1e-3, 1.0 - 1e-3)
    assert sit_default_eps(VPPath(), VelocityPrediction()) == (1e-5, 1e-3)
    assert sit_default_eps(LinearPath(), NoisePrediction()) == (1e-3, 1e-3)
    with pytest.raises(ValueError, match="t_min < t_max"):
        TimeInterval(UniformTime(), 0.5, 0.5)
