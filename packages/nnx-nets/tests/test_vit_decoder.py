"""RAE ViT decoder and latent normalisation: counts, fixed tables, unpatchify, errors.

Parity with diffusers' RAEDecoder (RAE-main's decoder) lives in nnx-weightconv's tests.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from nnx_nets import (
    RAE_DECODER_PRESETS,
    LatentNormalizer,
    RAEDecoder,
    mae_sincos_pos_embed,
    rae_decoder_from_preset,
)
from nnx_nets.vit_decoder import ViTMAELayer

torch.set_num_threads(1)


def _count(module) -> int:
    return sum(x.size for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


@pytest.mark.parametrize("name", sorted(RAE_DECODER_PRESETS))
def test_preset_counts_match_diffusers_rae_decoder(name):
    from diffusers.models.autoencoders.autoencoder_rae import RAEDecoder as TorchRAEDecoder

    preset = RAE_DECODER_PRESETS[name]
    with torch.device("meta"):
        reference = TorchRAEDecoder(
            hidden_size=768,
            decoder_hidden_size=preset["hidden_size"],
            decoder_num_hidden_layers=preset["depth"],
            decoder_num_attention_heads=preset["num_heads"],
            decoder_intermediate_size=preset["intermediate_size"],
            num_patches=256,
            patch_size=16,
        )
    expected = sum(p.numel() for p in reference.parameters())
    # Stem (depth 0) plus depth identical layers, each through nnx.eval_shape: a full-depth
    # eval_shape costs ~10 s of CPU for ViT-XL (flax inspects every traced RNG update).
    stem = nnx.eval_shape(lambda: rae_decoder_from_preset(name, depth=0, rngs=nnx.Rngs(0)))
    layer = nnx.eval_shape(
        lambda: ViTMAELayer(
            preset["hidden_size"],
            preset["num_heads"],
            preset["intermediate_size"],
            layer_norm_eps=1e-12,
            dtype=jnp.float32,
            precision=None,
            rngs=nnx.Rngs(0),
        )
    )
    assert _count(stem) + preset["depth"] * _count(layer) == expected
    if name == "ViT-XL":
        assert expected == 415_056_640


def test_sincos_table_matches_diffusers_and_closed_form():
    from diffusers.models.embeddings import get_2d_sincos_pos_embed

    table = mae_sincos_pos_embed(64, 16)
    reference = get_2d_sincos_pos_embed(64, 16, cls_token=True, extra_tokens=1, output_type="pt")
    # diffusers computes in float32; this table in float64.
    np.testing.assert_allclose(table, reference.numpy(), atol=1e-6)
    assert not table[0].any()  # zero CLS row
    row, col = 3, 5
    omega = 10000.0 ** (-np.arange(16) / 16)
    expected = np.concatenate(
        [np.sin(col * omega), np.cos(col * omega), np.sin(row * omega), np.cos(row * omega)]
    )
    np.testing.assert_allclose(table[1 + row * 16 + col], expected, atol=1e-12)


def _tiny_decoder(**kwargs) -> RAEDecoder:
    return RAEDecoder(
        hidden_size=16,
        depth=1,
        num_heads=2,
        intermediate_size=32,
        latent_dim=8,
        grid_size=4,
        patch_size=2,
        rngs=nnx.Rngs(0),
        **kwargs,
    )


def test_unpatchify_places_each_token_in_its_block():
    model = nnx.eval_shape(_tiny_decoder)
    g, p, c = 4, 2, 3
    token = np.arange(g * g).reshape(1, g * g, 1, 1, 1)
    within = np.arange(p * p * c).reshape(1, 1, p, p, c)
    patches = (1000 * token + within).reshape(1, g * g, p * p * c).astype(np.float32)
    image = np.asarray(model.unpatchify(jnp.asarray(patches)))
    assert image.shape == (1, g * p, g * p, c)
    r, col, i, j, ch = 2, 3, 1, 0, 2
    assert image[0, r * p + i, col * p + j, ch] == 1000 * (r * g + col) + (i * p + j) * c + ch


def test_decoder_shapes_and_errors():
    # The output convention (2 * (unpatchify * std + mean) - 1) is checked against diffusers'
    # RAEDecoder in nnx-weightconv's parity test; here only the abstract shapes and errors.
    model = nnx.eval_shape(_tiny_decoder)
    latents = jax.ShapeDtypeStruct((2, 4, 4, 8), jnp.float32)
    patches, images = nnx.eval_shape(lambda m, z: (m.predict_patches(z), m(z)), model, latents)
    assert patches.shape == (2, 16, 12) and images.shape == (2, 8, 8, 3)
    assert images.dtype == jnp.float32
    assert model.pos_embed().shape == (1, 17, 16)
    with pytest.raises(ValueError, match="do not match the decoder"):
        model.predict_patches(jnp.zeros((1, 5, 5, 8)))
    with pytest.raises(ValueError, match="unknown RAE decoder preset"):
        rae_decoder_from_preset("ViT-H", rngs=nnx.Rngs(0))


def test_latent_normalizer_matches_rae_formula():
    rng = np.random.default_rng(0)
    var_chw = rng.uniform(0.005, 9.0, (6, 4, 4)).astype(np.float32)
    mean_chw = rng.standard_normal((6, 4, 4)).astype(np.float32)
    z_nchw = rng.standard_normal((2, 6, 4, 4)).astype(np.float32) * 3
    for mean in (None, mean_chw):
        norm = LatentNormalizer.from_chw(var_chw, mean)
        # RAE: (z - mean) / sqrt(var + 1e-5) in NCHW, mean None meaning 0.
        expected = (z_nchw - (0 if mean is None else mean)) / np.sqrt(var_chw + 1e-5)
        z_nhwc = jnp.asarray(z_nchw.transpose(0, 2, 3, 1))
        normalised = np.asarray(norm.normalize(z_nhwc))
        np.testing.assert_allclose(normalised, expected.transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-5)
        back = np.asarray(norm.denormalize(jnp.asarray(normalised)))
        np.testing.assert_allclose(back, np.asarray(z_nhwc), atol=1e-5)
    # The statistics are fixed buffers, not trainable parameters.
    assert not jax.tree.leaves(nnx.state(LatentNormalizer.from_chw(var_chw), nnx.Param))
    with pytest.raises(ValueError, match="from_chw"):
        LatentNormalizer(var_chw[0])
