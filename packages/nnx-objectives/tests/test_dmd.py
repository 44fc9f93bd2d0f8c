"""DMD / DMD2 pieces on Gaussians with analytic scores, plus gradient isolation.

Data ``N(MU_REAL, S_REAL^2)`` per element; a generator ``x = mu_g + s_g z`` whose output is
``N(mu_g, s_g^2)``. On the linear path ``x_t = (1 - t) x + t eps`` the clean-data
prediction of ``N(m, s^2)`` is ``E[x0 | x_t] = m + (1 - t) s^2 / v (x_t - (1 - t) m)``,
``v = (1 - t)^2 s^2 + t^2``. With these as real and fake scores, the unnormalised DMD
surrogate's gradient with respect to ``(mu_g, s_g)`` is ``sigma_t^2 / alpha_t^2`` times the
gradient of ``KL(N((1-t) mu_g, v_g) || N((1-t) mu_r, v_r))`` (DMD Eq. 7), which has a closed
form.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nnx_objectives import (
    DistributionMatchingLoss,
    FakeScoreLoss,
    GANHead,
    InterpolantObjective,
    data_predictor,
    gan_discriminator_loss,
    gan_generator_loss,
)

MU_REAL, S_REAL = 0.5, 0.6
MU_GEN, S_GEN = -0.2, 0.9
T = 0.4
DIM = 2


def _gaussian_x0(mean, std):
    def predict(x_t, t, y):
        del y
        t = t.reshape((-1,) + (1,) * (x_t.ndim - 1))
        v = (1 - t) ** 2 * std**2 + t**2
        return mean + (1 - t) * std**2 / v * (x_t - (1 - t) * mean)

    return predict


def _kl_t(params):
    mu_g, s_g = params
    alpha, sigma = 1 - T, T
    v_g = alpha**2 * s_g**2 + sigma**2
    v_r = alpha**2 * S_REAL**2 + sigma**2
    return 0.5 * (v_g / v_r + (alpha * (mu_g - MU_REAL)) ** 2 / v_r - 1 + jnp.log(v_r / v_g))


def _surrogate_grads(loss: DistributionMatchingLoss, num: int):
    """Per-example gradients of the surrogate with respect to ``(mu_g, s_g)``, ``(num, 2)``."""
    key_z, key_eps = jax.random.split(jax.random.key(impl="rbg", seed=0))
    z = jax.random.normal(key_z, (num, DIM))
    eps = jax.random.normal(key_eps, (num, DIM))
    t = jnp.full((num,), T)
    y = jnp.zeros((num,), jnp.int32)

    def per_example(params):
        x = params[0] + params[1] * z
        fake = _gaussian_x0(params[0], params[1])  # the generator's exact score
        real = _gaussian_x0(MU_REAL, S_REAL)
        return loss.loss_at(x, y, t, eps, real=real, fake=fake)[0]

    return jax.jacfwd(per_example)(jnp.asarray([MU_GEN, S_GEN]))


def test_unnormalised_dmd_gradient_is_the_kl_gradient():
    grads = np.asarray(_surrogate_grads(DistributionMatchingLoss(normalise=False), 40_000))
    estimate = grads.mean(axis=0) * (1 - T) ** 2 / T**2
    stderr = grads.std(axis=0) / np.sqrt(len(grads)) * (1 - T) ** 2 / T**2
    exact = np.asarray(jax.grad(_kl_t)(jnp.asarray([MU_GEN, S_GEN])))
    # Monte Carlo over 40k examples: 5 standard errors (about 2% of each component here).
    np.testing.assert_array_less(np.abs(estimate - exact), 5 * stderr + 1e-6)
    assert np.all(np.abs(exact) > 10 * stderr), "the check must resolve a non-zero gradient"


def test_normalised_dmd_gradient_descends_the_kl():
    # Eq. 8's weight rescales each example by a positive number: the mean direction stays a
    # descent direction of the KL (cosine 0.9 with these Gaussians; checked > 0.8).
    grads = np.asarray(_surrogate_grads(DistributionMatchingLoss(), 20_000)).mean(axis=0)
    exact = np.asarray(jax.grad(_kl_t)(jnp.asarray([MU_GEN, S_GEN])))
    cosine = grads @ exact / np.linalg.norm(grads) / np.linalg.norm(exact)
    assert cosine > 0.8


def test_dmd_gradient_vanishes_when_generator_matches_data():
    loss = DistributionMatchingLoss()
    x = MU_REAL + S_REAL * jax.random.normal(jax.random.key(impl="rbg", seed=1), (64, DIM))
    t, eps = jnp.full((64,), T), jax.random.normal(jax.random.key(impl="rbg", seed=2), (64, DIM))
    same = _gaussian_x0(MU_REAL, S_REAL)
    grad, _ = loss.direction(x, jnp.zeros(64, jnp.int32), t, eps, real=same, fake=same)
    np.testing.assert_array_equal(np.asarray(grad), 0.0)  # identical scores: exactly zero


def test_fake_score_loss_is_minimised_by_the_generator_score():
    """The fake score's loss on generator samples is lowest at the generator's own score."""
    objective = FakeScoreLoss(InterpolantObjective())
    key_x, key_loss = jax.random.split(jax.random.key(impl="rbg", seed=3))
    x_gen = MU_GEN + S_GEN * jax.random.normal(key_x, (40_000, DIM))
    y = jnp.zeros((40_000,), jnp.int32)

    def velocity_of(mean):
        x0 = _gaussian_x0(mean, S_GEN)
        return lambda x_t, t, y: (x_t - x0(x_t, t, y)) / t.reshape(-1, 1)

    losses = {
        m: float(jnp.mean(objective(velocity_of(m), x_gen, y, key_loss)[0]))
        for m in (MU_GEN - 0.3, MU_GEN, MU_GEN + 0.3, MU_REAL)
    }
    # Common random numbers: the differences are far larger than their noise (~1e-3).
    assert losses[MU_GEN] < min(losses[MU_GEN - 0.3], losses[MU_GEN + 0.3], losses[MU_REAL])


class _Trio(nnx.Module):
    def __init__(self, tiny_net):
        self.generator = tiny_net((4, 4, 1), rngs=nnx.Rngs(0))
        self.real = tiny_net((4, 4, 1), rngs=nnx.Rngs(1))
        self.fake = tiny_net((4, 4, 1), rngs=nnx.Rngs(2))


def test_no_gradient_reaches_the_teacher_or_the_fake_score(networks):
    trio = _Trio(networks["TinyNet"])
    z = jax.random.normal(jax.random.key(impl="rbg", seed=4), (8, 4, 4, 1))
    y = jnp.arange(8) % 4

    def loss_fn(trio):
        x = data_predictor(trio.generator)(z, jnp.ones((8,)), y)
        real = data_predictor(trio.real, guidance_scale=2.0, null_label=4)
        loss, _ = DistributionMatchingLoss()(
            x, y, jax.random.key(impl="rbg", seed=5), real=real, fake=data_predictor(trio.fake)
        )
        return jnp.mean(loss)

    grads = nnx.grad(loss_fn)(trio)
    for name in ("real", "fake"):
        leaves = jax.tree.leaves(getattr(grads, name))
        assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in leaves), name
    assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(grads.generator)) > 0


def test_fake_score_loss_gives_no_gradient_to_the_generator(networks):
    trio = _Trio(networks["TinyNet"])
    z = jax.random.normal(jax.random.key(impl="rbg", seed=6), (8, 4, 4, 1))
    y = jnp.arange(8) % 4

    def loss_fn(trio):
        x = data_predictor(trio.generator)(z, jnp.ones((8,)), y)
        loss, _ = FakeScoreLoss(InterpolantObjective())(
            trio.fake, x, y, jax.random.key(impl="rbg", seed=7)
        )
        return jnp.mean(loss)

    grads = nnx.grad(loss_fn)(trio)
    assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in jax.tree.leaves(grads.generator))
    assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(grads.fake)) > 0


def test_gan_losses_closed_form_and_head_shape():
    zero = jnp.zeros((3,))
    np.testing.assert_allclose(gan_generator_loss(zero), np.log(2.0), rtol=1e-6)
    np.testing.assert_allclose(gan_discriminator_loss(zero, zero), 2 * np.log(2.0), rtol=1e-6)
    # A confident, correct classifier has near-zero loss; the generator then pays ~|logit|.
    big = jnp.full((3,), 20.0)
    assert float(jnp.max(gan_discriminator_loss(big, -big))) < 1e-8
    np.testing.assert_allclose(gan_generator_loss(-big), 20.0, rtol=1e-6)
    head = GANHead(16, 8, rngs=nnx.Rngs(0))
    assert head(jnp.ones((5, 12, 16))).shape == (5,)
    assert head(jnp.ones((5, 4, 4, 16))).shape == (5,)


def test_bad_time_range_is_rejected():
    with pytest.raises(ValueError, match="t_min < t_max"):
        DistributionMatchingLoss(t_min=0.5, t_max=0.1)
