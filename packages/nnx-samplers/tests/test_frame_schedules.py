"""Per-frame schedules: pyramid shapes, exact sampling of point masses, autoregressive rollout."""

import jax.numpy as jnp
import numpy as np
import pytest

from nnx_samplers import pyramid_times, rollout_frames, sample_frames


def test_pyramid_rows_run_from_noise_to_data_with_staggered_starts():
    full = pyramid_times(3, 4)  # stride 0: every frame together
    assert full.shape == (5, 3) and np.all(full == full[:, :1])
    pyramid = pyramid_times(3, 4, stride=2)
    assert pyramid.shape == (4 + 2 * 2 + 1, 3)
    assert np.all(pyramid[0] == 1.0) and np.all(pyramid[-1] == 0.0)
    assert np.all(np.diff(pyramid, axis=0) <= 0)  # no frame ever goes back towards noise
    np.testing.assert_allclose(pyramid[2], [0.5, 1.0, 1.0])  # frame 1 starts 2 rows late
    sequential = pyramid_times(3, 4, stride=4)
    # Frame by frame: a frame's first step (from row `start` to `start + 1`) starts at the
    # row where the previous frame has become data.
    starts = [int(np.argmax(sequential[:, f] < 1.0)) - 1 for f in range(3)]
    ends = [int(np.argmax(sequential[:, f] == 0.0)) for f in range(3)]
    assert starts[1:] == ends[:-1]
    with pytest.raises(ValueError, match="num_steps >= 1"):
        pyramid_times(3, 0)


def point_mass_field(targets):
    """Exact velocity of point-mass data per frame: v = (x - x0) / t (0 where t = 0)."""

    def field(x, t):
        te = t[..., None, None]
        return jnp.where(te > 0, (x - targets) / jnp.where(te > 0, te, 1.0), 0.0)

    return field


@pytest.mark.parametrize("stride", [0, 1, 3])
def test_euler_on_any_schedule_lands_on_point_mass_data(stride):
    targets = jnp.asarray(
        np.arange(4, dtype=np.float32).reshape(1, 4, 1, 1) * np.ones((2, 1, 3, 1))
    )
    noise = jnp.asarray(np.random.default_rng(0).standard_normal((2, 4, 3, 1)), jnp.float32)
    out = sample_frames(point_mass_field(targets), noise, pyramid_times(4, 3, stride=stride))
    # The exact field makes each Euler step exact: x - x0 shrinks by t_next / t; float32.
    np.testing.assert_allclose(np.asarray(out), np.asarray(targets), atol=1e-5)


def test_rollout_beyond_the_window_conditions_on_the_generated_context():
    """Data where each frame is the previous frame + 1: the field reads the context frame."""
    window = 3

    def field(x, t):
        # Frame f's target is frame f-1's current value + 1 (frame 0: 0); exact once the
        # earlier frames are clean, which the autoregressive schedule guarantees.
        previous = jnp.concatenate([jnp.full_like(x[:, :1], -1.0), x[:, :-1]], axis=1)
        targets = previous + 1.0
        te = t[..., None, None]
        return jnp.where(te > 0, (x - targets) / jnp.where(te > 0, te, 1.0), 0.0)

    noise = jnp.asarray(np.random.default_rng(1).standard_normal((2, 7, 2, 1)), jnp.float32)
    out = rollout_frames(field, noise, window=window, num_steps=2, stride=2)
    assert out.shape == (2, 7, 2, 1)
    expected = np.arange(7, dtype=np.float32).reshape(1, 7, 1, 1) * np.ones((2, 1, 2, 1))
    np.testing.assert_allclose(np.asarray(out), expected, atol=1e-4)
