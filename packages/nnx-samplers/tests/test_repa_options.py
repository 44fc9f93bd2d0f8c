"""REPA's sampling options against REPA's own loops, written here in numpy.

sihyeong/REPA ``samplers.py`` (t = 1 is noise there too):

* ``euler_maruyama_sampler``: ``t_steps = linspace(1, 0.04, N)`` then 0; ``diffusion = 2 t``;
  drift ``d = v - diffusion / 2 * score`` with the score from the velocity; a step adds
  ``sqrt(diffusion) sqrt(|dt|) eps``, except the last (0.04 -> 0), which returns the mean.
* ``euler_sampler(heun=True)``: the corrector at ``t_next`` is guided iff the step's start
  ``t_cur`` lies in ``[guidance_low, guidance_high]``; the last step is Euler.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx_samplers as ns

NUM_STEPS = 8


def test_repa_grid_is_linspace_then_zero():
    times = np.asarray(ns.REPAGrid(NUM_STEPS).times())
    expected = np.append(np.linspace(1.0, 0.04, NUM_STEPS), 0.0)
    np.testing.assert_allclose(times, expected, atol=1e-7)  # float32 linspace
    assert ns.REPAGrid(NUM_STEPS).num_steps == NUM_STEPS == len(times) - 1
    with pytest.raises(ValueError, match="0 < t_last < 1"):
        ns.REPAGrid(4, t_last=0.0)


def _repa_sde(velocity, x, noises):
    """REPA's Euler-Maruyama loop (linear path), numpy float64."""
    t_steps = np.append(np.linspace(1.0, 0.04, NUM_STEPS), 0.0)
    for i, (t_cur, t_next) in enumerate(zip(t_steps[:-1], t_steps[1:])):
        dt = t_next - t_cur
        v = np.asarray(velocity(jnp.asarray(x, jnp.float32), t_cur), np.float64)
        # get_score_from_velocity, linear: alpha = 1 - t, d_alpha = -1, sigma = t, d_sigma = 1.
        ratio = (1 - t_cur) / -1.0
        score = (ratio * v - x) / (t_cur**2 - ratio * t_cur)
        diffusion = 2 * t_cur
        drift = v - 0.5 * diffusion * score
        x = x + drift * dt
        if i < NUM_STEPS - 1:  # the last step returns the mean
            x = x + np.sqrt(diffusion) * np.sqrt(abs(dt)) * noises[i]
    return x


def test_euler_maruyama_on_repa_grid_is_repas_sde(mixture):
    x_start = np.random.default_rng(0).standard_normal((64, 2)).astype(np.float32)
    key = jax.random.key(3)
    # The driver gives step i the key fold_in(key, i); Euler-Maruyama draws normal(key, x.shape).
    noises = [np.asarray(jax.random.normal(jax.random.fold_in(key, i), (64, 2))) for i in range(8)]
    solver = ns.EulerMaruyama(diffusion=ns.LinearDiffusion())
    ours = ns.sample(mixture.velocity, jnp.asarray(x_start), solver, ns.REPAGrid(8), key=key)
    reference = _repa_sde(mixture.velocity, x_start.astype(np.float64), noises)
    # float32 against float64 over 8 steps of O(1) updates: measured 7.5e-7.
    np.testing.assert_allclose(np.asarray(ours.sample), reference, atol=1e-5)


def _network(x, t, y):
    """A label-dependent toy velocity network ``(B, D), (B,), (B,) -> (B, D)``."""
    shift = jnp.where(y == 0, 0.8, -0.6)[:, None]
    return -x + shift + 0.5 * t[:, None]


LABELS, NULL, SCALE, HIGH = jnp.zeros((16,), jnp.int32), 1, 3.0, 0.7


def _repa_heun(x):
    """REPA's euler_sampler(heun=True) with guidance_low = 0, guidance_high = HIGH."""
    t_steps = np.linspace(1.0, 0.0, NUM_STEPS + 1)

    def velocity(x, t, guided):
        t_batch = jnp.full((x.shape[0],), t, jnp.float32)
        cond = np.asarray(_network(jnp.asarray(x, jnp.float32), t_batch, LABELS), np.float64)
        if not guided:
            return cond
        null = jnp.full_like(LABELS, NULL)
        uncond = np.asarray(_network(jnp.asarray(x, jnp.float32), t_batch, null), np.float64)
        return uncond + SCALE * (cond - uncond)

    for i, (t_cur, t_next) in enumerate(zip(t_steps[:-1], t_steps[1:])):
        guided = 0.0 <= t_cur <= HIGH
        d_cur = velocity(x, t_cur, guided)
        x_next = x + (t_next - t_cur) * d_cur
        if i < NUM_STEPS - 1:
            d_prime = velocity(x_next, t_next, guided)  # decided by t_cur, not t_next
            x_next = x + (t_next - t_cur) * (0.5 * d_cur + 0.5 * d_prime)
        x = x_next
    return x


@pytest.mark.parametrize("wrapper", ["cfg", "autoguidance"])
def test_heun_step_start_decision_is_repas(wrapper):
    if wrapper == "cfg":
        field = ns.ClassifierFreeGuidance(
            _network, LABELS, NULL, SCALE, interval=ns.GuidanceInterval(0.0, HIGH)
        )
    else:  # EDM2-style CFG through autoguidance: the guide is the same net on null labels
        field = ns.AutoGuidance(
            _network,
            _network,
            LABELS,
            SCALE,
            interval=ns.GuidanceInterval(0.0, HIGH),
            guide_labels=jnp.full_like(LABELS, NULL),
        )
    x_start = np.random.default_rng(1).standard_normal((16, 3))
    grid = ns.UniformGrid(NUM_STEPS)  # the step 0.75 -> 0.625 crosses 0.7
    repa = ns.Heun(guidance_decision="step_start")
    ours = ns.sample(field, jnp.asarray(x_start, jnp.float32), repa, grid).sample
    default = ns.sample(field, jnp.asarray(x_start, jnp.float32), ns.Heun(), grid).sample
    reference = _repa_heun(x_start)
    # float32 against float64, 8 steps of O(1) updates: measured 1.0e-6.
    np.testing.assert_allclose(np.asarray(ours), reference, atol=1e-5)
    # The default decides the crossing step's corrector at t_next = 0.625: guided there
    # (measured 0.32 apart).
    assert float(np.max(np.abs(np.asarray(default) - reference))) > 1e-2


def test_bad_decision_name_is_refused():
    with pytest.raises(ValueError, match='guidance_decision must be "evaluation" or "step_start"'):
        ns.Heun(guidance_decision="start")
