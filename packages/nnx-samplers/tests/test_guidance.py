"""Guidance wrappers: the formula, scale 1, the interval, the legacy 3-channel mode, one pass."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx_samplers as ns

NUM_CLASSES = 5
NULL = NUM_CLASSES  # the null row, passed explicitly as everywhere in the library
# float32 on O(1) values: compiled (lax.cond, jit) and eager evaluations of the same network
# may differ in the last ulp (fused multiply-add), so "equal" means within 1e-6; guided and
# unguided outputs differ by more than 0.1 in every test, so this cannot hide a wrong branch.
TOL = 1e-6


class ToyNetwork:
    """``model(x, t, y) = a(t) x + table[y]`` with a distinct row per label (incl. the null).

    Records every runtime call's batch size and labels through ``jax.debug.callback``, so
    branches that ``lax.cond`` skips are not counted.
    """

    def __init__(self, seed: int, channels: int = 4):
        rng = np.random.default_rng(seed)
        self.table = jnp.asarray(rng.standard_normal((NUM_CLASSES + 1, channels)), jnp.float32)
        self.gain = float(rng.uniform(0.5, 1.5))
        self.calls: list[tuple[int, tuple[int, ...]]] = []

    def _record(self, y):
        self.calls.append((int(y.shape[0]), tuple(int(v) for v in np.asarray(y))))

    def __call__(self, x, t, y):
        assert t.shape == (x.shape[0],), "networks receive one time per sample"
        jax.debug.callback(self._record, y)
        return self.gain * (1 + t)[:, None, None, None] * x + self.table[y][:, None, None, :]


@pytest.fixture
def inputs():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((3, 4, 4, 4)), jnp.float32)
    labels = jnp.asarray([0, 2, 4], jnp.int32)
    return x, labels


def _cfg(model, labels, **kwargs):
    return ns.ClassifierFreeGuidance(model, labels, null_label=NULL, **kwargs)


def test_cfg_formula_and_single_doubled_pass(inputs):
    x, labels = inputs
    model = ToyNetwork(1)
    t = jnp.asarray(0.4)
    guided = jax.jit(lambda x, t: _cfg(model, labels, scale=2.5)(x, t))(x, t)
    jax.effects_barrier()
    # One forward on a doubled batch: conditional labels first, then the explicit null label.
    assert model.calls == [(6, (0, 2, 4, NULL, NULL, NULL))]
    t_batch = jnp.full((3,), 0.4)
    cond = model(x, t_batch, labels)
    uncond = model(x, t_batch, jnp.full((3,), NULL))
    np.testing.assert_allclose(guided, uncond + 2.5 * (cond - uncond), rtol=TOL, atol=TOL)


def test_null_label_is_an_argument(inputs):
    x, labels = inputs
    model = ToyNetwork(2)
    ns.ClassifierFreeGuidance(model, labels, null_label=1, scale=2.0)(x, 0.5)
    jax.effects_barrier()
    assert model.calls[-1][1] == (0, 2, 4, 1, 1, 1)


@pytest.mark.parametrize(
    "make",
    [
        lambda m, g, y: _cfg(m, y, scale=1.0),
        lambda m, g, y: _cfg(m, y, scale=1.0, guided_channels=ns.DIT_LEGACY_GUIDED_CHANNELS),
        lambda m, g, y: _cfg(m, y, scale=1.0, interval=ns.GuidanceInterval(0.0, 0.7)),
        lambda m, g, y: ns.AutoGuidance(m, g, y, scale=1.0),
    ],
    ids=["cfg", "cfg_legacy", "cfg_interval", "autoguidance"],
)
def test_scale_one_is_the_conditional_output(inputs, make):
    x, labels = inputs
    model, guide = ToyNetwork(3), ToyNetwork(4)
    t = jnp.asarray(0.3)
    out = make(model, guide, labels)(x, t)
    np.testing.assert_allclose(out, model(x, jnp.full((3,), 0.3), labels), rtol=TOL, atol=TOL)


def test_interval_scalar_time_skips_the_null_pass(inputs):
    x, labels = inputs
    model = ToyNetwork(5)
    wrapper = _cfg(model, labels, scale=3.0, interval=ns.GuidanceInterval(0.2, 0.7))
    run = jax.jit(lambda x, t: wrapper(x, t))
    cond = model(x, jnp.full((3,), 0.9), labels)
    model.calls.clear()
    outside = run(x, jnp.asarray(0.9))
    jax.effects_barrier()
    np.testing.assert_allclose(outside, cond, rtol=TOL, atol=TOL)
    assert [size for size, _ in model.calls] == [3]  # conditional pass only

    model.calls.clear()
    inside = run(x, jnp.asarray(0.5))
    jax.effects_barrier()
    assert [size for size, _ in model.calls] == [6]
    unguided = model(x, jnp.full((3,), 0.5), labels)
    assert float(jnp.max(jnp.abs(inside - unguided))) > 0.1


def test_interval_per_sample_times(inputs):
    x, labels = inputs
    model = ToyNetwork(6)
    t = jnp.asarray([0.1, 0.5, 0.95])  # below, inside, above [0.2, 0.7]
    guided_everywhere = _cfg(model, labels, scale=3.0)(x, t)
    with_interval = _cfg(model, labels, scale=3.0, interval=ns.GuidanceInterval(0.2, 0.7))(x, t)
    cond = model(x, t, labels)
    np.testing.assert_allclose(with_interval[0], cond[0], rtol=TOL, atol=TOL)
    np.testing.assert_allclose(with_interval[2], cond[2], rtol=TOL, atol=TOL)
    np.testing.assert_allclose(with_interval[1], guided_everywhere[1], rtol=TOL, atol=TOL)
    assert float(jnp.max(jnp.abs(with_interval[1] - cond[1]))) > 0.1


def test_legacy_mode_guides_only_the_first_three_channels(inputs):
    x, labels = inputs
    model = ToyNetwork(7)
    t = jnp.asarray(0.5)
    legacy = _cfg(model, labels, scale=4.0, guided_channels=ns.DIT_LEGACY_GUIDED_CHANNELS)(x, t)
    full = _cfg(model, labels, scale=4.0)(x, t)
    cond = model(x, jnp.full((3,), 0.5), labels)
    np.testing.assert_allclose(legacy[..., :3], full[..., :3], rtol=TOL, atol=TOL)
    np.testing.assert_allclose(legacy[..., 3], cond[..., 3], rtol=TOL, atol=TOL)
    assert float(jnp.max(jnp.abs(full[..., 3] - cond[..., 3]))) > 0.1


def test_guided_channels_out_of_range_is_a_clear_error(inputs):
    x, labels = inputs
    with pytest.raises(ValueError, match="guided_channels"):
        _cfg(ToyNetwork(8), labels, scale=2.0, guided_channels=5)(x, 0.5)


def test_per_sample_scale(inputs):
    x, labels = inputs
    model = ToyNetwork(9)
    scales = jnp.asarray([1.0, 2.0, 4.0])
    out = _cfg(model, labels, scale=scales)(x, 0.5)
    for i, scale in enumerate([1.0, 2.0, 4.0]):
        single = _cfg(model, labels, scale=scale)(x, 0.5)
        np.testing.assert_allclose(out[i], single[i], rtol=TOL, atol=TOL)


def test_autoguidance_formula_and_guide_labels(inputs):
    x, labels = inputs
    main, guide = ToyNetwork(10), ToyNetwork(11)
    t_batch = jnp.full((3,), 0.6)
    out = ns.AutoGuidance(main, guide, labels, scale=2.1)(x, 0.6)
    weak = guide(x, t_batch, labels)
    expected = weak + 2.1 * (main(x, t_batch, labels) - weak)
    np.testing.assert_allclose(out, expected, rtol=TOL, atol=TOL)
    # EDM2's CFG with a separate unconditional network: guide_labels = null labels.
    null = jnp.full((3,), NULL)
    out = ns.AutoGuidance(main, guide, labels, scale=2.1, guide_labels=null)(x, 0.6)
    weak = guide(x, t_batch, null)
    expected = weak + 2.1 * (main(x, t_batch, labels) - weak)
    np.testing.assert_allclose(out, expected, rtol=TOL, atol=TOL)


def test_guidance_commutes_with_the_noise_adapter(inputs):
    """Guidance weights sum to one and adapters are affine in the prediction, so guiding an
    epsilon network and then converting equals converting both passes and then guiding."""
    x, labels = inputs
    model = ToyNetwork(12)
    t = 0.35
    guided_then_converted = ns.VelocityFromNoise(_cfg(model, labels, scale=3.0))(x, t)
    t_batch = jnp.full((3,), t)
    v_cond = ns.velocity_from_noise(x, model(x, t_batch, labels), t)
    v_null = ns.velocity_from_noise(x, model(x, t_batch, jnp.full((3,), NULL)), t)
    np.testing.assert_allclose(
        guided_then_converted, v_null + 3.0 * (v_cond - v_null), rtol=1e-5, atol=1e-5
    )


def test_bad_interval_is_a_clear_error():
    with pytest.raises(ValueError, match="t_lo <= t_hi"):
        ns.GuidanceInterval(0.8, 0.2)


def test_conditional_field_broadcasts_time(inputs):
    x, labels = inputs
    model = ToyNetwork(13)
    out = ns.ConditionalField(model, labels)(x, 0.25)
    np.testing.assert_allclose(out, model(x, jnp.full((3,), 0.25), labels), rtol=TOL, atol=TOL)
