"""Discrete DDPM samplers: diffusers' schedulers step by step, and Gaussian data in closed form.

diffusers' ``DDPMScheduler`` (``variance_type="learned_range"``, linear betas) and
``DDIMScheduler`` (``set_alpha_to_one=True``) are run on the same inputs, model outputs and
noise as ``DDPMAncestral`` / ``DDIM``, one step at a time, in float32 on both sides.
For Gaussian data ``x0 ~ N(mu, s^2)`` the exact noise predictor is
``E[eps | x_k] = sqrt(1 - abar) (x - sqrt(abar) mu) / (abar s^2 + 1 - abar)``; the samplers
must then return the data distribution.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from diffusers.schedulers import scheduling_ddpm

import nnx_samplers as ns

SCHEDULE = ns.DDPMSchedule()
SHAPE = (2, 4, 4, 3)  # NHWC; diffusers sees the NCHW transpose


def _nchw(a):
    return torch.from_numpy(np.ascontiguousarray(np.asarray(a).transpose(0, 3, 1, 2)))


def _nhwc(a):
    return a.numpy().transpose(0, 2, 3, 1)


def test_dit_respacing_and_grid():
    steps = ns.dit_respaced_steps(1000, 250)
    # DiT's space_timesteps(1000, "250"): stride 999/249 rounded; both ends are kept.
    assert steps[:5] == [0, 4, 8, 12, 16] and steps[-1] == 999 and len(set(steps)) == 250
    times = np.asarray(ns.ddpm_grid(250).times())
    assert times[0] == 1.0 and times[-1] == 0.0 and times.shape == (251,)
    np.testing.assert_array_equal(np.asarray(SCHEDULE.step_index(times[:-1])), steps[::-1])
    # diffusers' own table is cumprod in float32: measured 3.6e-7 relative from our float64 one.
    reference = DDPMScheduler(num_train_timesteps=1000).alphas_cumprod.numpy()
    np.testing.assert_allclose(SCHEDULE.alphas_cumprod(), reference, rtol=2e-6)


def _run_steps(solver, scheduler_step, steps, with_variance):
    """Feeds the same x, model output and noise to both, step by step; returns the worst gap."""
    grid_times = np.asarray(ns.ddpm_grid(steps).times())
    step = jax.jit(
        lambda out, x, t, t_next, key: solver.step(lambda *_: out, x, (), t, t_next, key)
    )
    rng = np.random.default_rng(0)
    x = rng.standard_normal(SHAPE).astype(np.float32)
    worst = 0.0
    for i, (t, t_next) in enumerate(zip(grid_times[:-1], grid_times[1:])):
        channels = 2 * SHAPE[-1] if with_variance else SHAPE[-1]
        out = rng.standard_normal((*SHAPE[:-1], channels)).astype(np.float32)
        if with_variance:
            out[..., SHAPE[-1] :] = rng.uniform(-1, 1, (*SHAPE[:-1], SHAPE[-1]))
        key = jax.random.key(i)
        ours = np.asarray(step(out, x, t, t_next, key)[0])
        noise = np.asarray(jax.random.normal(key, SHAPE, jnp.float32))
        theirs = scheduler_step(out, int(round(t * 1000)) - 1, x, noise)
        worst = max(worst, float(np.max(np.abs(ours - theirs)) / max(1.0, np.abs(theirs).max())))
        x = theirs.astype(np.float32)
    return worst


def test_ddpm_ancestral_matches_diffusers_learned_range(monkeypatch):
    steps = ns.dit_respaced_steps(1000, 50)
    scheduler = DDPMScheduler(
        num_train_timesteps=1000, variance_type="learned_range", clip_sample=False
    )
    scheduler.set_timesteps(timesteps=steps[::-1])

    def scheduler_step(out, k, x, noise):
        monkeypatch.setattr(scheduling_ddpm, "randn_tensor", lambda *a, **kw: _nchw(noise))
        return _nhwc(scheduler.step(_nchw(out), k, _nchw(x)).prev_sample)

    worst = _run_steps(ns.DDPMAncestral(SCHEDULE), scheduler_step, steps, with_variance=True)
    # float32 on both sides; the tables differ by <= 2e-6 relative (float32 cumprod) and
    # x0_hat amplifies by 1/sqrt(abar) <= 160 at k = 999: measured 2.9e-7 relative.
    assert worst < 2e-5, worst


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_matches_diffusers(eta):
    scheduler = DDIMScheduler(num_train_timesteps=1000, clip_sample=False, set_alpha_to_one=True)
    scheduler.set_timesteps(40)  # "leading": 975, 950, ..., 0 with the previous step t - 25
    steps = [int(k) for k in scheduler.timesteps]

    def scheduler_step(out, k, x, noise):
        result = scheduler.step(_nchw(out), k, _nchw(x), eta=eta, variance_noise=_nchw(noise))
        return _nhwc(result.prev_sample)

    worst = _run_steps(ns.DDIM(SCHEDULE, eta=eta), scheduler_step, steps, with_variance=False)
    # As above: float32 tables and arithmetic, measured 2.6e-7 (eta 0) and 2.3e-7 (eta 1).
    assert worst < 2e-5, worst


MU, S = 0.5, 0.6


def _exact_eps(x, s, variance_value=None):
    """Exact ``E[eps | x_k]`` for ``x0 ~ N(MU, S^2)``; ``s`` is the network time ``k / T``."""
    ab = SCHEDULE.alpha_bar(s + 1.0 / SCHEDULE.num_train_steps)
    eps = jnp.sqrt(1 - ab) * (x - jnp.sqrt(ab) * MU) / (ab * S**2 + 1 - ab)
    if variance_value is None:
        return eps
    return jnp.concatenate([eps, jnp.full_like(eps, variance_value)], axis=-1)


@pytest.mark.parametrize(
    "name", ["ddpm_learned_small", "ddpm_fixed_large", "ddim_eta0", "ddim_eta1"]
)
def test_samplers_return_gaussian_data(name):
    solver, predict = {
        # v = -1 selects the posterior variance beta_tilde through the learned range.
        "ddpm_learned_small": (ns.DDPMAncestral(SCHEDULE), lambda x, s: _exact_eps(x, s, -1.0)),
        "ddpm_fixed_large": (ns.DDPMAncestral(SCHEDULE, "fixed_large"), _exact_eps),
        "ddim_eta0": (ns.DDIM(SCHEDULE), _exact_eps),
        "ddim_eta1": (ns.DDIM(SCHEDULE, eta=1.0), _exact_eps),
    }[name]
    n = 20_000
    noise = jax.random.normal(jax.random.key(0), (n, 1, 1, 1))
    out = jax.jit(
        lambda z: ns.sample(predict, z, solver, ns.ddpm_grid(250), key=jax.random.key(1)).sample
    )(noise)
    mean, std = float(jnp.mean(out)), float(jnp.std(out))
    # Standard errors with 20,000 samples: 0.6 / sqrt(n) = 0.0042 on the mean and 0.003 on
    # the std. The 250-step biases, measured with 200,000 samples: mean within 0.002, std
    # -0.014 (beta_tilde variance and DDIM eta = 1), +0.0035 (beta), -0.0069 (DDIM eta = 0).
    # Bars: 0.02 on the mean and 0.03 on the std (bias plus 5 standard errors).
    assert abs(mean - MU) < 0.02, (name, mean)
    assert abs(std - S) < 0.03, (name, std)


def test_cfg_wrapper_guides_only_the_noise_channels():
    """``ClassifierFreeGuidance(guided_channels=C)`` on an (eps, v) network, through DDPM."""
    channels = SHAPE[-1]

    def network(x, s, y):  # a label-dependent (eps, v) prediction
        shift = jnp.where(y == 0, 0.3, -0.2)[:, None, None, None]
        eps = jnp.tanh(x + shift + s[:, None, None, None])
        return jnp.concatenate([eps, jnp.tanh(shift) * jnp.ones_like(eps)], axis=-1)

    labels, null = jnp.zeros((SHAPE[0],), jnp.int32), 1
    guided = ns.ClassifierFreeGuidance(network, labels, null, 2.5, guided_channels=channels)

    def by_hand(x, s):
        cond = network(x, jnp.full(x.shape[:1], s), labels)
        uncond = network(x, jnp.full(x.shape[:1], s), jnp.full_like(labels, null))
        eps = cond[..., :channels] + 1.5 * (cond[..., :channels] - uncond[..., :channels])
        return jnp.concatenate([eps, cond[..., channels:]], axis=-1)

    noise = jax.random.normal(jax.random.key(0), SHAPE)
    solver, grid, key = ns.DDPMAncestral(SCHEDULE), ns.ddpm_grid(20), jax.random.key(2)
    ours = ns.sample(guided, noise, solver, grid, key=key).sample
    expected = ns.sample(by_hand, noise, solver, grid, key=key).sample
    conditional = ns.ClassifierFreeGuidance(network, labels, null, 1.0)
    unguided = ns.sample(conditional, noise, solver, grid, key=key).sample
    # Same float32 operations in another order; the toy predictor is no denoiser, so values
    # grow to O(100): agreement to 1e-5 relative (measured 1.1e-6).
    np.testing.assert_allclose(np.asarray(ours), np.asarray(expected), rtol=1e-5, atol=1e-5)
    assert float(jnp.max(jnp.abs(ours - unguided))) > 0.05


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="variance must be one of"):
        ns.DDPMAncestral(variance="learned")
    with pytest.raises(ValueError, match="needs a prediction with 2C channels"):
        ns.DDPMAncestral().step(lambda x, s: x, jnp.zeros(SHAPE), (), 1.0, 0.5, jax.random.key(0))
    with pytest.raises(ValueError, match="is stochastic"):
        ns.DDPMAncestral().step(lambda x, s: x, jnp.zeros(SHAPE), (), 1.0, 0.5, None)
    with pytest.raises(ValueError, match="distinct integers"):
        ns.ddpm_grid([999, 999, 0])
