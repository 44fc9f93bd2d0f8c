"""SD-VAE: preset parameter count against diffusers, posterior maths, shapes and errors.

Parity of the network with diffusers' AutoencoderKL lives in nnx-weightconv's tests.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from nnx_nets import SDVAE, DiagonalGaussian, sd_vae_from_preset
from nnx_nets.sd_vae_blocks import vae_conv
from nnx_nets.testing import random_model

torch.set_num_threads(1)


def _random_model(ctor, seed: int = 0):
    return random_model(ctor, seed, scale=0.2)


def _tiny(**kwargs) -> SDVAE:
    return SDVAE(
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=4,
        rngs=nnx.Rngs(0),
        **kwargs,
    )


def _count(module) -> int:
    return sum(x.size for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


def test_sd_vae_ft_mse_parameter_count_matches_diffusers():
    from diffusers import AutoencoderKL

    # stabilityai/sd-vae-ft-mse config.json, built on torch's meta device (no memory).
    with torch.device("meta"):
        reference = AutoencoderKL(
            block_out_channels=(128, 256, 512, 512),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            layers_per_block=2,
            latent_channels=4,
            sample_size=256,
        )
    expected = sum(p.numel() for p in reference.parameters())
    model = nnx.eval_shape(lambda: sd_vae_from_preset("sd-vae-ft-mse", rngs=nnx.Rngs(0)))
    assert _count(model) == expected == 83_653_863
    assert model.scaling_factor == 0.18215


def test_posterior_clamps_and_samples():
    mean = np.full((4000, 2, 2, 1), 0.5, np.float32)
    logvar = np.concatenate(
        [np.full((4000, 2, 1, 1), 2 * np.log(0.3)), np.full((4000, 2, 1, 1), 50.0)], axis=2
    ).astype(np.float32)
    posterior = DiagonalGaussian.from_moments(jnp.asarray(np.concatenate([mean, logvar], axis=-1)))
    # logvar is clamped to [-30, 20] as in LDM / diffusers.
    assert float(posterior.logvar.max()) == 20.0
    np.testing.assert_allclose(np.asarray(posterior.std[0, 0, 0]), [0.3], rtol=1e-6)
    samples = np.asarray(posterior.sample(jax.random.key(0)))[:, :, 0]
    # 8000 draws of N(0.5, 0.3^2): the sample mean is within 4 standard errors (0.013).
    assert abs(samples.mean() - 0.5) < 4 * 0.3 / np.sqrt(samples.size)
    assert abs(samples.std() - 0.3) < 0.02
    assert posterior.mode() is posterior.mean
    # KL(N(m, s^2) || N(0, 1)) = (m^2 + s^2 - 1 - log s^2) / 2 per element.
    unclamped = DiagonalGaussian(jnp.full((1, 1, 1, 1), 0.5), jnp.full((1, 1, 1, 1), np.log(0.09)))
    expected = 0.5 * (0.25 + 0.09 - 1.0 - np.log(0.09))
    np.testing.assert_allclose(np.asarray(unclamped.kl()), [expected], rtol=1e-6)


def test_shapes_dtype_and_errors():
    model = _random_model(_tiny)
    images = jnp.asarray(np.random.default_rng(1).uniform(-1, 1, (2, 8, 12, 3)), jnp.float32)

    @nnx.jit
    def run(model, images, key):
        return model.encode(images), model(images, key)

    posterior, sampled = run(model, images, jax.random.key(2))
    assert posterior.mean.shape == posterior.logvar.shape == (2, 4, 6, 4)
    assert sampled.shape == (2, 8, 12, 3) and sampled.dtype == jnp.float32
    assert np.isfinite(np.asarray(sampled)).all() and float(jnp.abs(sampled).max()) > 0.1
    # bfloat16 compute: parameters and outputs stay float32; bf16's 8-bit mantissa gives
    # relative errors ~1e-2 after a few layers, so 5% of the output scale is the bound.
    low = nnx.eval_shape(lambda: _tiny(dtype=jnp.bfloat16))
    nnx.update(low, nnx.state(model))
    fast = nnx.jit(lambda m, x: m.encode(x).mean)(low, images)
    assert fast.dtype == jnp.float32
    assert jax.tree.leaves(nnx.state(low, nnx.Param))[0].dtype == jnp.float32
    scale = float(jnp.abs(posterior.mean).max())
    assert float(jnp.abs(fast - posterior.mean).max()) < 0.05 * scale
    with pytest.raises(ValueError, match="multiple of 2"):
        model.encode(jnp.zeros((1, 7, 8, 3)))
    with pytest.raises(ValueError, match="GroupNorm groups"):
        nnx.eval_shape(
            lambda: SDVAE(block_out_channels=(8, 12), norm_num_groups=8, rngs=nnx.Rngs(0))
        )
    with pytest.raises(ValueError, match="unknown SD-VAE preset"):
        sd_vae_from_preset("sdxl-vae", rngs=nnx.Rngs(0))


def test_conv_kernels_are_lecun_normal():
    # Conv kernels are drawn as (kh*kw*in, out) matrices and reshaped (XLA:CPU compiles 4-D
    # random draws very slowly); the distribution is still LeCun normal with fan_in = 9 * in.
    conv = vae_conv(64, 32, 3, dtype=jnp.float32, precision=None, rngs=nnx.Rngs(0))
    kernel = np.asarray(conv.kernel[...])
    assert kernel.shape == (3, 3, 64, 32)
    expected_std = 1 / np.sqrt(9 * 64)  # truncated normal rescaled to this std
    # 18432 draws: the sample std is within 3% of the target.
    assert abs(kernel.std() / expected_std - 1) < 0.03
    assert np.abs(kernel).max() <= 2 * expected_std / 0.8796 + 1e-6  # truncated at 2 sigma
    assert not np.asarray(conv.bias[...]).any()
