"""Few-step autoregressive frames: context windows, clean context times, closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nnx_samplers import few_step_rollout, next_frame_denoiser, uniform_step_times


def _sum_of_context_plus_one(x, t):
    """A point-mass denoiser: the last frame is ``1 + sum of the earlier frames``, exactly.

    Its clean estimate does not depend on the noisy frame, so every few-step sampler returns
    it whatever the noise and the number of steps; frames ``0 .. n-2`` are returned as given.
    The earlier frames must be clean (t = 0), which it checks through NaNs.
    """
    context, last_t = x[:, :-1], t[:, -1]
    clean = jnp.all(t[:, :-1] == 0.0, axis=1) & (last_t > 0.0)
    last = 1.0 + context.sum(axis=1) + jnp.where(clean, 0.0, jnp.nan)[:, None, None, None]
    return jnp.concatenate([context, last[:, None]], axis=1)


@pytest.mark.parametrize(
    "window, expected", [(1, [1, 1, 1, 1, 1]), (2, [1, 2, 3, 4, 5]), (3, [1, 2, 4, 7, 12])]
)
def test_each_frame_sees_the_window_before_it(window, expected):
    noise = jax.random.normal(jax.random.key(0), (2, 5, 3, 3, 1))
    frames = few_step_rollout(
        _sum_of_context_plus_one,
        noise,
        window=window,
        times=uniform_step_times(3),
        key=jax.random.key(1),
    )
    assert frames.shape == noise.shape
    # window w: frame f = 1 + sum of the w - 1 frames before it (a recurrence on exact
    # small integers in float32: equality).
    np.testing.assert_array_equal(frames[0, :, 0, 0, 0], np.asarray(expected, np.float32))
    np.testing.assert_array_equal(frames[0], frames[1])


def test_next_frame_denoiser_appends_the_frame_after_clean_context():
    seen = {}

    def denoise(x, t):
        seen["x"], seen["t"] = x, t
        return x * 2.0

    context = jnp.ones((2, 3, 4, 4, 1))
    x = jnp.full((2, 4, 4, 1), 5.0)
    out = next_frame_denoiser(denoise, context)(x, jnp.asarray(0.7))
    assert seen["x"].shape == (2, 4, 4, 4, 1)
    np.testing.assert_array_equal(seen["t"], np.tile([0.0, 0.0, 0.0, 0.7], (2, 1)).astype("f4"))
    np.testing.assert_array_equal(out, np.full((2, 4, 4, 1), 10.0, np.float32))
    first = next_frame_denoiser(denoise, None)(x, jnp.asarray([0.5, 0.25]))
    assert seen["x"].shape == (2, 1, 4, 4, 1) and first.shape == x.shape
    np.testing.assert_array_equal(seen["t"], np.asarray([[0.5], [0.25]], np.float32))


def test_window_must_be_positive():
    with pytest.raises(ValueError, match="window must be >= 1"):
        few_step_rollout(
            _sum_of_context_plus_one,
            jnp.zeros((1, 2, 2, 2, 1)),
            window=0,
            times=(1.0,),
            key=jax.random.key(0),
        )
