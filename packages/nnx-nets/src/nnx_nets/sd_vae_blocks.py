"""Building blocks of the Stable Diffusion VAE (diffusers ``AutoencoderKL``), NHWC.

- :class:`VAEResnetBlock`: ``x + conv2(silu(GN(conv1(silu(GN(x))))))`` with a 1x1 shortcut
  conv when the width changes (He et al., 2016; diffusers ``ResnetBlock2D`` without time
  embedding, output scale 1).
- :class:`VAEDownsample`: 3x3 stride-2 conv after padding one row/column at the bottom/right
  only (diffusers ``Downsample2D(padding=0)``); the asymmetry matters for parity.
- :class:`VAEUpsample`: nearest 2x, then a 3x3 conv.
- :class:`VAEMidBlock`: resnet, single-head self-attention over all pixels with a GroupNorm in
  front and a residual connection, resnet.
- :class:`DiagonalGaussian`: the posterior N(mean, exp(logvar)) with logvar clamped to
  [-30, 20] (Kingma & Welling, 2014; LDM ``DiagonalGaussianDistribution``).

GroupNorms use 32 groups and eps 1e-6 and compute in float32.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from nnx_nets.block_stack import call_block
from nnx_nets.flat_init import lecun_normal_flat
from nnx_nets.vision_attention import PrecisionLike, VisionSelfAttention

_CONV_AXES = {
    "kernel_metadata": {"logical_axes": (None, None, None, "embed")},
    "bias_metadata": {"logical_axes": ("embed",)},
}


def vae_conv(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    *,
    stride: int = 1,
    padding: tuple[tuple[int, int], tuple[int, int]] | None = None,
    dtype: jnp.dtype,
    precision: PrecisionLike,
    rngs: nnx.Rngs,
) -> nnx.Conv:
    """A conv with float32 parameters; default padding keeps the size (``k // 2`` each side)."""
    if padding is None:
        pad = kernel_size // 2
        padding = ((pad, pad), (pad, pad))
    return nnx.Conv(
        in_channels,
        out_channels,
        (kernel_size, kernel_size),
        strides=(stride, stride),
        padding=padding,
        dtype=dtype,
        param_dtype=jnp.float32,
        precision=precision,
        kernel_init=lecun_normal_flat,
        rngs=rngs,
        **_CONV_AXES,
    )


def vae_group_norm(channels: int, *, num_groups: int, eps: float, rngs: nnx.Rngs) -> nnx.GroupNorm:
    """GroupNorm over (H, W, channels-in-group), in float32."""
    if channels % num_groups:
        raise ValueError(
            f"{channels} channels do not split into {num_groups} GroupNorm groups; "
            "use widths that are multiples of norm_num_groups"
        )
    return nnx.GroupNorm(
        channels,
        num_groups=num_groups,
        epsilon=eps,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
        scale_metadata={"logical_axes": (None,)},
        bias_metadata={"logical_axes": (None,)},
        rngs=rngs,
    )


@dataclasses.dataclass(frozen=True)
class VAEOptions:
    """Options shared by every block: GroupNorm groups and epsilon, compute dtype, precision,
    and whether resnet and attention blocks are rematerialised in the backward pass."""

    num_groups: int = 32
    eps: float = 1e-6
    dtype: jnp.dtype = jnp.float32
    precision: PrecisionLike = None
    remat: bool = False


class VAEResnetBlock(nnx.Module):
    """Pre-activation residual block ``(B, H, W, C_in) -> (B, H, W, C_out)``."""

    def __init__(self, in_channels: int, out_channels: int, opts: VAEOptions, *, rngs: nnx.Rngs):
        conv = {"dtype": opts.dtype, "precision": opts.precision, "rngs": rngs}
        self.norm1 = vae_group_norm(
            in_channels, num_groups=opts.num_groups, eps=opts.eps, rngs=rngs
        )
        self.conv1 = vae_conv(in_channels, out_channels, 3, **conv)
        self.norm2 = vae_group_norm(
            out_channels, num_groups=opts.num_groups, eps=opts.eps, rngs=rngs
        )
        self.conv2 = vae_conv(out_channels, out_channels, 3, **conv)
        self.shortcut = (
            vae_conv(in_channels, out_channels, 1, **conv) if in_channels != out_channels else None
        )
        self.dtype = opts.dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.conv1(jax.nn.silu(self.norm1(x)).astype(self.dtype))
        h = self.conv2(jax.nn.silu(self.norm2(h)).astype(self.dtype))
        skip = self.shortcut(x) if self.shortcut is not None else x
        return skip + h


class VAEDownsample(nnx.Module):
    """Halve H and W: pad (0, 1) on both spatial axes, then a 3x3 stride-2 VALID conv."""

    def __init__(self, channels: int, opts: VAEOptions, *, rngs: nnx.Rngs):
        self.conv = vae_conv(
            channels,
            channels,
            3,
            stride=2,
            padding=((0, 1), (0, 1)),
            dtype=opts.dtype,
            precision=opts.precision,
            rngs=rngs,
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.conv(x)


class VAEUpsample(nnx.Module):
    """Double H and W by nearest-neighbour repetition, then a 3x3 conv."""

    def __init__(self, channels: int, opts: VAEOptions, *, rngs: nnx.Rngs):
        self.conv = vae_conv(
            channels, channels, 3, dtype=opts.dtype, precision=opts.precision, rngs=rngs
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
        return self.conv(x)


class VAEAttention(nnx.Module):
    """``x + out(attn(GN(x)))`` with one head over the H*W pixels (diffusers mid-block)."""

    def __init__(self, channels: int, opts: VAEOptions, *, rngs: nnx.Rngs):
        self.group_norm = vae_group_norm(
            channels, num_groups=opts.num_groups, eps=opts.eps, rngs=rngs
        )
        self.attn = VisionSelfAttention(
            channels, 1, dtype=opts.dtype, precision=opts.precision, rngs=rngs
        )
        self.dtype = opts.dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        batch, height, width, channels = x.shape
        h = self.group_norm(x).astype(self.dtype).reshape(batch, height * width, channels)
        h = self.attn(h).reshape(batch, height, width, channels)
        return x + h


class VAEMidBlock(nnx.Module):
    """resnet -> attention -> resnet at constant width."""

    def __init__(self, channels: int, opts: VAEOptions, *, rngs: nnx.Rngs):
        self.resnet1 = VAEResnetBlock(channels, channels, opts, rngs=rngs)
        self.attention = VAEAttention(channels, opts, rngs=rngs)
        self.resnet2 = VAEResnetBlock(channels, channels, opts, rngs=rngs)
        self.remat = opts.remat

    def __call__(self, x: jax.Array) -> jax.Array:
        for block in (self.resnet1, self.attention, self.resnet2):
            x = call_block(block, x, remat=self.remat)
        return x


@dataclasses.dataclass(frozen=True)
class DiagonalGaussian:
    """The VAE posterior q(z|x) = N(mean, diag(exp(logvar))), NHWC.

    Attributes:
      mean: ``(B, h, w, C_latent)``.
      logvar: same shape, already clamped to [-30, 20].
    """

    mean: jax.Array
    logvar: jax.Array

    @classmethod
    def from_moments(cls, moments: jax.Array) -> DiagonalGaussian:
        """Split ``(B, h, w, 2 C)`` into mean (first C channels) and clamped log-variance."""
        mean, logvar = jnp.split(moments, 2, axis=-1)
        return cls(mean, jnp.clip(logvar, -30.0, 20.0))

    @property
    def std(self) -> jax.Array:
        """exp(logvar / 2)."""
        return jnp.exp(0.5 * self.logvar)

    def sample(self, key: jax.Array) -> jax.Array:
        """z = mean + std * eps with eps ~ N(0, I) drawn from ``key``."""
        # Drawn as (B, h*w*C) and reshaped: same distribution, and XLA:CPU compiles 4-D
        # threefry draws very slowly (see nnx_nets.flat_init).
        noise = jax.random.normal(key, (self.mean.shape[0], self.mean[0].size), self.mean.dtype)
        return self.mean + self.std * noise.reshape(self.mean.shape)

    def mode(self) -> jax.Array:
        """The posterior mean (the deterministic latent)."""
        return self.mean

    def kl(self) -> jax.Array:
        """KL(q || N(0, I)) summed over latent dims, ``(B,)``."""
        terms = jnp.square(self.mean) + jnp.exp(self.logvar) - 1.0 - self.logvar
        return 0.5 * jnp.sum(terms, axis=(1, 2, 3))


jax.tree_util.register_dataclass(DiagonalGaussian, data_fields=["mean", "logvar"], meta_fields=[])
