"""The driver: NFE equals the field evaluations actually made, no recompilation, trajectories."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx_samplers as ns


class CountingField:
    """Wraps a field and counts its evaluations at run time (``jax.debug.callback``), so a
    branch that ``lax.cond`` skips is not counted."""

    def __init__(self, field):
        self.field = field
        self.count = 0

    def _tick(self):
        self.count += 1

    def __call__(self, *args):
        jax.debug.callback(self._tick)
        return self.field(*args)


def _x(shape=(16, 2), seed=0, dtype=jnp.float32):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), dtype)


SOLVERS = {
    # name: (solver, grid, expected NFE for the grid's N)
    "euler": (ns.Euler(), ns.UniformGrid(7), 7),
    "heun": (ns.Heun(), ns.UniformGrid(7), 13),
    "heun_all": (ns.Heun(final_step="heun"), ns.UniformGrid(7), 14),
    "euler_maruyama": (ns.EulerMaruyama(), ns.UniformGrid(7), 7),
    "edm": (ns.EDMStochastic(s_churn=5.0), ns.EDMGrid(7), 13),
    "dpm_2m": (ns.DPMSolverPlusPlus2M(), ns.LogSNRGrid(7), 7),
    "dpm_3m": (ns.DPMSolverPlusPlus3M(), ns.UniformGrid(7), 7),
}


def test_nfe_counts_actual_evaluations(mixture):
    """Solution.nfe equals the evaluations made at run time, for every solver (one jit for
    all of them: compiling dominates the cost)."""
    fields = {name: CountingField(mixture.velocity) for name in SOLVERS}

    @jax.jit
    def run_all(x, key):
        return {
            name: ns.sample(fields[name], x, solver, grid, key=key)
            for name, (solver, grid, _) in SOLVERS.items()
        }

    outs = run_all(_x(), jax.random.key(0))
    jax.effects_barrier()
    for name, (_, _, expected) in SOLVERS.items():
        assert (int(outs[name].nfe), fields[name].count) == (expected, expected), name
        assert np.all(np.isfinite(np.asarray(outs[name].sample))), name


def test_second_call_does_not_recompile(mixture):
    """A guided SDE sampler inside jit: one trace and one cache entry for two calls with
    different values of the same shapes."""
    traces = []
    labels_table = jnp.asarray(np.random.default_rng(1).standard_normal((4, 2)), jnp.float32)

    def network(x, t, y):
        return mixture.velocity(x, t) + 0.1 * labels_table[y]

    @jax.jit
    def generate(x, labels, scale, key):
        traces.append(1)
        field = ns.ClassifierFreeGuidance(
            network, labels, null_label=3, scale=scale, interval=ns.GuidanceInterval(0.0, 0.7)
        )
        return ns.sample(field, x, ns.EulerMaruyama(), ns.UniformGrid(8), key=key)

    labels = jnp.asarray([0, 1, 2, 0] * 4, jnp.int32)
    first = generate(_x(seed=1), labels, 1.5, jax.random.key(1))
    second = generate(_x(seed=2), labels[::-1], 2.0, jax.random.key(2))
    assert len(traces) == 1
    assert generate._cache_size() == 1
    assert float(jnp.max(jnp.abs(first.sample - second.sample))) > 0.1


def test_trajectory(mixture):
    x = _x()
    out = ns.sample(mixture.velocity, x, ns.Heun(), ns.UniformGrid(5), return_trajectory=True)
    assert out.trajectory.shape == (6, *x.shape)
    np.testing.assert_array_equal(out.trajectory[0], x)
    np.testing.assert_array_equal(out.trajectory[-1], out.sample)
    assert ns.sample(mixture.velocity, x, ns.Euler(), ns.UniformGrid(5)).trajectory is None


def test_state_dtype_is_kept():
    """A bfloat16 state stays bfloat16 through every solver (times and multistep history are
    float32 inside; the carry must keep one dtype or lax.scan refuses it)."""

    @jax.jit
    def run_all(x, key):
        return [
            ns.sample(lambda x, t: -x, x, solver, grid, key=key).sample
            for solver, grid, _ in SOLVERS.values()
        ]

    for out in run_all(_x(dtype=jnp.bfloat16), jax.random.key(0)):
        assert out.dtype == jnp.bfloat16
        assert np.all(np.isfinite(np.asarray(out, np.float32)))


def test_euler_jump_is_exact_for_the_exact_average_velocity():
    """MeanFlow on Gaussian data x0 ~ N(mu, s^2): the linear-path flow is affine,
    x_r = (1 - r) mu + c_r (x_t - (1 - t) mu) / c_t with c_t = sqrt((1 - t)^2 s^2 + t^2), so
    the exact average velocity is u = (x_r - x_t) / (r - t) and EulerJump is exact in 1 or 2
    steps (float32: 1e-6)."""
    mu, s = 0.7, 0.4

    def scale(t):
        return jnp.sqrt((1 - t) ** 2 * s**2 + t**2)

    def average_velocity(x, r, t):
        x_r = (1 - r) * mu + scale(r) * (x - (1 - t) * mu) / scale(t)
        return (x_r - x) / (r - t)

    field = CountingField(average_velocity)
    noise = _x((8, 3))
    for grid in [ns.UniformGrid(1), ns.ArrayGrid([1.0, 0.4, 0.0])]:
        field.count = 0
        out = ns.sample(field, noise, ns.EulerJump(), grid)
        jax.effects_barrier()
        np.testing.assert_allclose(out.sample, mu + s * noise, rtol=1e-6, atol=1e-6)
        assert int(out.nfe) == field.count == grid.num_steps


def test_conditional_two_time_field():
    def model(x, r, t, y):
        assert r.shape == t.shape == y.shape == (x.shape[0],)
        return x * (t - r)[:, None] + y[:, None]

    labels = jnp.asarray([1, 2], jnp.int32)
    out = ns.ConditionalTwoTimeField(model, labels)(jnp.ones((2, 3)), 0.25, 1.0)
    np.testing.assert_allclose(out, [[1.75] * 3, [2.75] * 3])


def test_grid_with_wrong_length_is_rejected():
    class BrokenGrid:
        num_steps = 4

        def times(self):
            return jnp.linspace(1.0, 0.0, 4)

    with pytest.raises(ValueError, match="num_steps \\+ 1"):
        ns.sample(lambda x, t: x, jnp.zeros((1, 1)), ns.Euler(), BrokenGrid())


def test_solvers_and_grids_satisfy_their_protocols():
    for solver, grid, _ in SOLVERS.values():
        assert isinstance(solver, ns.Solver)
        assert isinstance(grid, ns.TimeGrid)
    assert isinstance(ns.EulerJump(), ns.Solver)
    assert isinstance(ns.ShiftedGrid(ns.UniformGrid(3), 2.0), ns.TimeGrid)
