"""EDM2 U-Net (Karras et al., 2024, Fig. 21), NHWC, built from magnitude-preserving layers.

Levels ``channel_mult = (1, 2, 3, 4)`` times ``model_channels``; 3 blocks per level (4 on the
decoder side, which concatenates the encoder skips with :func:`mp_cat`); self-attention at 16x16
and 8x8 with 64 channels per head; a constant-ones input channel; no biases and no GroupNorm;
activations clipped to +-256. The embedding is ``mp_silu(mp_sum(W_noise fourier(c_noise),
W_label(onehot * sqrt(num_classes)), 0.5))``.

The network returns the raw ``F(c_in x; c_noise, y)``; EDM preconditioning (``c_skip``,
``c_out``, ``c_in``, ``c_noise = log(sigma) / 4``) lives in nnx-objectives. Block names follow
EDM2's checkpoints (``enc['64x64_block0']``, ``dec['8x8_in0']``, ...).

``EDM2_PRESETS`` are the ImageNet-512 latent models (64 x 64 x 4, 1000 classes).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from nnx_nets.block_stack import call_block
from nnx_nets.mp_layers import MPConv, MPFourier, mp_cat, mp_silu, mp_sum, normalize
from nnx_nets.vision_attention import PrecisionLike, matmul_precision

# model_channels and dropout of the ImageNet-512 presets (NVlabs/edm2 ``train_edm2.py``,
# ``config_presets``).
EDM2_PRESETS: dict[str, dict] = {
    "edm2-img512-xxs": {"model_channels": 64, "dropout": 0.0},
    "edm2-img512-xs": {"model_channels": 128, "dropout": 0.0},
    "edm2-img512-s": {"model_channels": 192, "dropout": 0.0},
    "edm2-img512-m": {"model_channels": 256, "dropout": 0.1},
    "edm2-img512-l": {"model_channels": 320, "dropout": 0.1},
    "edm2-img512-xl": {"model_channels": 384, "dropout": 0.1},
    "edm2-img512-xxl": {"model_channels": 448, "dropout": 0.1},
}
_IMG512 = {"img_resolution": 64, "img_channels": 4, "num_classes": 1000}


class EDM2Block(nnx.Module):
    """Encoder or decoder block with optional resampling and self-attention (Fig. 21).

    Args:
      in_channels: input width.
      out_channels: output width.
      emb_channels: width of the noise / label embedding.
      flavor: ``"enc"`` (skip conv and pixel norm on the main path first) or ``"dec"``.
      resample: ``"keep"``, ``"down"`` (2x2 mean) or ``"up"`` (nearest 2x).
      attention: add multi-head self-attention with pixel-normed q, k, v.
      channels_per_head: attention head width (64).
      dropout: dropout on the residual branch (training only).
      res_balance: ``t`` of the magnitude-preserving residual sum (0.3).
      attn_balance: ``t`` of the magnitude-preserving attention sum (0.3).
      clip_act: clip the output to +-clip_act (256), None for no clipping.
      dtype: compute dtype.
      precision: matmul precision.
      rngs: parameters and the dropout stream.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        emb_channels: int,
        *,
        flavor: str = "enc",
        resample: str = "keep",
        attention: bool = False,
        channels_per_head: int = 64,
        dropout: float = 0.0,
        res_balance: float = 0.3,
        attn_balance: float = 0.3,
        clip_act: float | None = 256.0,
        dtype: jnp.dtype = jnp.float32,
        precision: PrecisionLike = None,
        rngs: nnx.Rngs,
    ):
        if flavor not in ("enc", "dec") or resample not in ("keep", "down", "up"):
            raise ValueError(
                f"flavor must be 'enc'/'dec' and resample 'keep'/'down'/'up', got {flavor!r}, {resample!r}"
            )
        conv = {"dtype": dtype, "precision": precision, "rngs": rngs}
        self.flavor, self.resample = flavor, resample
        self.num_heads = out_channels // channels_per_head if attention else 0
        self.res_balance, self.attn_balance, self.clip_act = res_balance, attn_balance, clip_act
        self.emb_gain = nnx.Param(jnp.zeros(()), logical_axes=())
        self.conv_res0 = MPConv(
            out_channels if flavor == "enc" else in_channels, out_channels, 3, **conv
        )
        self.emb_linear = MPConv(emb_channels, out_channels, 0, **conv)
        self.conv_res1 = MPConv(out_channels, out_channels, 3, **conv)
        self.conv_skip = (
            MPConv(in_channels, out_channels, 1, **conv) if in_channels != out_channels else None
        )
        if self.num_heads:
            self.attn_qkv = MPConv(out_channels, 3 * out_channels, 1, **conv)
            self.attn_proj = MPConv(out_channels, out_channels, 1, **conv)
        else:
            self.attn_qkv = self.attn_proj = None
        # Only a block that drops holds an RNG stream (its state then includes the stream).
        self.dropout = nnx.Dropout(dropout, rngs=rngs) if dropout else None
        self.precision = precision

    def _resample(self, x: jax.Array) -> jax.Array:
        batch, height, width, channels = x.shape
        if self.resample == "down":
            return x.reshape(batch, height // 2, 2, width // 2, 2, channels).mean(axis=(2, 4))
        if self.resample == "up":
            return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
        return x

    def _attention(self, x: jax.Array) -> jax.Array:
        batch, height, width, channels = x.shape
        head_dim = channels // self.num_heads
        # EDM2 orders the 3C qkv channels as (head, channel, q|k|v).
        y = self.attn_qkv(x).reshape(batch, height * width, self.num_heads, head_dim, 3)
        y = normalize(y, axis=3)
        q, k, v = (y[..., i] for i in range(3))
        with matmul_precision(self.precision):
            y = jax.nn.dot_product_attention(q, k, v)
        return self.attn_proj(y.reshape(batch, height, width, channels))

    def __call__(self, x: jax.Array, emb: jax.Array) -> jax.Array:
        """``x: (B, H, W, C_in)``, ``emb: (B, C_emb)`` -> ``(B, H', W', C_out)``."""
        x = self._resample(x)
        if self.flavor == "enc":
            if self.conv_skip is not None:
                x = self.conv_skip(x)
            x = normalize(x, axis=-1)  # pixel norm
        y = self.conv_res0(mp_silu(x))
        scale = self.emb_linear(emb, gain=self.emb_gain[...]) + 1
        y = mp_silu(y * scale[:, None, None, :].astype(y.dtype))
        if self.dropout is not None:
            # Dropout on a (B, H*W*C) view: the same iid mask, without the slow XLA:CPU
            # compile of 4-D threefry draws (see nnx_nets.flat_init).
            y = self.dropout(y.reshape(y.shape[0], -1)).reshape(y.shape)
        y = self.conv_res1(y)
        if self.flavor == "dec" and self.conv_skip is not None:
            x = self.conv_skip(x)
        x = mp_sum(x.astype(y.dtype), y, t=self.res_balance)
        if self.num_heads:
            x = mp_sum(x, self._attention(x), t=self.attn_balance)
        if self.clip_act is not None:
            x = jnp.clip(x, -self.clip_act, self.clip_act)
        return x


class EDM2UNet(nnx.Module):
    """The EDM2 denoiser network ``F(x, c_noise, y)`` (raw output, no preconditioning).

    Args:
      img_resolution: input side (64 for ImageNet-512 latents).
      img_channels: input channels (4 for ImageNet-512 latents).
      num_classes: label classes (0: unconditional). Label ``num_classes`` is the null label of
        classifier-free guidance and maps to a zero label embedding, as EDM2's ``None`` labels.
      model_channels: base width (XS 128 ... XXL 448, :data:`EDM2_PRESETS`).
      channel_mult: per-level width multipliers.
      num_blocks: blocks per encoder level (the decoder has one more).
      attn_resolutions: sides at which blocks attend.
      channel_mult_noise: Fourier width as a multiple of ``model_channels`` (None: the
        first level multiplier).
      channel_mult_emb: embedding width as a multiple of ``model_channels`` (None: the
        largest level multiplier).
      label_balance: ``t`` of the label mp_sum (0.5).
      concat_balance: ``t`` of the skip mp_cat (0.5).
      dropout: see :class:`EDM2Block`.
      channels_per_head: see :class:`EDM2Block`.
      res_balance: see :class:`EDM2Block`.
      attn_balance: see :class:`EDM2Block`.
      clip_act: see :class:`EDM2Block`.
      dtype: compute dtype (float16/bfloat16 in EDM2).
      precision: matmul precision.
      remat: rematerialise each block in the backward pass. (The blocks differ in width,
        resampling and attention, so there is no scan over identical blocks.)
      rngs: parameters, Fourier tables and the dropout stream.
    """

    def __init__(
        self,
        *,
        img_resolution: int,
        img_channels: int,
        num_classes: int,
        model_channels: int = 192,
        channel_mult: Sequence[int] = (1, 2, 3, 4),
        num_blocks: int = 3,
        attn_resolutions: Sequence[int] = (16, 8),
        channel_mult_noise: int | None = None,
        channel_mult_emb: int | None = None,
        label_balance: float = 0.5,
        concat_balance: float = 0.5,
        dropout: float = 0.0,
        channels_per_head: int = 64,
        res_balance: float = 0.3,
        attn_balance: float = 0.3,
        clip_act: float | None = 256.0,
        dtype: jnp.dtype = jnp.float32,
        precision: PrecisionLike = None,
        remat: bool = False,
        rngs: nnx.Rngs,
    ):
        widths = [model_channels * m for m in channel_mult]
        noise_width = (
            model_channels * channel_mult_noise if channel_mult_noise is not None else widths[0]
        )
        emb_width = (
            model_channels * channel_mult_emb if channel_mult_emb is not None else max(widths)
        )
        conv = {"dtype": dtype, "precision": precision, "rngs": rngs}
        block = {
            "channels_per_head": channels_per_head,
            "dropout": dropout,
            "res_balance": res_balance,
            "attn_balance": attn_balance,
            "clip_act": clip_act,
            **conv,
        }
        self.num_classes, self.label_balance, self.concat_balance = (
            num_classes,
            label_balance,
            concat_balance,
        )
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.out_gain = nnx.Param(jnp.zeros(()), logical_axes=())
        self.emb_fourier = MPFourier(noise_width, rngs=rngs)
        self.emb_noise = MPConv(noise_width, emb_width, 0, **conv)
        self.emb_label = MPConv(num_classes, emb_width, 0, **conv) if num_classes else None

        enc: dict[str, nnx.Module] = {}
        width = img_channels + 1
        skips = []
        for level, level_width in enumerate(widths):
            res = img_resolution >> level
            if level == 0:
                enc[f"{res}x{res}_conv"] = MPConv(width, level_width, 3, **conv)
                width = level_width
            else:
                enc[f"{res}x{res}_down"] = EDM2Block(
                    width, width, emb_width, resample="down", **block
                )
            skips.append(width)
            for index in range(num_blocks):
                enc[f"{res}x{res}_block{index}"] = EDM2Block(
                    width, level_width, emb_width, attention=res in attn_resolutions, **block
                )
                width = level_width
                skips.append(width)
        dec: dict[str, nnx.Module] = {}
        for level, level_width in reversed(list(enumerate(widths))):
            res = img_resolution >> level
            if level == len(widths) - 1:
                dec[f"{res}x{res}_in0"] = EDM2Block(
                    width, width, emb_width, flavor="dec", attention=True, **block
                )
                dec[f"{res}x{res}_in1"] = EDM2Block(width, width, emb_width, flavor="dec", **block)
            else:
                dec[f"{res}x{res}_up"] = EDM2Block(
                    width, width, emb_width, flavor="dec", resample="up", **block
                )
            for index in range(num_blocks + 1):
                dec[f"{res}x{res}_block{index}"] = EDM2Block(
                    width + skips.pop(),
                    level_width,
                    emb_width,
                    flavor="dec",
                    attention=res in attn_resolutions,
                    **block,
                )
                width = level_width
        self.enc_names, self.dec_names = tuple(enc), tuple(dec)
        self.enc = nnx.Dict(enc)
        self.dec = nnx.Dict(dec)
        self.out_conv = MPConv(width, img_channels, 3, **conv)
        self.dtype = dtype
        self.remat = remat

    def embed(self, noise_labels: jax.Array, y: jax.Array | None) -> jax.Array:
        """``mp_silu(mp_sum(W_noise fourier(c_noise), W_label onehot(y) sqrt(K)))``, ``(B, C_emb)``."""
        emb = self.emb_noise(self.emb_fourier(noise_labels.astype(jnp.float32)))
        if self.emb_label is not None:
            if y is None:
                raise ValueError(
                    "this EDM2UNet is class-conditional: pass labels y (num_classes = null)"
                )
            onehot = jax.nn.one_hot(y, self.num_classes + 1, dtype=jnp.float32)[
                :, : self.num_classes
            ]
            label = self.emb_label(onehot * jnp.sqrt(float(self.num_classes)))
            emb = mp_sum(emb, label.astype(emb.dtype), t=self.label_balance)
        return mp_silu(emb)

    def __call__(
        self,
        x: jax.Array,
        noise_labels: jax.Array,
        y: jax.Array | None = None,
        *,
        return_features: bool = False,
    ) -> jax.Array | tuple[jax.Array, dict[str, jax.Array]]:
        """Raw network output.

        Args:
          x: ``(B, R, R, C)`` preconditioned input ``c_in * x_sigma``.
          noise_labels: ``(B,)`` ``c_noise = log(sigma) / 4`` (EDM convention, sigma = t / (1 - t)
            for the library's linear path; converted in nnx-objectives).
          y: ``(B,)`` int labels in ``[0, num_classes]``, ``num_classes`` being the null label.
          return_features: also return ``{"block_i": (B, r, r, C_i)}``, the output of the
            i-th entry (1-indexed) of ``enc_names + dec_names`` (the encoder's input conv
            included), in the compute dtype.

        Returns:
          ``(B, R, R, C)`` float32 ``F``, and the features dict when ``return_features``.
        """
        emb = self.embed(noise_labels, y)
        x = x.astype(self.dtype)
        x = jnp.concatenate([x, jnp.ones_like(x[..., :1])], axis=-1)
        skips, features = [], []
        for name in self.enc_names:
            block = self.enc[name]
            if name.endswith("_conv"):
                x = block(x)
            else:
                x = call_block(block, x, emb, remat=self.remat)
            skips.append(x)
            features.append(x)
        for name in self.dec_names:
            if "_block" in name:
                x = mp_cat(x, skips.pop(), t=self.concat_balance)
            x = call_block(self.dec[name], x, emb, remat=self.remat)
            features.append(x)
        out = self.out_conv(x, gain=self.out_gain[...]).astype(jnp.float32)
        if not return_features:
            return out
        return out, {f"block_{i + 1}": feat for i, feat in enumerate(features)}


def edm2_unet_from_preset(name: str, **kwargs) -> EDM2UNet:
    """An ImageNet-512 EDM2 U-Net from :data:`EDM2_PRESETS`; kwargs (with ``rngs``) override."""
    if name not in EDM2_PRESETS:
        raise ValueError(f"unknown EDM2 preset {name!r}; choose one of {sorted(EDM2_PRESETS)}")
    return EDM2UNet(**{**_IMG512, **EDM2_PRESETS[name], **kwargs})
