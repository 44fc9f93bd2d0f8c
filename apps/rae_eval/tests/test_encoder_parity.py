"""RAE's encoder against transformers' Dinov2WithRegistersModel used as RAE uses it.

RAE (``Dinov2withNorm``): the final LayerNorm loses its affine, the 5 leading tokens (CLS + 4
registers) are dropped, and [0, 1] images are first resized with PyTorch's bicubic (no
antialias) and normalised with the ImageNet mean/std. Tiny random non-zero weights, fp32.
"""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from transformers import Dinov2WithRegistersConfig, Dinov2WithRegistersModel

from nnx_nets import IMAGENET_MEAN, IMAGENET_STD, DINOv2, LatentNormalizer
from rae_eval.autoencoder import RepresentationAutoencoder, resize_bicubic_torch
from rae_eval.checkpoints import CheckpointFile, CheckpointMismatchError
from rae_eval.weights import load_encoder

torch.set_num_threads(1)

WIDTH, DEPTH, HEADS, PATCH, TABLE_SIZE, INPUT_SIZE, IMAGE_SIZE = 32, 2, 2, 4, 32, 16, 20


def _torch_encoder(tmp_path):
    config = Dinov2WithRegistersConfig(
        hidden_size=WIDTH,
        num_hidden_layers=DEPTH,
        num_attention_heads=HEADS,
        mlp_ratio=4,
        patch_size=PATCH,
        image_size=TABLE_SIZE,  # 8 x 8 position table, interpolated (antialias) to 4 x 4
        num_register_tokens=4,
    )
    torch.manual_seed(0)
    model = Dinov2WithRegistersModel(config).eval()
    with torch.no_grad():  # random non-zero everything (layerscale, biases, norms, tokens)
        for parameter in model.parameters():
            parameter.copy_(torch.randn_like(parameter) * 0.3 + (0.5 if parameter.ndim == 1 else 0))
    model.save_pretrained(tmp_path)  # model.safetensors with the HF hub's key names
    # RAE: final LayerNorm without affine.
    model.layernorm.elementwise_affine = False
    model.layernorm.weight = None
    model.layernorm.bias = None
    return model


def _nnx_encoder() -> DINOv2:
    return DINOv2(
        hidden_size=WIDTH,
        depth=DEPTH,
        num_heads=HEADS,
        patch_size=PATCH,
        image_size=TABLE_SIZE,
        num_register_tokens=4,
        final_norm_affine=False,
        pos_embed_interpolation="bicubic_antialias",
        rngs=nnx.Rngs(1),
    )


def test_encoder_matches_transformers_as_rae_uses_it(tmp_path):
    reference = _torch_encoder(tmp_path)
    encoder = nnx.eval_shape(_nnx_encoder)  # as the app builds it: shapes only, then loaded
    file = CheckpointFile("encoder", tmp_path / "model.safetensors", "hf://x/y/model.safetensors")
    load_encoder(encoder, file)
    grid = INPUT_SIZE // PATCH
    autoencoder = RepresentationAutoencoder(
        encoder=encoder,
        normalizer=LatentNormalizer(np.ones((grid, grid, WIDTH), np.float32)),
        decoder=None,
        encoder_input_size=INPUT_SIZE,
    )
    rng = np.random.default_rng(0)
    images = rng.uniform(0.0, 1.0, size=(2, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)

    with torch.no_grad():  # RAE.encode, torch side (NCHW)
        x = torch.from_numpy(images).permute(0, 3, 1, 2)
        x = torch.nn.functional.interpolate(
            x, size=(INPUT_SIZE, INPUT_SIZE), mode="bicubic", align_corners=False
        )
        x = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(
            1, 3, 1, 1
        )
        tokens = reference(pixel_values=x).last_hidden_state[:, 5:]
    expected = tokens.numpy().reshape(2, INPUT_SIZE // PATCH, INPUT_SIZE // PATCH, WIDTH)

    got = np.asarray(nnx.jit(lambda ae, x: ae.encode_tokens(x))(autoencoder, images * 2.0 - 1.0))
    assert got.shape == expected.shape and got.dtype == np.float32
    # fp32 on both sides at HIGHEST precision; outputs are LayerNorm-ed (unit scale), so the
    # error budget is a few ulps per op over 2 blocks: 2e-5 absolute.
    error = np.max(np.abs(got - expected))
    assert error < 2e-5, error
    assert np.std(expected) > 0.5  # a meaningful, non-degenerate output


def test_mismatched_encoder_file_names_the_file_and_keys(tmp_path):
    _torch_encoder(tmp_path)
    wider = nnx.eval_shape(
        lambda: DINOv2(
            hidden_size=2 * WIDTH,
            depth=DEPTH,
            num_heads=HEADS,
            patch_size=PATCH,
            image_size=TABLE_SIZE,
            num_register_tokens=4,
            final_norm_affine=False,
            rngs=nnx.Rngs(0),
        )
    )
    file = CheckpointFile("encoder", tmp_path / "model.safetensors", "hf://o/r/model.safetensors")
    with pytest.raises(CheckpointMismatchError) as error:
        load_encoder(wider, file)
    message = str(error.value)
    assert "encoder checkpoint" in message and str(file.path) in message
    assert "embeddings.cls_token" in message and "mis-shaped" in message


def test_resize_matches_torch_bicubic():
    rng = np.random.default_rng(2)
    for source, target in ((13, 7), (9, 11)):  # down and up
        images = rng.normal(size=(2, source, source, 3)).astype(np.float32)
        got = np.asarray(resize_bicubic_torch(jnp.asarray(images), target))
        with torch.no_grad():
            expected = (
                torch.nn.functional.interpolate(
                    torch.from_numpy(images).permute(0, 3, 1, 2),
                    size=(target, target),
                    mode="bicubic",
                    align_corners=False,
                )
                .permute(0, 2, 3, 1)
                .numpy()
            )
        # The same linear map in float32: 1e-5 absolute on unit-scale inputs.
        np.testing.assert_allclose(got, expected, atol=1e-5)
