"""sCT / sCD with TrigFlow: exact consistency models on Gaussian data, and the JVP rearrangement.

Gaussian data ``x0 ~ N(MU, S0^2 I)`` with ``sigma_d = 0.5``. In scaled units ``a = x0 / sigma_d``
the TrigFlow state ``x~ = x_s / sigma_d = cos(s) a + sin(s) eps`` has mean ``cos(s) mu_a`` and
deviation ``sd(s) = sqrt(cos^2 s s_a^2 + sin^2 s)``; the probability-flow ODE is affine, so

* the teacher (sCD) is ``F_T = dx~/ds = -sin(s) mu_a + sd'(s) / sd(s) (x~ - cos(s) mu_a)``,
* the exact consistency function is ``f~ = mu_a + s_a / sd(s) (x~ - cos(s) mu_a)`` and, from
  ``f~ = cos(s) x~ - sin(s) F``, the exact consistency network
  ``F_cm = (cos(s) x~ - f~) / sin(s)``.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nnx_objectives import (
    ConditionalTangent,
    ConsistencyObjective,
    TeacherTangent,
    TrigFlowTime,
    trigflow_consistency_function,
    trigflow_state,
)

SIGMA_DATA = 0.5
MU = np.array([0.3, -0.2, 0.1])
S0 = 0.4


def _gaussian_trigflow(std_scale=1.0):
    mu_a = jnp.asarray(MU / SIGMA_DATA, jnp.float32)
    s_a = S0 / SIGMA_DATA * std_scale

    def parts(t):
        s = (0.5 * math.pi * t)[:, None]
        sd = jnp.sqrt(jnp.cos(s) ** 2 * s_a**2 + jnp.sin(s) ** 2)
        return s, sd

    def teacher(x, t, y):
        s, sd = parts(t)
        d_sd = jnp.sin(s) * jnp.cos(s) * (1 - s_a**2) / sd
        return -jnp.sin(s) * mu_a + d_sd / sd * (x - jnp.cos(s) * mu_a)

    def consistency_network(x, t, y):
        s, sd = parts(t)
        clean = mu_a + s_a / sd * (x - jnp.cos(s) * mu_a)
        return (jnp.cos(s) * x - clean) / jnp.sin(s)

    return teacher, consistency_network


def _data(seed, batch):
    rng = np.random.default_rng(seed)
    x0 = (MU + S0 * rng.standard_normal((batch, 3))).astype(np.float32)
    eps = rng.standard_normal((batch, 3)).astype(np.float32)
    return x0, eps, np.zeros((batch,), np.int32)


def test_scd_tangent_vanishes_for_the_exact_consistency_model(jit):
    teacher, exact = _gaussian_trigflow()
    _, spoiled = _gaussian_trigflow(std_scale=1.3)
    x0, eps, y = _data(0, 256)
    t = np.linspace(0.02, 0.98, 256).astype(np.float32)
    objective = ConsistencyObjective(tangent=TeacherTangent(teacher), normalisation_constant=None)

    @jit
    def tangents(x0, eps, t):
        one = jnp.float32(1.0)
        return (
            objective.tangent_direction(exact, x0, y, t, eps, one)[1],
            objective.tangent_direction(spoiled, x0, y, t, eps, one)[1],
        )

    g_exact, g_spoiled = (np.asarray(a) for a in tangents(x0, eps, t))
    # df/ds = 0 along the ODE for the true consistency function: zero up to float32 error
    # amplified by 1/sin(s) (s >= 0.03 here), measured ~1e-6.
    assert np.abs(g_exact).max() < 1e-4, np.abs(g_exact).max()
    assert np.abs(g_spoiled).max() > 1e-2


def test_jvp_form_equals_cos_times_total_derivative(networks, build, jit):
    """g = cos(s) df/ds with the warm-up factor on its second term; df/ds by autodiff of f."""
    from flax import nnx

    model = build(lambda: networks["TinyNet"]((3,), rngs=nnx.Rngs(0)))
    x0, eps, y = _data(1, 32)
    t = np.linspace(0.05, 0.95, 32).astype(np.float32)
    objective = ConsistencyObjective(tangent=ConditionalTangent(), normalisation_constant=None)

    @jit
    def compare(x0, eps, t):
        x_s = trigflow_state(x0, eps, t, SIGMA_DATA)
        s = 0.5 * math.pi * t
        dx_ds = jnp.cos(s)[:, None] * SIGMA_DATA * eps - jnp.sin(s)[:, None] * x0

        def consistency(x, angle):
            return trigflow_consistency_function(
                model, x, angle / (0.5 * math.pi), y, sigma_data=SIGMA_DATA
            )

        _, df_ds = jax.jvp(consistency, (x_s, s), (dx_ds, jnp.ones_like(s)))
        f_out = model(x_s / SIGMA_DATA, t, y)
        first = -(jnp.cos(s)[:, None] ** 2) * (SIGMA_DATA * f_out - dx_ds)
        g_full = objective.tangent_direction(model, x0, y, t, eps, jnp.float32(1.0))[1]
        g_half = objective.tangent_direction(model, x0, y, t, eps, jnp.float32(0.5))[1]
        return g_full, g_half, jnp.cos(s)[:, None] * df_ds, first

    g_full, g_half, expected, first = (np.asarray(a) for a in compare(x0, eps, t))
    # Two float32 evaluations of the same derivative (one rearranged): 1e-5 relative to O(1).
    np.testing.assert_allclose(g_full, expected, rtol=1e-4, atol=1e-5)
    # Warm-up r scales only the second term: g(r) = first + r (g(1) - first).
    np.testing.assert_allclose(g_half, first + 0.5 * (g_full - first), rtol=1e-4, atol=1e-5)


def test_sct_gradient_vanishes_at_the_exact_consistency_model(jit):
    """E[g | x_s] = 0 for sCT at the exact model (g is affine in the conditional velocity)."""
    batch = 1 << 16
    x0, eps, y = _data(2, batch)
    rng = np.random.default_rng(3)
    t = ((2 / math.pi) * np.arctan(np.exp(-1.0 + 1.4 * rng.standard_normal(batch)) / 0.5)).astype(
        np.float32
    )
    objective = ConsistencyObjective(normalisation_constant=None)

    @jit
    def statistics(x0, eps, t, std_scale):
        _, network = _gaussian_trigflow(std_scale)

        def total(offset):
            loss, _ = objective.loss_at(lambda x, s, y: network(x, s, y) + offset, x0, y, t, eps)
            return jnp.sum(loss)

        grad = jax.grad(total)(jnp.zeros_like(x0))  # = -2 g / D per example
        x_scaled = trigflow_state(x0, eps, t, SIGMA_DATA) / SIGMA_DATA
        features = jnp.concatenate(
            [
                jnp.reshape(x_scaled[:, :, None] * grad[:, None, :], (batch, -1)),
                grad,
                jnp.reshape(
                    t[:, None, None] * x_scaled[:, :, None] * grad[:, None, :], (batch, -1)
                ),
            ],
            axis=1,
        )
        return jnp.mean(features, 0), jnp.std(features, 0) / math.sqrt(batch)

    mean, standard_error = (np.asarray(a) for a in statistics(x0, eps, t, 1.0))
    bad_mean, bad_se = (np.asarray(a) for a in statistics(x0, eps, t, 1.3))
    # 21 components (A: 9, b: 3, C: 9): all within 4.5 standard errors of zero.
    assert np.all(np.abs(mean) < 4.5 * standard_error), mean / standard_error
    # Control: a consistency model for the wrong data deviation is not stationary.
    assert np.any(np.abs(bad_mean) > 6 * bad_se)


def test_normalisation_warmup_and_teacher_guidance(jit):
    x0, eps, y = _data(4, 16)
    t = np.linspace(0.1, 0.9, 16).astype(np.float32)
    teacher, exact = _gaussian_trigflow()
    spoiled = _gaussian_trigflow(1.5)[1]

    def labelled_teacher(x, t, y):
        return teacher(x, t, y) + 0.3 * y[:, None].astype(jnp.float32)

    plain = ConsistencyObjective(tangent=TeacherTangent(labelled_teacher))
    guided = ConsistencyObjective(
        tangent=TeacherTangent(labelled_teacher, guidance_scale=2.0, null_label=4)
    )
    warm = ConsistencyObjective(tangent_warmup_steps=100)
    y_one = np.ones((16,), np.int32)

    @jit
    def evaluate(x0, eps, t, step):
        kwargs = dict(x0=x0, eps=eps, x_s=x0, t=t, y=y_one, sigma_data=SIGMA_DATA)
        return (
            plain.loss_at(spoiled, x0, y_one, t, eps)[0],
            guided.tangent(**kwargs),
            plain.tangent(**kwargs),
            warm.warmup_ratio(step),
        )

    loss, guided_tangent, plain_tangent, ratio = evaluate(x0, eps, t, jnp.asarray(25))
    # Normalised tangent: ||g|| / (||g|| + c) < 1, so mean(g^2) < 1 / D.
    assert np.all(np.asarray(loss) < 1 / 3)
    # Guidance: F_null + w (F_cond - F_null) with the null label 4 => the label offset moves
    # from 0.3 * 1 to 0.3 * (4 + 2 (1 - 4)) = -0.6: the tangent shifts by sigma_d * (-0.9).
    np.testing.assert_allclose(
        np.asarray(guided_tangent) - np.asarray(plain_tangent), SIGMA_DATA * -0.9, atol=1e-5
    )
    assert float(ratio) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="pass the training step"):
        warm.warmup_ratio(None)
    with pytest.raises(ValueError, match="sigma_data"):
        ConsistencyObjective(sigma_data=1.0, time_distribution=TrigFlowTime(sigma_data=0.5))
    with pytest.raises(ValueError, match="null_label"):
        TeacherTangent(teacher, guidance_scale=2.0)
