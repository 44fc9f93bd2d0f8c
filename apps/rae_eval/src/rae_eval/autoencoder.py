"""The RAE autoencoder: frozen DINOv2 encoder, latent normalisation, ViT decoder.

Zheng et al. (2025), "Diffusion Transformers with Representation Autoencoders", sec. 3 and
RAE ``src/stage1/rae.py``, in NHWC and model pixels [-1, 1]:

    encode:  u = (x + 1) / 2                                   # [-1, 1] -> [0, 1]
             u = bicubic_torch(u, input_size)                  # PyTorch bicubic, no antialias
             z = DINOv2((u - mean_in) / std_in)["patch_tokens"]   # CLS + registers dropped,
                                                               # final LayerNorm without affine
             z_n = (z - mu) / sqrt(var + eps)                  # nnx_nets.LatentNormalizer
    decode:  x = RAEDecoder(z_n * sqrt(var + eps) + mu)        # images in [-1, 1]

The networks and the normaliser are nnx-nets modules; this module only composes them with
RAE's encoder-side preprocessing.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from nnx_nets import IMAGENET_MEAN, IMAGENET_STD, LatentNormalizer, RAEDecoder, resize_pos_grid

__all__ = ["RepresentationAutoencoder", "resize_bicubic_torch"]


def resize_bicubic_torch(images: jax.Array, size: int) -> jax.Array:
    """PyTorch's ``F.interpolate(mode="bicubic", align_corners=False)`` (no antialias), NHWC.

    RAE resizes its [0, 1] images to the encoder's 224 px this way (RAE ``src/stage1/rae.py``).
    The resize is separable and linear; nnx-nets builds exactly this kernel (Keys' cubic,
    ``a = -0.75``, half-pixel centres, clamped borders) for transformers' DINOv2 position table
    (its ``"bicubic"`` mode), so the same function resizes each square image. Values are not
    clamped, as in RAE.

    Args:
      images: ``(B, S, S, C)`` float, square.
      size: output side.

    Returns:
      ``(B, size, size, C)`` float32.
    """
    if images.shape[1] != images.shape[2]:
        raise ValueError(
            f"the encoder resize expects square images (centre-cropped), got {images.shape[1:3]}"
        )
    return jax.vmap(lambda image: resize_pos_grid(image, (size, size), "bicubic"))(
        images.astype(jnp.float32)
    )


class RepresentationAutoencoder(nnx.Module):
    """Encoder + latent normalisation + decoder of RAE.

    Args:
      encoder: ``nnx_nets.DINOv2`` built with ``final_norm_affine=False`` (RAE's encoder), or
        ``None`` when only decoding is needed (generation).
      normalizer: ``nnx_nets.LatentNormalizer`` holding the published statistics.
      decoder: ``nnx_nets.RAEDecoder`` (latents ``(B, h, w, D)`` -> images in [-1, 1]), or
        ``None`` when only encoding is needed.
      encoder_input_size: side the images are resized to before the encoder (224 for 256 px).
    """

    def __init__(
        self,
        *,
        encoder: nnx.Module | None,
        normalizer: LatentNormalizer,
        decoder: RAEDecoder | None,
        encoder_input_size: int = 224,
    ):
        self.encoder = encoder
        self.normalizer = normalizer
        self.decoder = decoder
        self.encoder_input_size = encoder_input_size

    def encode_tokens(self, images: jax.Array) -> jax.Array:
        """Un-normalised encoder latents.

        Args:
          images: ``(B, H, W, 3)`` float in [-1, 1].

        Returns:
          ``(B, h, w, D)`` float32: DINOv2 patch tokens after its affine-free final norm.
        """
        if self.encoder is None:
            raise ValueError("this autoencoder was built without an encoder (generation only)")
        batch = images.shape[0]
        pixels = (images.astype(jnp.float32) + 1.0) / 2.0
        size = self.encoder_input_size
        if pixels.shape[1:3] != (size, size):
            pixels = resize_bicubic_torch(pixels, size)
        mean = jnp.asarray(IMAGENET_MEAN, jnp.float32)
        std = jnp.asarray(IMAGENET_STD, jnp.float32)
        tokens = self.encoder((pixels - mean) / std)["patch_tokens"]
        grid = size // self.encoder.patch_size
        return tokens.reshape(batch, grid, grid, -1).astype(jnp.float32)

    def encode(self, images: jax.Array) -> jax.Array:
        """Images in [-1, 1] ``(B, H, W, 3)`` -> normalised latents ``(B, h, w, D)`` float32."""
        return self.normalizer.normalize(self.encode_tokens(images))

    def decode(self, latents: jax.Array) -> jax.Array:
        """Normalised latents ``(B, h, w, D)`` -> images ``(B, H, W, 3)`` float32 in about [-1, 1]."""
        if self.decoder is None:
            raise ValueError("this autoencoder was built without a decoder")
        tokens = self.normalizer.denormalize(latents.astype(jnp.float32))
        return self.decoder(tokens).astype(jnp.float32)
