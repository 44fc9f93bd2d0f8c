"""Named features and rematerialisation of the non-DiT networks (RAE decoder, SD-VAE, EDM2).

``return_features`` follows DiT's convention everywhere: the keyword returns ``(output,
{name: array})``. Each test checks that the features are the real intermediate values (the
output is recomputed from the last one), that ``remat=True`` does not change the output, and
that its backward pass rematerialises every block (one checkpointed call per block). Outputs
agree to 1e-6 relative (the same float32 ops; a dropped or altered block differs at order 1).
Gradient equality under remat is tested on DiT (test_dit.py). Everything runs under ``jit``:
eager NNX calls of these networks cost minutes on CPU.
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nnx_nets import SDVAE, EDM2UNet, RAEDecoder
from nnx_nets.testing import random_model

LOSS_RTOL = 1e-6


def _checkpointed_calls(model, loss_fn, *args) -> int:
    """Number of rematerialised calls in the backward pass of ``loss_fn(model, *args)``.

    Tracing only: compiling a U-Net's backward pass costs ~20 s on CPU.
    """
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    grad = jax.grad(lambda p: loss_fn(nnx.merge(graphdef, p, rest), *args))
    return sum(eqn.primitive.name.startswith("remat") for eqn in jax.make_jaxpr(grad)(params).eqns)


def test_rae_decoder_features_are_the_layer_outputs():
    kwargs = dict(
        hidden_size=16,
        depth=2,
        num_heads=2,
        intermediate_size=32,
        latent_dim=8,
        grid_size=2,
        patch_size=2,
    )
    model = random_model(lambda: RAEDecoder(**kwargs, rngs=nnx.Rngs(0)))
    latents = jnp.asarray(np.random.default_rng(1).standard_normal((2, 2, 2, 8)), jnp.float32)

    @nnx.jit
    def run(model, latents):
        images, features = model(latents, return_features=True)
        # The decoder head applied to the last feature reproduces the patches.
        head = model.pred(model.norm(features["block_2"]))[:, 1:]
        return images, features, model(latents), model.predict_patches(latents), head

    images, features, plain, patches, head = run(model, latents)
    assert sorted(features) == ["block_1", "block_2"]
    assert features["block_2"].shape == (2, 1 + 4, 16)
    np.testing.assert_array_equal(images, plain)
    np.testing.assert_allclose(patches, head, rtol=1e-6, atol=1e-6)
    assert not np.allclose(features["block_1"], features["block_2"])


def _tiny_vae(**extra):
    return random_model(
        lambda: SDVAE(
            block_out_channels=(8, 16),
            layers_per_block=1,
            norm_num_groups=4,
            rngs=nnx.Rngs(0),
            **extra,
        )
    )


def test_sd_vae_features_and_remat():
    model, rematted = _tiny_vae(), _tiny_vae(remat=True)
    images = jnp.asarray(np.random.default_rng(2).standard_normal((1, 8, 8, 3)), jnp.float32)

    @nnx.jit
    def run(model, rematted, images):
        posterior, enc = model.encode(images, return_features=True)
        decoded, dec = model.decode(posterior.mean, return_features=True)
        head = model.decoder.conv_out(jax.nn.silu(model.decoder.norm_out(dec["up_2"])))
        return enc, dec, head, decoded, model(images), rematted(images)

    enc, dec, head, decoded, plain, remat_out = run(model, rematted, images)
    assert {k: v.shape for k, v in enc.items()} == {
        "down_1": (1, 4, 4, 8),
        "down_2": (1, 4, 4, 16),
        "mid": (1, 4, 4, 16),
    }
    assert sorted(dec) == ["mid", "up_1", "up_2"] and dec["up_2"].shape == (1, 8, 8, 8)
    np.testing.assert_allclose(decoded, head, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(decoded, plain)  # features do not change the output
    np.testing.assert_allclose(remat_out, plain, rtol=LOSS_RTOL, atol=LOSS_RTOL)
    assert float(jnp.abs(plain).max()) > 0.1
    # Encoder: 2 resnets + mid (resnet, attention, resnet); decoder: mid + 2 x 2 resnets.
    loss = lambda vae, x: jnp.mean(vae(x) ** 2)  # noqa: E731
    assert _checkpointed_calls(rematted, loss, images) == 12


def _tiny_edm2(**extra):
    # One level: the input conv, one encoder block, and the decoder's in0 (attention), in1
    # and two skip blocks; multi-level structure is covered by test_edm2.py.
    return random_model(
        lambda: EDM2UNet(
            img_resolution=4,
            img_channels=2,
            num_classes=3,
            model_channels=16,
            channel_mult=(1,),
            num_blocks=1,
            channels_per_head=16,
            rngs=nnx.Rngs(0),
            **extra,
        ),
        scale=1.0,
    )


def test_edm2_features_and_remat():
    model, rematted = _tiny_edm2(), _tiny_edm2(remat=True)
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((2, 4, 4, 2)), jnp.float32)
    noise, y = jnp.asarray([-0.5, 0.7], jnp.float32), jnp.asarray([0, 3])
    names = model.enc_names + model.dec_names
    assert names == ("4x4_conv", "4x4_block0", "4x4_in0", "4x4_in1", "4x4_block0", "4x4_block1")

    @nnx.jit
    def run(model, rematted, x, noise, y):
        out, features = model(x, noise, y, return_features=True)
        head = model.out_conv(features["block_6"], gain=model.out_gain[...])
        return out, features, head, model(x, noise, y), rematted(x, noise, y)

    out, features, head, plain, remat_out = run(model, rematted, x, noise, y)
    assert sorted(features) == [f"block_{i}" for i in range(1, 7)]
    assert all(f.shape == (2, 4, 4, 16) for f in features.values())
    np.testing.assert_array_equal(out, plain)
    np.testing.assert_allclose(out, head, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(remat_out, plain, rtol=LOSS_RTOL, atol=LOSS_RTOL)
    assert float(jnp.abs(out).max()) > 0.1
    loss = lambda unet, *args: jnp.mean(unet(*args) ** 2)  # noqa: E731
    assert _checkpointed_calls(rematted, loss, x, noise, y) == 5  # every block but the conv
