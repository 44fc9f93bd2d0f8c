"""Self Forcing: the training rollout's values, its truncated gradients, and the DMD loss."""

import jax
import jax.numpy as jnp
import numpy as np

import nnx_objectives as no
import nnx_samplers as sp


def _generator(w):
    """A point-mass causal generator: last frame = ``w * (1 + sum of the earlier frames)``."""

    def denoise(x, t):
        last = w * (1.0 + x[:, :-1].sum(axis=1))
        return jnp.concatenate([x[:, :-1], last[:, None]], axis=1)

    return denoise


def test_rollout_equals_the_sampling_rollout_and_truncates_gradients_at_the_context():
    noise = jax.random.normal(jax.random.key(0), (3, 3, 2, 2, 1))
    times = sp.uniform_step_times(2)
    w = 0.5
    clip = no.self_forcing_rollout(_generator(w), noise, times=times, key=jax.random.key(1))
    sampled = sp.few_step_rollout(
        _generator(w), noise, window=3, times=times, key=jax.random.key(2)
    )
    # The generator ignores the noisy frame, so both rollouts make the same frames:
    # w, w (1 + w), w (1 + w + w (1 + w)) (exact in float32 for w = 0.5).
    np.testing.assert_array_equal(clip, sampled)
    np.testing.assert_allclose(clip[0, :, 0, 0, 0], [0.5, 0.75, 1.125], rtol=0, atol=0)

    def frame(index):
        return lambda w: no.self_forcing_rollout(
            _generator(w), noise, times=times, key=jax.random.key(1)
        )[0, index, 0, 0, 0]

    # Frame 1 = w (1 + frame0(w)); with the context detached its gradient is 1 + frame0 =
    # 1.5, not the full derivative 1 + 2w = 2.0. Frame 2 = w (1 + f0 + f1): 1 + 0.5 + 0.75.
    assert float(jax.grad(frame(1))(w)) == 1.5
    assert float(jax.grad(frame(2))(w)) == 2.25


def test_clip_at_one_time_gives_every_frame_the_clip_time():
    seen = {}

    def predictor(x, t, y):
        seen["t"] = t
        return x

    no.clip_at_one_time(predictor)(jnp.zeros((2, 4, 3, 3, 1)), jnp.asarray([0.2, 0.9]), None)
    np.testing.assert_array_equal(seen["t"], np.asarray([[0.2] * 4, [0.9] * 4], np.float32))


def test_loss_pushes_the_clip_along_fake_minus_real():
    noise = jax.random.normal(jax.random.key(0), (2, 2, 2, 2, 1))
    y = jnp.zeros((2,), jnp.int32)
    loss_fn = no.SelfForcingLoss(times=(1.0,))

    def real(x, t, y):  # predicts clean frames 1 above the noisy input
        return x + 1.0

    def total(w, fake):
        loss, aux, clip = loss_fn(_generator(w), noise, y, jax.random.key(3), real=real, fake=fake)
        assert clip.shape == noise.shape and loss.shape == (2,)
        return loss.sum()

    # fake == real: no gradient. fake = real + 1: every clip element is pushed by
    # (mu_fake - mu_real) / mean|x - mu_real| = 1 / |x_clip - x_t - 1| > 0 (DMD Eq. 7-8).
    assert float(jax.grad(total)(0.5, real)) == 0.0
    assert float(jax.grad(total)(0.5, lambda x, t, y: x + 2.0)) > 0.0


def test_data_predictor_reads_one_time_per_frame_of_a_clip():
    x = jax.random.normal(jax.random.key(0), (2, 3, 2, 2, 1))
    t = jnp.asarray([[0.1, 0.5, 0.9], [0.0, 0.25, 1.0]])
    mu = no.data_predictor(lambda x, t, y: jnp.ones_like(x))  # v = 1 everywhere
    # Linear path: x0 = x_t - t v, frame by frame (float32 arithmetic on both sides).
    expected = x - t[:, :, None, None, None]
    np.testing.assert_allclose(mu(x, t, None), expected, rtol=0, atol=1e-7)
