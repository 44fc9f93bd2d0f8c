"""The Stable Diffusion VAE (Rombach et al., 2022; diffusers ``AutoencoderKL``), NHWC.

``sd-vae-ft-mse`` / ``-ema``: widths (128, 256, 512, 512), 2 resnets per encoder level and 3 per
decoder level, 4 latent channels, downsampling by 8, GroupNorm(32, eps 1e-6), SiLU, one
single-head attention in each mid block, 1x1 ``quant_conv`` / ``post_quant_conv``::

    encode: x in [-1, 1] -> conv_in -> down levels -> mid -> GN, SiLU, conv_out -> quant_conv
            -> DiagonalGaussian(mean, logvar)             (B, H/8, W/8, 4) each
    decode: z -> post_quant_conv -> conv_in -> mid -> up levels -> GN, SiLU, conv_out
            -> x in [-1, 1] (unclamped)

Diffusion models work on ``z * scaling_factor`` (0.18215) for DiT/SiT/REPA inputs in [-1, 1];
EDM2 instead encodes [0, 1] images and standardises the posterior with its own statistics
(NVlabs/edm2 ``training/encoders.py``, ``StabilityVAEEncoder``): keep the two conventions apart.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from nnx_nets.block_stack import call_block
from nnx_nets.sd_vae_blocks import (
    DiagonalGaussian,
    VAEDownsample,
    VAEMidBlock,
    VAEOptions,
    VAEResnetBlock,
    VAEUpsample,
    vae_conv,
    vae_group_norm,
)
from nnx_nets.vision_attention import PrecisionLike

SD_VAE_PRESETS: dict[str, dict] = {
    "sd-vae-ft-mse": {
        "block_out_channels": (128, 256, 512, 512),
        "layers_per_block": 2,
        "latent_channels": 4,
        "scaling_factor": 0.18215,
    },
}
SD_VAE_PRESETS["sd-vae-ft-ema"] = dict(SD_VAE_PRESETS["sd-vae-ft-mse"])


class VAELevel(nnx.Module):
    """One resolution level: ``num_layers`` resnets, then an optional down/up-sampler."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_layers: int,
        opts: VAEOptions,
        *,
        resample: type[VAEDownsample] | type[VAEUpsample] | None,
        rngs: nnx.Rngs,
    ):
        self.resnets = nnx.List(
            [
                VAEResnetBlock(
                    in_channels if i == 0 else out_channels, out_channels, opts, rngs=rngs
                )
                for i in range(num_layers)
            ]
        )
        self.resample = resample(out_channels, opts, rngs=rngs) if resample is not None else None
        self.remat = opts.remat

    def __call__(self, x: jax.Array) -> jax.Array:
        for resnet in self.resnets:
            x = call_block(resnet, x, remat=self.remat)
        return self.resample(x) if self.resample is not None else x


class VAEEncoder(nnx.Module):
    """Image ``(B, H, W, C_in)`` -> moments ``(B, H/2^(L-1), W/2^(L-1), 2 C_latent)``."""

    def __init__(
        self,
        in_channels: int,
        latent_channels: int,
        block_out_channels: Sequence[int],
        layers_per_block: int,
        opts: VAEOptions,
        *,
        rngs: nnx.Rngs,
    ):
        conv = {"dtype": opts.dtype, "precision": opts.precision, "rngs": rngs}
        self.conv_in = vae_conv(in_channels, block_out_channels[0], 3, **conv)
        levels = []
        width = block_out_channels[0]
        for index, out_width in enumerate(block_out_channels):
            last = index == len(block_out_channels) - 1
            levels.append(
                VAELevel(
                    width,
                    out_width,
                    layers_per_block,
                    opts,
                    resample=None if last else VAEDownsample,
                    rngs=rngs,
                )
            )
            width = out_width
        self.down = nnx.List(levels)
        self.mid = VAEMidBlock(width, opts, rngs=rngs)
        self.norm_out = vae_group_norm(width, num_groups=opts.num_groups, eps=opts.eps, rngs=rngs)
        self.conv_out = vae_conv(width, 2 * latent_channels, 3, **conv)
        self.dtype = opts.dtype

    def __call__(
        self, x: jax.Array, *, return_features: bool = False
    ) -> jax.Array | tuple[jax.Array, dict[str, jax.Array]]:
        """Moments, and ``{"down_i": level i output (1-indexed), "mid": ...}`` when asked."""
        features = {}
        x = self.conv_in(x.astype(self.dtype))
        for index, level in enumerate(self.down):
            x = features[f"down_{index + 1}"] = level(x)
        x = features["mid"] = self.mid(x)
        moments = self.conv_out(jax.nn.silu(self.norm_out(x)).astype(self.dtype))
        return (moments, features) if return_features else moments


class VAEDecoder(nnx.Module):
    """Latent ``(B, h, w, C_latent)`` -> image ``(B, h 2^(L-1), w 2^(L-1), C_out)``."""

    def __init__(
        self,
        out_channels: int,
        latent_channels: int,
        block_out_channels: Sequence[int],
        layers_per_block: int,
        opts: VAEOptions,
        *,
        rngs: nnx.Rngs,
    ):
        conv = {"dtype": opts.dtype, "precision": opts.precision, "rngs": rngs}
        widths = list(reversed(block_out_channels))
        self.conv_in = vae_conv(latent_channels, widths[0], 3, **conv)
        self.mid = VAEMidBlock(widths[0], opts, rngs=rngs)
        levels = []
        width = widths[0]
        for index, out_width in enumerate(widths):
            last = index == len(widths) - 1
            levels.append(
                VAELevel(
                    width,
                    out_width,
                    layers_per_block + 1,
                    opts,
                    resample=None if last else VAEUpsample,
                    rngs=rngs,
                )
            )
            width = out_width
        self.up = nnx.List(levels)
        self.norm_out = vae_group_norm(width, num_groups=opts.num_groups, eps=opts.eps, rngs=rngs)
        self.conv_out = vae_conv(width, out_channels, 3, **conv)
        self.dtype = opts.dtype

    def __call__(
        self, z: jax.Array, *, return_features: bool = False
    ) -> jax.Array | tuple[jax.Array, dict[str, jax.Array]]:
        """Image, and ``{"mid": ..., "up_i": level i output (1-indexed)}`` when asked."""
        x = self.mid(self.conv_in(z.astype(self.dtype)))
        features = {"mid": x}
        for index, level in enumerate(self.up):
            x = features[f"up_{index + 1}"] = level(x)
        images = self.conv_out(jax.nn.silu(self.norm_out(x)).astype(self.dtype))
        return (images, features) if return_features else images


