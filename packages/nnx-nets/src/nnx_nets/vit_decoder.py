"""The ViT-MAE pixel decoder of RAE and RAE's latent normalisation (Zheng et al., 2025).

RAE encodes a 224-px view of a 256-px image with a frozen DINOv2-B (registers, final LayerNorm
without affine) into 16 x 16 tokens of width 768, and decodes them with a ViT-MAE decoder
(He et al., 2022)::

    h = [cls; decoder_embed(z_tokens)] + pos        # cls: trainable, zero-initialised
                                                    # pos: fixed 2-D sin-cos, zero CLS row
    h = h + attn(LN(h));  h = h + fc2(gelu(fc1(LN(h))))     # x depth, LayerNorm eps 1e-12
    p = decoder_pred(LN(h))[:, 1:]                  # (B, N, 16*16*3) patches
    x = unpatchify(p) * imagenet_std + imagenet_mean    # RAE's [0, 1] image

This module returns ``2 x - 1`` so that images stay in [-1, 1] inside models (CONVENTIONS.md).
Latents are NHWC ``(B, 16, 16, 768)``; tokens are taken row-major over (h, w).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nnx_nets.block_stack import run_blocks
from nnx_nets.vision_attention import PrecisionLike, VisionSelfAttention, dense, matmul_precision

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# name: hidden_size, depth, num_heads, intermediate_size (Zheng et al. 2025, RAE decoder configs).
RAE_DECODER_PRESETS: dict[str, dict] = {
    "ViT-B": {"hidden_size": 768, "depth": 12, "num_heads": 12, "intermediate_size": 3072},
    "ViT-L": {"hidden_size": 1024, "depth": 24, "num_heads": 16, "intermediate_size": 4096},
    "ViT-XL": {"hidden_size": 1152, "depth": 28, "num_heads": 16, "intermediate_size": 4096},
}

_xavier = nnx.initializers.xavier_uniform()


def mae_sincos_pos_embed(width: int, grid_size: int) -> np.ndarray:
    """MAE's fixed 2-D sin-cos table with a zero CLS row, ``(1 + grid_size**2, width)``.

    Row ``1 + r * grid_size + c`` holds ``[sin(c w), cos(c w), sin(r w), cos(r w)]`` with
    ``w_i = 10000 ** (-i / (width / 4))``: the first half encodes the column (MAE's
    ``get_2d_sincos_pos_embed``, computed in float64).
    """
    if width % 4:
        raise ValueError(f"sin-cos position embedding needs a width divisible by 4, got {width}")
    omega = 1.0 / 10000 ** (np.arange(width // 4, dtype=np.float64) / (width / 4))
    rows, cols = np.meshgrid(np.arange(grid_size), np.arange(grid_size), indexing="ij")

    def encode(positions: np.ndarray) -> np.ndarray:
        angles = positions.reshape(-1, 1).astype(np.float64) * omega[None]
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)

    table = np.concatenate([encode(cols), encode(rows)], axis=1)
    return np.concatenate([np.zeros((1, width)), table], axis=0)


class ViTMAELayer(nnx.Module):
    """Pre-LN block: ``h + attn(LN h)``, then ``h + fc2(gelu(fc1(LN h)))`` (exact GELU)."""

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        intermediate_size: int,
        *,
        layer_norm_eps: float,
        dtype: jnp.dtype,
        precision: PrecisionLike,
        rngs: nnx.Rngs,
    ):
        kwargs = {"dtype": dtype, "precision": precision, "rngs": rngs}
        norm = {
            "epsilon": layer_norm_eps,
            "dtype": jnp.float32,
            "scale_metadata": {"logical_axes": (None,)},
            "bias_metadata": {"logical_axes": (None,)},
            "rngs": rngs,
        }
        self.norm1 = nnx.LayerNorm(hidden_size, **norm)
        self.attn = VisionSelfAttention(hidden_size, num_heads, **kwargs)
        self.norm2 = nnx.LayerNorm(hidden_size, **norm)
        self.fc1 = dense(
            hidden_size, intermediate_size, ("embed", "mlp"), kernel_init=_xavier, **kwargs
        )
        self.fc2 = dense(
            intermediate_size, hidden_size, ("mlp", "embed"), kernel_init=_xavier, **kwargs
        )
        self.dtype = dtype

    def __call__(self, x: jax.Array, *, rope: None = None) -> jax.Array:
        """``(B, N, D) -> (B, N, D)``; ``rope`` is unused (uniform with ``run_blocks``)."""
        del rope
        x = x + self.attn(self.norm1(x).astype(self.dtype)).astype(x.dtype)
        h = jax.nn.gelu(self.fc1(self.norm2(x).astype(self.dtype)), approximate=False)
        return x + self.fc2(h).astype(x.dtype)


class RAEDecoder(nnx.Module):
    """ViT-MAE decoder from RAE latents to images.

    Args:
      hidden_size: decoder width (:data:`RAE_DECODER_PRESETS`; XL: 1152).
      depth: decoder layers (XL: 28).
      num_heads: attention heads (XL: 16).
      intermediate_size: MLP hidden width (XL: 4096).
      latent_dim: encoder token width (768 for DINOv2-B).
      grid_size: latent grid side (16: 224 px / 14 for 256-px images).
      patch_size: output pixels per token side (16 -> 256 px).
      out_channels: image channels.
      layer_norm_eps: LayerNorm epsilon (1e-12, transformers' ViT-MAE default).
      image_mean: per-channel mean of the decoder's training targets (ImageNet).
      image_std: per-channel std of the decoder's training targets (ImageNet).
      dtype: compute dtype (parameters float32; norms and softmax in float32).
      precision: matmul precision (``None``: platform default).
      remat: rematerialise each layer in the backward pass.
      scan: run the layers under one ``jax.lax.scan``.
      rngs: parameter initialisation stream.
    """

    def __init__(
        self,
        *,
        hidden_size: int,
        depth: int,
        num_heads: int,
        intermediate_size: int,
        latent_dim: int = 768,
        grid_size: int = 16,
        patch_size: int = 16,
        out_channels: int = 3,
        layer_norm_eps: float = 1e-12,
        image_mean: Sequence[float] = IMAGENET_MEAN,
        image_std: Sequence[float] = IMAGENET_STD,
        dtype: jnp.dtype = jnp.float32,
        precision: PrecisionLike = None,
        remat: bool = False,
        scan: bool = False,
        rngs: nnx.Rngs,
    ):
        if len(image_mean) != out_channels or len(image_std) != out_channels:
            raise ValueError(
                f"image_mean/image_std need {out_channels} entries (one per output channel)"
            )
        kwargs = {"dtype": dtype, "precision": precision, "rngs": rngs}
        self.decoder_embed = dense(
            latent_dim, hidden_size, (None, "embed"), kernel_init=_xavier, **kwargs
        )
        self.cls_token = nnx.Param(
            jnp.zeros((1, 1, hidden_size)), logical_axes=(None, None, "embed")
        )
        self.layers = nnx.List(
            [
                ViTMAELayer(
                    hidden_size,
                    num_heads,
                    intermediate_size,
                    layer_norm_eps=layer_norm_eps,
                    **kwargs,
                )
                for _ in range(depth)
            ]
        )
        self.norm = nnx.LayerNorm(
            hidden_size,
            epsilon=layer_norm_eps,
            dtype=jnp.float32,
            scale_metadata={"logical_axes": (None,)},
            bias_metadata={"logical_axes": (None,)},
            rngs=rngs,
        )
        self.pred = dense(
            hidden_size,
            patch_size**2 * out_channels,
            ("embed", None),
            kernel_init=_xavier,
            **kwargs,
        )
        self.hidden_size = hidden_size
        self.latent_dim = latent_dim
        self.grid_size = grid_size
        self.patch_size = patch_size
        self.out_channels = out_channels
        self.image_mean = tuple(float(v) for v in image_mean)
        self.image_std = tuple(float(v) for v in image_std)
        self.dtype = dtype
        self.precision = precision
        self.remat = remat
        self.scan = scan

    def pos_embed(self) -> np.ndarray:
        """The fixed ``(1, 1 + grid_size**2, hidden_size)`` float32 position table."""
        table = mae_sincos_pos_embed(self.hidden_size, self.grid_size)
        return table[None].astype(np.float32)

    def predict_patches(
        self, latents: jax.Array, *, return_features: bool = False
    ) -> jax.Array | tuple[jax.Array, dict[str, jax.Array]]:
        """Per-token pixel predictions in ImageNet-normalised space.

        Args:
          latents: ``(B, g, g, latent_dim)`` un-normalised encoder tokens (undo the latent
            normalisation first).
          return_features: also return ``{"block_i": (B, 1 + g*g, D)}``, the token sequence
            (CLS first) after layer i (1-indexed), as :class:`~nnx_nets.DiT` does.

        Returns:
          ``(B, g*g, patch_size**2 * out_channels)``, float32, each row ordered (p, q, c),
          and the features dict when ``return_features``.
        """
        batch, height, width, channels = latents.shape
        if (height, width, channels) != (self.grid_size, self.grid_size, self.latent_dim):
            raise ValueError(
                f"latents of shape {latents.shape[1:]} do not match the decoder's "
                f"({self.grid_size}, {self.grid_size}, {self.latent_dim}); resize the latent grid "
                "or build the decoder with another grid_size/latent_dim"
            )
        with matmul_precision(self.precision):
            tokens = self.decoder_embed(
                latents.reshape(batch, height * width, channels).astype(self.dtype)
            )
            cls = jnp.broadcast_to(self.cls_token[...], (batch, 1, self.hidden_size))
            x = jnp.concatenate([cls.astype(tokens.dtype), tokens], axis=1)
            x = x + jnp.asarray(self.pos_embed(), x.dtype)
            x, per_block = run_blocks(
                self.layers,
                x,
                scan=self.scan,
                remat=self.remat,
                return_features=return_features,
            )
            patches = self.pred(self.norm(x).astype(self.dtype))
        patches = patches[:, 1:].astype(jnp.float32)
        if not return_features:
            return patches
        return patches, {f"block_{i + 1}": feat for i, feat in enumerate(per_block)}

    def unpatchify(self, patches: jax.Array) -> jax.Array:
        """``(B, g*g, p*p*C) -> (B, g*p, g*p, C)`` (token (r, c) fills rows r*p.., cols c*p..)."""
        batch = patches.shape[0]
        g, p, c = self.grid_size, self.patch_size, self.out_channels
        x = patches.reshape(batch, g, g, p, p, c)
        return jnp.einsum("nhwpqc->nhpwqc", x).reshape(batch, g * p, g * p, c)

    def __call__(
        self, latents: jax.Array, *, return_features: bool = False
    ) -> jax.Array | tuple[jax.Array, dict[str, jax.Array]]:
        """Decode latents ``(B, g, g, latent_dim)`` to images ``(B, g*p, g*p, C)`` in [-1, 1].

        The [0, 1] image of RAE is ``unpatchify(patches) * std + mean``; it is mapped to
        [-1, 1] by ``2 x - 1`` (values slightly outside are not clipped). With
        ``return_features`` the layer outputs ``{"block_i": (B, 1 + g*g, D)}`` come too.
        """
        if return_features:
            patches, features = self.predict_patches(latents, return_features=True)
        else:
            patches, features = self.predict_patches(latents), None
        images01 = self.unpatchify(patches)
        images01 = images01 * jnp.asarray(self.image_std) + jnp.asarray(self.image_mean)
        images = 2.0 * images01 - 1.0
        return (images, features) if return_features else images


class LatentStats(nnx.Variable):
    """Fixed statistics (not trained, not in ``nnx.Param``)."""


class LatentNormalizer(nnx.Module):
    """RAE's per-element latent normalisation ``z_n = (z - mean) / sqrt(var + eps)``.

    The statistics are per [C, H, W] element in the released ``stat.pt`` (DINOv2-B: ``mean``
    is None, ``var`` is ``[768, 16, 16]``); this module holds them NHWC as ``(H, W, C)``.

    Args:
      var: ``(H, W, C)`` variance.
      mean: ``(H, W, C)`` mean, or None for zero.
      eps: added to the variance (1e-5).
    """

    def __init__(
        self,
        var: jax.Array | np.ndarray,
        mean: jax.Array | np.ndarray | None = None,
        *,
        eps: float = 1e-5,
    ):
        var = jnp.asarray(var, jnp.float32)
        if var.ndim != 3:
            raise ValueError(
                f"var must be (H, W, C), got shape {var.shape}; use from_chw for [C, H, W]"
            )
        if mean is not None and tuple(np.shape(mean)) != var.shape:
            raise ValueError(f"mean shape {np.shape(mean)} differs from var shape {var.shape}")
        self.var = LatentStats(var)
        self.mean = LatentStats(jnp.asarray(mean, jnp.float32)) if mean is not None else None
        self.eps = eps

    @classmethod
    def from_chw(cls, var_chw, mean_chw=None, *, eps: float = 1e-5) -> LatentNormalizer:
        """Build from torch-layout ``[C, H, W]`` statistics (as in RAE's ``stat.pt``)."""
        var = np.transpose(np.asarray(var_chw), (1, 2, 0))
        mean = None if mean_chw is None else np.transpose(np.asarray(mean_chw), (1, 2, 0))
        return cls(var, mean, eps=eps)

    def _scale(self) -> jax.Array:
        return jnp.sqrt(self.var[...] + self.eps)

    def normalize(self, latents: jax.Array) -> jax.Array:
        """``(B, H, W, C)`` encoder tokens -> normalised latents for the diffusion model."""
        centred = latents - self.mean[...] if self.mean is not None else latents
        return centred / self._scale()

    def denormalize(self, latents: jax.Array) -> jax.Array:
        """Inverse of :meth:`normalize` (before :class:`RAEDecoder`)."""
        scaled = latents * self._scale()
        return scaled + self.mean[...] if self.mean is not None else scaled


def rae_decoder_from_preset(name: str, **kwargs) -> RAEDecoder:
    """Build an :class:`RAEDecoder` from :data:`RAE_DECODER_PRESETS`; kwargs (with ``rngs``) override."""
    if name not in RAE_DECODER_PRESETS:
        raise ValueError(
            f"unknown RAE decoder preset {name!r}; choose one of {sorted(RAE_DECODER_PRESETS)}"
        )
    return RAEDecoder(**{**RAE_DECODER_PRESETS[name], **kwargs})
