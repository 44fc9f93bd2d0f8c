"""Input front-ends of the feature networks: uint8 NHWC in, normalised float32 NHWC out.

Inception (openai/guided-diffusion evaluations/evaluator.py; mseitzer/pytorch-fid
inception.py), resized to 299 x 299:

=================  ==========================================  ==============================
front end          resize                                      normalise
=================  ==========================================  ==============================
``"tf1"``          TF1 bilinear, ``s = j * in / out``           ``(u - 128) / 128``
(default)          (ADM evaluator, TTUR, torch-fidelity)
``"pytorch_fid"``  half-pixel bilinear, no antialias            ``2 (u / 255) - 1``
                   (pytorch-fid, the public JAX ports)
=================  ==========================================  ==============================

DINOv2 for FD-DINOv2 (EDM2): squash to 224 x 224 with PyTorch's bicubic ``antialias=True``
(Keys ``a = -0.5``, support widened when downsampling; ``jax.image.resize('cubic',
antialias=True)`` computes the same weights) on [0, 255], then ``u / 255`` and ImageNet mean/std.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

from nnx_fid.resize import RESIZE_MODES, resize_bilinear
from nnx_nets import IMAGENET_MEAN, IMAGENET_STD

FrontEnd = Literal["tf1", "pytorch_fid"]
FRONT_ENDS: tuple[str, ...] = RESIZE_MODES
INCEPTION_SIZE = 299
DINOV2_SIZE = 224


def check_front_end(front_end: str) -> None:
    """Raise a ValueError naming the valid front ends unless ``front_end`` is one of them."""
    if front_end not in FRONT_ENDS:
        raise ValueError(
            f"unknown front end {front_end!r}; choose 'tf1' (ADM evaluator) or "
            "'pytorch_fid' (pytorch-fid and the JAX ports)"
        )


def inception_preprocess(images: jax.Array, front_end: FrontEnd) -> jax.Array:
    """uint8 images -> the normalised 299 x 299 input of the FID Inception.

    Args:
      images: ``(B, H, W, 3)`` uint8 (or float holding integer levels 0..255).
      front_end: ``"tf1"`` or ``"pytorch_fid"`` (see the module docstring).

    Returns:
      ``(B, 299, 299, 3)`` float32 in about [-1, 1].
    """
    check_front_end(front_end)
    pixels = images.astype(jnp.float32)
    pixels = resize_bilinear(pixels, (INCEPTION_SIZE, INCEPTION_SIZE), front_end)
    if front_end == "tf1":
        return (pixels - 128.0) / 128.0
    return 2.0 * (pixels / 255.0) - 1.0


def dinov2_preprocess(images: jax.Array) -> jax.Array:
    """uint8 images -> the normalised 224 x 224 input of DINOv2, as EDM2's FD-DINOv2 does.

    Args:
      images: ``(B, H, W, 3)`` uint8 (or float holding levels 0..255).

    Returns:
      ``(B, 224, 224, 3)`` float32, ``(resize(u) / 255 - mean) / std``.
    """
    pixels = images.astype(jnp.float32)
    batch, _, _, channels = pixels.shape
    pixels = jax.image.resize(
        pixels, (batch, DINOV2_SIZE, DINOV2_SIZE, channels), method="cubic", antialias=True
    )
    mean = jnp.asarray(IMAGENET_MEAN, jnp.float32)
    std = jnp.asarray(IMAGENET_STD, jnp.float32)
    return (pixels / 255.0 - mean) / std
