"""MeanFlow: the JVP target on an analytic flow, the r = t reduction, guidance and dropout."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nnx_objectives import (
    InterpolantObjective,
    MeanFlowGuidance,
    MeanFlowObjective,
    UniformTime,
    meanflow_target,
    sample_two_times,
)

MU = np.array([0.7, -1.2, 0.3])
STD = 0.4


def _gaussian_flow():
    """Data N(MU, STD^2 I), linear path: marginal mean (1 - t) MU, deviation
    sd(t) = sqrt((1 - t)^2 STD^2 + t^2). The probability-flow map is affine,
    z_r = m(r) + sd(r) / sd(t) (z - m(t)), so the average velocity is
    u(z, r, t) = (z - z_r) / (t - r) and the instantaneous one
    v(z, t) = m'(t) + sd'(t) / sd(t) (z - m(t))."""
    mu = jnp.asarray(MU, jnp.float32)

    def mean(t):
        return (1 - t)[:, None] * mu

    def sd(t):
        return jnp.sqrt((1 - t) ** 2 * STD**2 + t**2)[:, None]

    def average_velocity(z, r, t, y):
        z_r = mean(r) + sd(r) / sd(t) * (z - mean(t))
        return (z - z_r) / (t - r)[:, None]

    def velocity(z, t):
        d_sd = ((-(1 - t) * STD**2 + t) / jnp.sqrt((1 - t) ** 2 * STD**2 + t**2))[:, None]
        return -mu + d_sd / sd(t) * (z - mean(t))

    return average_velocity, velocity


def test_jvp_target_equals_the_analytic_average_velocity(jit):
    average_velocity, velocity = _gaussian_flow()
    rng = np.random.default_rng(0)
    batch = 64
    t = rng.uniform(0.1, 1.0, batch).astype(np.float32)
    r = (t * rng.uniform(0.0, 0.8, batch)).astype(np.float32)  # t - r >= 0.02
    z = rng.standard_normal((batch, 3)).astype(np.float32)
    y = np.zeros((batch,), np.int32)

    @jit
    def targets(z, r, t):
        exact = meanflow_target(average_velocity, z, r, t, y, velocity(z, t))
        # Control: the instantaneous velocity posing as the average one.
        wrong = meanflow_target(lambda z, r, t, y: velocity(z, t), z, r, t, y, velocity(z, t))
        return exact, wrong

    (u, u_target), (u_wrong, wrong_target) = targets(z, r, t)
    # The MeanFlow identity u = v - (t - r) du/dt holds exactly for the true average velocity;
    # float32 with (t - r) >= 0.02 in a denominator: 2e-5 absolute on O(1) values.
    np.testing.assert_allclose(u_target, u, atol=2e-5, rtol=1e-5)
    assert np.max(np.abs(np.asarray(wrong_target) - np.asarray(u_wrong))) > 0.05


@pytest.fixture(scope="module")
def two_time_net(networks, build):
    return build(lambda: networks["TinyNet"]((4, 4, 1), num_times=2, rngs=nnx.Rngs(0)))


def _batch(seed, batch=16):
    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal((batch, 4, 4, 1)).astype(np.float32)
    eps = rng.standard_normal((batch, 4, 4, 1)).astype(np.float32)
    t = rng.uniform(0.05, 1.0, batch).astype(np.float32)
    r = (t * rng.uniform(0.0, 1.0, batch)).astype(np.float32)
    y = rng.integers(0, 4, batch).astype(np.int32)
    return x0, eps, r, t, y


def test_r_equal_t_is_flow_matching(two_time_net, jit):
    x0, eps, _, t, y = _batch(1)
    plain = MeanFlowObjective(adaptive_power=0.0, equal_times_fraction=1.0)
    adaptive = MeanFlowObjective(adaptive_power=1.0, adaptive_constant=0.01)
    flow = InterpolantObjective()

    @jit
    def losses(x0, eps, t, y):
        meanflow, aux = plain.loss_at(two_time_net, x0, y, t, t, eps)
        matching, _ = flow.loss_at(lambda x, s, y: two_time_net(x, s, s, y), x0, y, t, eps)
        weighted, _ = adaptive.loss_at(two_time_net, x0, y, t, t, eps)
        return meanflow, matching, weighted, aux["loss_unweighted"]

    meanflow, matching, weighted, squared = losses(x0, eps, t, y)
    # MeanFlow sums over the 16 elements where flow matching averages; same float32 terms.
    np.testing.assert_allclose(meanflow, 16 * matching, rtol=1e-5)
    # Adaptive weight sg(1 / (||Delta||^2 + c)^p) with p = 1, c = 0.01.
    np.testing.assert_allclose(weighted, squared / (squared + 0.01), rtol=1e-5)


def test_time_sampling_fraction_and_order():
    r, t = sample_two_times(jax.random.key(0, impl="rbg"), 8, UniformTime(), 0.75)
    r, t = np.asarray(r), np.asarray(t)
    # floor(8 * 0.75) = 6 rows with r = t, the others with r < t.
    np.testing.assert_array_equal(r[:6], t[:6])
    assert np.all(r[6:] < t[6:])
    r, t = sample_two_times(jax.random.key(1, impl="rbg"), 8, UniformTime(), 1.0)
    np.testing.assert_array_equal(np.asarray(r), np.asarray(t))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        sample_two_times(jax.random.key(1, impl="rbg"), 8, UniformTime(), 1.5)


def test_guidance_folds_cfg_into_the_target(two_time_net, jit):
    x0, eps, r, t, y = _batch(2)
    null = 4
    y[:3] = null  # three dropped rows keep the plain velocity
    guidance = MeanFlowGuidance(null_label=null, omega=0.6, kappa=0.3, t_min=0.2, t_max=0.8)
    guided = MeanFlowObjective(adaptive_power=0.0, guidance=guidance)
    unguided = MeanFlowObjective(adaptive_power=0.0)
    neutral = MeanFlowObjective(
        adaptive_power=0.0, guidance=MeanFlowGuidance(null_label=null, kappa=0.0)
    )

    @jit
    def compare(x0, eps, r, t, y):
        te = t[:, None, None, None]
        z = (1 - te) * x0 + te * eps
        v = eps - x0
        u_cond = two_time_net(z, t, t, y)
        u_null = two_time_net(z, t, t, jnp.full_like(y, null))
        v_guided = 0.6 * v + 0.3 * u_cond + 0.1 * u_null  # 1 - omega - kappa = 0.1
        use = ((t >= 0.2) & (t <= 0.8) & (y != null))[:, None, None, None]
        u, target = meanflow_target(two_time_net, z, r, t, y, jnp.where(use, v_guided, v))
        manual = jnp.sum((u - target) ** 2, axis=(1, 2, 3))
        return (
            guided.loss_at(two_time_net, x0, y, r, t, eps)[0],
            manual,
            neutral.loss_at(two_time_net, x0, y, r, t, eps)[0],
            unguided.loss_at(two_time_net, x0, y, r, t, eps)[0],
        )

    loss, manual, neutral_loss, unguided_loss = (np.asarray(a) for a in compare(x0, eps, r, t, y))
    np.testing.assert_allclose(loss, manual, rtol=1e-5)
    # omega = 1, kappa = 0 is no guidance at all.
    np.testing.assert_allclose(neutral_loss, unguided_loss, rtol=1e-6)
    # The guidance changed the rows inside the interval whose label was kept.
    inside = np.asarray((t >= 0.2) & (t <= 0.8) & (y != null))
    assert inside.sum() >= 3
    assert np.all(np.abs(np.asarray(loss - unguided_loss))[inside] > 1e-4)
    np.testing.assert_allclose(
        np.asarray(loss)[~inside], np.asarray(unguided_loss)[~inside], rtol=1e-6
    )
    assert guidance.effective_scale == pytest.approx(0.6 / 0.7)


def test_guidance_defaults_are_the_official_ones():
    # Gsunshine/meanflow meanflow.py, class MeanFlow: omega 1.0, kappa 0.5, dropout 0.1,
    # interval [0, 1], labels dropped on the first rows (cond_drop).
    guidance = MeanFlowGuidance(null_label=4)
    assert (guidance.omega, guidance.kappa, guidance.label_dropout) == (1.0, 0.5, 0.1)
    assert (guidance.t_min, guidance.t_max, guidance.drop_placement) == (0.0, 1.0, "first_rows")
    assert guidance.effective_scale == pytest.approx(2.0)
    with pytest.raises(ValueError, match="drop_placement"):
        MeanFlowGuidance(null_label=4, drop_placement="last_rows")


def test_official_drop_placement_drops_leading_rows_with_equal_times():
    null, batch = 10, 64
    labels = jnp.arange(batch, dtype=jnp.int32) % null
    first = MeanFlowGuidance(null_label=null, label_dropout=0.3)
    independent = MeanFlowGuidance(null_label=null, label_dropout=0.3, drop_placement="independent")
    counts, scattered = [], 0
    for seed in range(20):
        key = jax.random.key(seed)
        dropped = np.asarray(first.drop(key, labels)) == null
        count = int(dropped.sum())
        counts.append(count)
        # A prefix: rows [0, n) and nothing after.
        np.testing.assert_array_equal(dropped, np.arange(batch) < count)
        # n = #(u < p) over the batch, as cond_drop counts it.
        assert count == int(np.sum(np.asarray(jax.random.uniform(key, (batch,))) < 0.3))
        other = np.asarray(independent.drop(key, labels)) == null
        scattered += int(not np.array_equal(other, np.arange(batch) < other.sum()))
    # Binomial(64, 0.3): mean 19.2, sd 3.7; the mean of 20 draws lies within 4 sd (3.3).
    assert abs(np.mean(counts) - 19.2) < 3.3
    # Independent drops are (almost surely) not a prefix.
    assert scattered >= 18
    # With 75% of rows at r = t (48 of 64) every dropped row has r = t while n <= 48.
    r, t = sample_two_times(jax.random.key(0), batch, UniformTime(), 0.75)
    assert max(counts) <= 48
    np.testing.assert_array_equal(np.asarray(r)[: max(counts)], np.asarray(t)[: max(counts)])


def test_objective_drops_labels_with_the_guidance_placement(two_time_net):
    x0, *_ = _batch(2)
    labels = jnp.arange(x0.shape[0], dtype=jnp.int32) % 4
    guidance = MeanFlowGuidance(null_label=4, kappa=0.0, label_dropout=0.5)
    objective = MeanFlowObjective(adaptive_power=0.0, guidance=guidance)
    for seed in range(4):
        _, aux = objective(two_time_net, x0, labels, jax.random.key(seed))
        dropped = np.asarray(aux["label_dropped"]) > 0
        np.testing.assert_array_equal(dropped, np.arange(len(dropped)) < dropped.sum())
