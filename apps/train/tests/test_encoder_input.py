"""REPA / RAE's DINOv2 input: PyTorch's bicubic ``F.interpolate`` (a = -0.75, no antialias)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from nnx_nets import IMAGENET_MEAN, IMAGENET_STD
from nnx_train.tasks import encoder_input, resize_bicubic_torch


def _torch_reference(images: np.ndarray, size: int) -> np.ndarray:
    """REPA ``train.py`` ``preprocess_raw_image`` for DINOv2 on [-1, 1] NHWC images."""
    x = torch.from_numpy((images + 1.0) / 2.0).permute(0, 3, 1, 2)
    x = torch.nn.functional.interpolate(x, size, mode="bicubic", align_corners=False)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return ((x - mean) / std).permute(0, 2, 3, 1).numpy()


def _images(kind: str, side: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    if kind == "noise":
        return rng.uniform(-1.0, 1.0, (2, side, side, 3)).astype(np.float32)
    grid = np.linspace(0.0, 2.0 * np.pi, side)
    smooth = np.sin(grid)[:, None, None] * np.cos(2.0 * grid)[None, :, None]
    return np.broadcast_to(0.9 * smooth, (2, side, side, 3)).astype(np.float32)


@pytest.mark.parametrize("kind", ["noise", "smooth"])
@pytest.mark.parametrize(("side", "size"), [(256, 224), (8, 56), (37, 16)])
def test_encoder_input_matches_torch_bicubic(kind, side, size):
    images = _images(kind, side)
    expected = _torch_reference(images, size)
    got = np.asarray(jax.jit(encoder_input, static_argnums=1)(jnp.asarray(images), size))
    assert got.shape == expected.shape
    # Same float32 weights as PyTorch's CPU kernel; the sums differ only in order (HIGHEST-
    # precision einsum). Measured here: at most 5.2e-6 on values up to 2.6 in magnitude
    # (float32 ulp 2.4e-7 there), so 1e-5 absolute; the old resize misses it by 1e-1.
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_the_old_resize_differs_from_torch():
    # Control: JAX's cubic (a = -0.5) with antialias, what encoder_input used before, is far
    # from PyTorch's on noise (the tolerance above would catch it).
    images = _images("noise", 256)
    x = (jnp.asarray(images) + 1.0) / 2.0
    old = jax.image.resize(x, (2, 224, 224, 3), "cubic", antialias=True)
    new = resize_bicubic_torch(x, 224)
    rms = float(jnp.sqrt(jnp.mean((old - new) ** 2)) / jnp.sqrt(jnp.mean(new**2)))
    assert rms > 0.05  # measured: 0.21 (RMS relative)