class SDVAE(nnx.Module):
    """KL autoencoder of Stable Diffusion with a diagonal Gaussian posterior.

    Args:
      in_channels: input image channels (3).
      out_channels: output image channels (3).
      latent_channels: latent channels (4).
      block_out_channels: widths per resolution level, (128, 256, 512, 512) for SD; the
        image is downsampled by ``2 ** (len - 1)``.
      layers_per_block: resnets per encoder level (the decoder uses one more).
      norm_num_groups: GroupNorm groups (32).
      norm_eps: GroupNorm epsilon (1e-6).
      scaling_factor: latent scale for diffusion models, ``z_model = z * scaling_factor``.
      dtype: compute dtype (parameters float32; GroupNorm and softmax in float32).
      precision: matmul/conv precision (``None``: platform default).
      remat: rematerialise each resnet and attention block in the backward pass (levels
        differ in width, so there is no scan over blocks).
      rngs: parameter initialisation stream.
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        out_channels: int = 3,
        latent_channels: int = 4,
        block_out_channels: Sequence[int] = (128, 256, 512, 512),
        layers_per_block: int = 2,
        norm_num_groups: int = 32,
        norm_eps: float = 1e-6,
        scaling_factor: float = 0.18215,
        dtype: jnp.dtype = jnp.float32,
        precision: PrecisionLike = None,
        remat: bool = False,
        rngs: nnx.Rngs,
    ):
        opts = VAEOptions(
            num_groups=norm_num_groups, eps=norm_eps, dtype=dtype, precision=precision, remat=remat
        )
        conv = {"dtype": dtype, "precision": precision, "rngs": rngs}
        self.encoder = VAEEncoder(
            in_channels, latent_channels, block_out_channels, layers_per_block, opts, rngs=rngs
        )
        self.quant_conv = vae_conv(2 * latent_channels, 2 * latent_channels, 1, **conv)
        self.post_quant_conv = vae_conv(latent_channels, latent_channels, 1, **conv)
        self.decoder = VAEDecoder(
            out_channels, latent_channels, block_out_channels, layers_per_block, opts, rngs=rngs
        )
        self.scaling_factor = scaling_factor
        self.downsample_factor = 2 ** (len(block_out_channels) - 1)

    def encode(
        self, images: jax.Array, *, return_features: bool = False
    ) -> DiagonalGaussian | tuple[DiagonalGaussian, dict[str, jax.Array]]:
        """Posterior of ``images`` ``(B, H, W, 3)`` in [-1, 1]; H, W multiples of 8 (SD).

        Args:
          images: ``(B, H, W, C)`` NHWC in [-1, 1].
          return_features: also return ``{"down_i": ..., "mid": ...}``: the output
            ``(B, h_i, w_i, C_i)`` of encoder level i (1-indexed, after its downsampler) and
            of the mid block, in the compute dtype.

        Returns:
          :class:`DiagonalGaussian` with mean and logvar of shape ``(B, H/8, W/8, 4)``, float32,
          and the features dict when ``return_features``.
        """
        _, height, width, _ = images.shape
        if height % self.downsample_factor or width % self.downsample_factor:
            raise ValueError(
                f"image size {height}x{width} is not a multiple of {self.downsample_factor}; "
                "pad or crop the images first"
            )
        moments, features = self.encoder(images, return_features=True)
        posterior = DiagonalGaussian.from_moments(self.quant_conv(moments).astype(jnp.float32))
        return (posterior, features) if return_features else posterior

    def decode(
        self, latents: jax.Array, *, return_features: bool = False
    ) -> jax.Array | tuple[jax.Array, dict[str, jax.Array]]:
        """Decode unscaled latents ``(B, h, w, 4)`` to images ``(B, 8h, 8w, 3)`` (about [-1, 1]).

        Divide diffusion-model latents by ``scaling_factor`` first. With ``return_features``
        also return ``{"mid": ..., "up_i": ...}``: the mid block and decoder level i
        (1-indexed, after its upsampler), in the compute dtype.
        """
        images, features = self.decoder(self.post_quant_conv(latents), return_features=True)
        images = images.astype(jnp.float32)
        return (images, features) if return_features else images

    def __call__(self, images: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """Reconstruct: decode the posterior mean, or a sample when ``key`` is given."""
        posterior = self.encode(images)
        latents = posterior.mode() if key is None else posterior.sample(key)
        return self.decode(latents)


def sd_vae_from_preset(name: str, **kwargs) -> SDVAE:
    """Build an :class:`SDVAE` from :data:`SD_VAE_PRESETS`; kwargs (with ``rngs``) override."""
    if name not in SD_VAE_PRESETS:
        raise ValueError(f"unknown SD-VAE preset {name!r}; choose one of {sorted(SD_VAE_PRESETS)}")
    return SDVAE(**{**SD_VAE_PRESETS[name], **kwargs})
