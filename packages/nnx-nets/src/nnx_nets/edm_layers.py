"""Layers of the EDM (Karras et al. 2022) U-Nets, NHWC: conv with FIR resampling, the unified
U-Net block, and the two noise embeddings.

Architecture as described by NVlabs/edm ``training/networks.py`` (``Linear``, ``Conv2d``,
``GroupNorm``, ``UNetBlock``, ``PositionalEmbedding``, ``FourierEmbedding``), itself a
reimplementation of DDPM++ / NCSN++ (Song et al. 2021) and ADM (Dhariwal & Nichol 2021):

- :class:`EDMConv`: optional 2x up / down resampling with a separable FIR filter
  ``f f^T / (sum f)^2`` (``[1, 1]``: box; ``[1, 3, 3, 1]``: NCSN++), applied per channel before
  the ``k x k`` conv ("fused": conv then filter for down, filter then conv for up, with the
  paddings of the upstream code). ``kernel = 0``: resampling only.
- :class:`EDMUNetBlock`: ``GN -> SiLU -> conv0 -> (+ emb | adaptive scale/shift) -> GN -> SiLU
  -> dropout -> conv1``, plus the (resampled, projected) skip, times ``skip_scale``; then an
  optional self-attention ``x + proj(attn(GN(x)))`` times ``skip_scale`` again.

Parameter names follow the upstream modules (``norm0``, ``conv0``, ``affine``, ...) with NNX
leaf names (``kernel``/``bias``, GroupNorm ``scale``/``bias``). Initialisers reproduce the
upstream ``weight_init`` modes (``xavier_uniform``, ``kaiming_uniform``, ...) with explicit fans.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nnx_nets.mp_layers import FixedBuffer
from nnx_nets.vision_attention import PrecisionLike, matmul_precision

_AXES_CONV = (None, None, None, "embed")


def edm_init(mode: str, fan_in: int, fan_out: int, gain: float = 1.0) -> nnx.Initializer:
    """Upstream ``weight_init(shape, mode, fan_in, fan_out) * gain`` with explicit fans.

    Drawn as a 2-D matrix and reshaped (see :mod:`nnx_nets.flat_init`): the bound depends
    only on the given fans, so the distribution is exact.
    """
    if mode == "xavier_uniform":
        bound, uniform = math.sqrt(6 / (fan_in + fan_out)), True
    elif mode == "xavier_normal":
        bound, uniform = math.sqrt(2 / (fan_in + fan_out)), False
    elif mode == "kaiming_uniform":
        bound, uniform = math.sqrt(3 / fan_in), True
    elif mode == "kaiming_normal":
        bound, uniform = math.sqrt(1 / fan_in), False
    else:
        raise ValueError(f"unknown init mode {mode!r}; use xavier_/kaiming_ uniform/normal")

    def init(key, shape, dtype=jnp.float32):
        flat = (math.prod(shape[:-1]), shape[-1]) if len(shape) > 1 else shape
        if gain == 0:
            return jnp.zeros(shape, dtype)
        if uniform:
            draw = jax.random.uniform(key, flat, dtype, -bound, bound)
        else:
            draw = bound * jax.random.normal(key, flat, dtype)
        return (gain * draw).reshape(shape)

    return init


def edm_linear(
    in_features: int,
    out_features: int,
    *,
    bias: bool = True,
    init_mode: str = "kaiming_normal",
    init_weight: float = 1.0,
    init_bias: float = 0.0,
    rngs: nnx.Rngs,
) -> nnx.Linear:
    """Upstream ``Linear``: kernel ``(in, out)`` and bias, float32."""
    return nnx.Linear(
        in_features,
        out_features,
        use_bias=bias,
        kernel_init=edm_init(init_mode, in_features, out_features, init_weight),
        bias_init=edm_init(init_mode, in_features, out_features, init_bias),
        kernel_metadata={"logical_axes": (None, "embed")},
        bias_metadata={"logical_axes": ("embed",)},
        rngs=rngs,
    )


def edm_group_norm(channels: int, *, eps: float = 1e-5, rngs: nnx.Rngs) -> nnx.GroupNorm:
    """Upstream ``GroupNorm``: ``min(32, C // 4)`` groups, in float32."""
    return nnx.GroupNorm(
        channels,
        num_groups=min(32, channels // 4),
        epsilon=eps,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
        scale_metadata={"logical_axes": (None,)},
        bias_metadata={"logical_axes": (None,)},
        rngs=rngs,
    )


def _depthwise(x: jax.Array, taps: jax.Array, *, stride: int, pad: int, dilate: int) -> jax.Array:
    """Per-channel 2-D filter ``taps (k, k)``: strided conv, or (``dilate=2``) transposed conv."""
    channels = x.shape[-1]
    kernel = jnp.tile(taps[:, :, None, None], (1, 1, 1, channels)).astype(x.dtype)
    return jax.lax.conv_general_dilated(
        x,
        kernel,
        window_strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        lhs_dilation=(dilate, dilate),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=channels,
    )


class EDMConv(nnx.Module):
    """Upstream ``Conv2d``: ``(B, H, W, C_in) -> (B, H', W', C_out)``, ``H' = 2H | H | H/2``.

    Args:
      in_channels: input width.
      out_channels: output width.
      kernel: conv window (0: no weight, resampling only).
      bias: add a bias (only with ``kernel > 0``).
      up: 2x upsampling (transposed conv with ``4 f f^T / (sum f)^2``, stride 2).
      down: 2x downsampling (conv with ``f f^T / (sum f)^2``, stride 2).
      resample_filter: the 1-D FIR taps ``f``.
      fused_resample: resample and conv in the upstream "fused" order and paddings.
      init_mode: upstream ``weight_init`` mode (``xavier_uniform``, ``kaiming_normal``, ...).
      init_weight: gain of the weight's initialisation.
      init_bias: gain of the bias's initialisation.
      dtype: compute dtype.
      precision: conv precision.
      rngs: parameter stream.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        *,
        bias: bool = True,
        up: bool = False,
        down: bool = False,
        resample_filter: Sequence[int] = (1, 1),
        fused_resample: bool = False,
        init_mode: str = "kaiming_normal",
        init_weight: float = 1.0,
        init_bias: float = 0.0,
        dtype: jnp.dtype = jnp.float32,
        precision: PrecisionLike = None,
        rngs: nnx.Rngs,
    ):
        if up and down:
            raise ValueError("EDMConv resamples up or down, not both")
        self.up, self.down, self.fused = up, down, fused_resample
        self.out_channels = out_channels
        self.dtype, self.precision = dtype, precision
        fan_in, fan_out = in_channels * kernel * kernel, out_channels * kernel * kernel
        kernel_value = bias_value = None
        if kernel:
            init = edm_init(init_mode, fan_in, fan_out, init_weight)
            shape = (kernel, kernel, in_channels, out_channels)
            kernel_value = nnx.Param(init(rngs.params(), shape), logical_axes=_AXES_CONV)
            if bias:
                b = edm_init(init_mode, fan_in, fan_out, init_bias)(rngs.params(), (out_channels,))
                bias_value = nnx.Param(b, logical_axes=("embed",))
        self.kernel, self.bias = kernel_value, bias_value
        # The 1-D taps (a static tuple); the 2-D filter f f^T / (sum f)^2 is built per call.
        self.taps = tuple(float(v) for v in resample_filter) if up or down else None

    def _conv(self, x: jax.Array, pad: int) -> jax.Array:
        return jax.lax.conv_general_dilated(
            x,
            self.kernel[...].astype(x.dtype),
            window_strides=(1, 1),
            padding=((pad, pad), (pad, pad)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            precision=self.precision,
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        """``x: (B, H, W, C_in)`` -> ``(B, H', W', C_out)`` in the compute dtype."""
        x = x.astype(self.dtype)
        w_pad = self.kernel.shape[0] // 2 if self.kernel is not None else 0
        f = None
        if self.taps is not None:
            taps = np.asarray(self.taps, np.float32)
            f = jnp.asarray(np.outer(taps, taps) / taps.sum() ** 2)
        f_pad = (f.shape[0] - 1) // 2 if f is not None else 0
        f_size = f.shape[0] if f is not None else 0
        if self.fused and self.up and self.kernel is not None:
            pad = max(f_pad - w_pad, 0)
            x = _depthwise(x, 4 * f, stride=1, pad=f_size - 1 - pad, dilate=2)
            x = self._conv(x, max(w_pad - f_pad, 0))
        elif self.fused and self.down and self.kernel is not None:
            x = self._conv(x, w_pad + f_pad)
            x = _depthwise(x, f, stride=2, pad=0, dilate=1)
        else:
            if self.up:  # conv_transpose2d(stride 2, padding f_pad) as a dilated conv
                x = _depthwise(x, 4 * f, stride=1, pad=f_size - 1 - f_pad, dilate=2)
            if self.down:
                x = _depthwise(x, f, stride=2, pad=f_pad, dilate=1)
            if self.kernel is not None:
                x = self._conv(x, w_pad)
        if self.bias is not None:
            x = x + self.bias[...].astype(x.dtype)
        return x


def class_vectors(y: jax.Array | None, num_classes: int, batch: int) -> jax.Array:
    """One-hot ``(B, K)`` label vectors; the null label ``K`` (or ``y=None``) gives zeros."""
    if y is None:
        return jnp.zeros((batch, num_classes), jnp.float32)
    return jax.nn.one_hot(y, num_classes + 1, dtype=jnp.float32)[:, :num_classes]


class PositionalEmbedding(nnx.Module):
    """Sinusoidal embedding of DDPM++ / ADM, ``(B,) -> (B, C)`` as ``[cos(x f), sin(x f)]``.

    ``f_i = (1 / max_positions) ** (i / (C/2 - endpoint))``, ``i = 0 .. C/2 - 1``.
    """

    def __init__(self, num_channels: int, max_positions: int = 10000, endpoint: bool = False):
        self.num_channels, self.max_positions, self.endpoint = (
            num_channels,
            max_positions,
            endpoint,
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        half = self.num_channels // 2
        freqs = jnp.arange(half, dtype=jnp.float32) / (half - (1 if self.endpoint else 0))
        freqs = (1.0 / self.max_positions) ** freqs
        x = jnp.asarray(x, jnp.float32)[:, None] * freqs[None]
        return jnp.concatenate([jnp.cos(x), jnp.sin(x)], axis=1)


class FourierEmbedding(nnx.Module):
    """Random Fourier features of NCSN++, ``(B,) -> (B, C)`` as ``[cos(2 pi f x), sin(2 pi f x)]``.

    ``f ~ N(0, scale^2)`` of size ``C / 2``, drawn once and stored (the checkpoint's ``freqs``).
    """

    def __init__(self, num_channels: int, scale: float = 16.0, *, rngs: nnx.Rngs):
        freqs = scale * jax.random.normal(rngs.params(), (num_channels // 2,))
        self.freqs = FixedBuffer(freqs, logical_axes=(None,))

    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x, jnp.float32)[:, None] * (2 * np.pi * self.freqs[...])[None]
        return jnp.concatenate([jnp.cos(x), jnp.sin(x)], axis=1)


class EDMUNetBlock(nnx.Module):
    """Upstream ``UNetBlock``, the union of the DDPM++, NCSN++ and ADM residual blocks.

    Args:
      in_channels: input width.
      out_channels: output width.
      emb_channels: width of the noise / label embedding.
      up: 2x upsampling in ``conv0`` and the skip.
      down: 2x downsampling in ``conv0`` and the skip.
      attention: add a self-attention layer after the residual part.
      num_heads: attention heads (None: ``out_channels // channels_per_head``).
      channels_per_head: attention head width when ``num_heads`` is None.
      dropout: dropout before ``conv1`` (training only).
      skip_scale: factor on both residual sums (DDPM++/NCSN++: ``sqrt(0.5)``; ADM: 1).
      eps: GroupNorm epsilon.
      resample_filter: FIR taps of the resampling convs.
      resample_proj: a 1x1 conv on a resampled skip even when the width is kept.
      adaptive_scale: the embedding gives a scale and a shift after ``norm1`` (ADM) instead
        of a bias before it (DDPM++ / NCSN++).
      init: ``EDMConv`` / linear init kwargs of most layers.
      init_zero: init kwargs of ``conv1`` and ``proj`` (upstream: near-zero gains).
      init_attn: init kwargs of ``qkv`` (None: ``init``).
      dtype: compute dtype.
      precision: conv and attention precision.
      rngs: parameters and the dropout stream.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        emb_channels: int,
        *,
        up: bool = False,
        down: bool = False,
        attention: bool = False,
        num_heads: int | None = None,
        channels_per_head: int = 64,
        dropout: float = 0.0,
        skip_scale: float = 1.0,
        eps: float = 1e-5,
        resample_filter: Sequence[int] = (1, 1),
        resample_proj: bool = False,
        adaptive_scale: bool = True,
        init: dict | None = None,
        init_zero: dict | None = None,
        init_attn: dict | None = None,
        dtype: jnp.dtype = jnp.float32,
        precision: PrecisionLike = None,
        rngs: nnx.Rngs,
    ):
        init = dict(init or {})
        init_zero = dict(init_zero if init_zero is not None else {"init_weight": 0.0})
        init_attn = dict(init_attn if init_attn is not None else init)
        conv = {"dtype": dtype, "precision": precision, "rngs": rngs}
        resample = {"up": up, "down": down, "resample_filter": resample_filter}
        heads = num_heads if num_heads is not None else out_channels // channels_per_head
        self.num_heads = heads if attention else 0
        self.in_channels, self.out_channels = in_channels, out_channels
        self.skip_scale, self.adaptive_scale, self.precision = skip_scale, adaptive_scale, precision
        self.norm0 = edm_group_norm(in_channels, eps=eps, rngs=rngs)
        self.conv0 = EDMConv(in_channels, out_channels, 3, **resample, **init, **conv)
        affine_out = out_channels * (2 if adaptive_scale else 1)
        self.affine = edm_linear(emb_channels, affine_out, **init, rngs=rngs)
        self.norm1 = edm_group_norm(out_channels, eps=eps, rngs=rngs)
        self.conv1 = EDMConv(out_channels, out_channels, 3, **init_zero, **conv)
        if out_channels != in_channels or up or down:
            kernel = 1 if resample_proj or out_channels != in_channels else 0
            self.skip = EDMConv(in_channels, out_channels, kernel, **resample, **init, **conv)
        else:
            self.skip = None
        if self.num_heads:
            self.norm2 = edm_group_norm(out_channels, eps=eps, rngs=rngs)
            self.qkv = EDMConv(out_channels, 3 * out_channels, 1, **init_attn, **conv)
            self.proj = EDMConv(out_channels, out_channels, 1, **init_zero, **conv)
        else:
            self.norm2 = self.qkv = self.proj = None
        self.dropout = nnx.Dropout(dropout, rngs=rngs) if dropout else None

    def _attention(self, x: jax.Array) -> jax.Array:
        batch, height, width, channels = x.shape
        head_dim = channels // self.num_heads
        # Upstream orders the 3C qkv channels as (head, channel, q|k|v).
        y = self.qkv(self.norm2(x)).reshape(batch, height * width, self.num_heads, head_dim, 3)
        q, k, v = (y[..., i].astype(jnp.float32) for i in range(3))
        with matmul_precision(self.precision):
            a = jax.nn.dot_product_attention(q, k, v)  # softmax(q k / sqrt(d)) in float32
        return self.proj(a.reshape(batch, height, width, channels).astype(x.dtype))

    def __call__(self, x: jax.Array, emb: jax.Array) -> jax.Array:
        """``x: (B, H, W, C_in)``, ``emb: (B, C_emb)`` -> ``(B, H', W', C_out)``."""
        orig = x
        x = self.conv0(jax.nn.silu(self.norm0(x)))
        params = self.affine(emb.astype(jnp.float32))[:, None, None, :]
        if self.adaptive_scale:
            scale, shift = jnp.split(params, 2, axis=-1)
            x = jax.nn.silu(shift + self.norm1(x) * (scale + 1))
        else:
            x = jax.nn.silu(self.norm1(x + params.astype(x.dtype)))
        if self.dropout is not None:
            # A (B, H*W*C) view: the same iid mask without 4-D threefry draws (nnx_nets.flat_init).
            x = self.dropout(x.reshape(x.shape[0], -1)).reshape(x.shape)
        x = self.conv1(x)
        x = x + (self.skip(orig) if self.skip is not None else orig.astype(x.dtype))
        x = x * self.skip_scale
        if self.num_heads:
            x = (x + self._attention(x)) * self.skip_scale
        return x
