"""Input embeddings of the DiT family: patches, time, labels and fixed 2-D positions.

Time convention (CONVENTIONS.md): t in [0, 1], t = 0 is data, t = 1 is noise. The
embedders here embed whatever number they are given; networks multiply t by their
``time_scale`` first (1000 for facebookresearch DiT weights, trained on steps 0..999).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nnx_nets.initializers import normal_002, xavier_uniform_flat


def sinusoidal_embedding(
    t: jax.Array, dim: int, *, max_period: float = 10_000.0, freq_shift: float = 0.0
) -> jax.Array:
    """Sinusoidal embedding ``[cos(t w), sin(t w)]`` of scalar times (DiT / GLIDE).

    w_i = exp(-ln(max_period) * i / (dim/2 - freq_shift)), i = 0 .. dim/2 - 1.
    DiT uses ``freq_shift = 0``; diffusers' ``Timesteps(downscale_freq_shift=1)``,
    which its DiT port uses, corresponds to ``freq_shift = 1``.

    Args:
      t: ``(B,)`` float times (already scaled by the network's ``time_scale``).
      dim: even embedding size.
      max_period: the longest period.
      freq_shift: see above.

    Returns:
      ``(B, dim)`` float32.
    """
    if dim % 2:
        raise ValueError(f"sinusoidal embedding size must be even, got {dim}")
    half = dim // 2
    exponent = -math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / (half - freq_shift)
    args = t.astype(jnp.float32)[:, None] * jnp.exp(exponent)[None, :]
    return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


class TimestepEmbedder(nnx.Module):
    """DiT's time embedder: sinusoidal features -> Linear -> SiLU -> Linear.

    Args:
      hidden_size: output width ``D``.
      frequency_size: size of the sinusoidal features (256 in DiT).
      freq_shift: 0 for DiT, 1 for diffusers' port (see :func:`sinusoidal_embedding`).
      dtype: compute dtype of the two linear layers.
      rngs: parameter initialisation (weights N(0, 0.02), biases 0, as in DiT).
    """

    def __init__(
        self,
        hidden_size: int,
        *,
        frequency_size: int = 256,
        freq_shift: float = 0.0,
        dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ) -> None:
        self.frequency_size = frequency_size
        self.freq_shift = freq_shift
        self.linear_1 = nnx.Linear(
            frequency_size,
            hidden_size,
            dtype=dtype,
            kernel_init=normal_002,
            kernel_metadata={"logical_axes": (None, "mlp")},
            bias_metadata={"logical_axes": ("mlp",)},
            rngs=rngs,
        )
        self.linear_2 = nnx.Linear(
            hidden_size,
            hidden_size,
            dtype=dtype,
            kernel_init=normal_002,
            kernel_metadata={"logical_axes": ("mlp", "embed")},
            bias_metadata={"logical_axes": ("embed",)},
            rngs=rngs,
        )

    def __call__(self, t: jax.Array) -> jax.Array:
        """Embed ``t: (B,)`` into ``(B, D)``."""
        features = sinusoidal_embedding(t, self.frequency_size, freq_shift=self.freq_shift)
        return self.linear_2(jax.nn.silu(self.linear_1(features)))


class GaussianFourierEmbedder(nnx.Module):
    """Random Fourier time features -> Linear -> SiLU -> Linear (RAE / DiT-DH, DiffuseNNX).

    phi(t) = [sin(2 pi t W), cos(2 pi t W)] with W ~ N(0, scale^2) drawn once
    (Tancik et al. 2020). W is stored as a parameter, as upstream stores it in the
    checkpoint (``t_embedder.W``), but it is never trained: the forward pass stops its
    gradient, so it keeps its initial (or loaded) value under any optimiser without
    weight decay.

    Args:
      hidden_size: output width ``D``.
      num_frequencies: size of W (256 upstream, giving 512 features).
      scale: standard deviation of W.
      dtype: compute dtype of the two linear layers.
      rngs: initialisation (stream ``params``).
    """

    def __init__(
        self,
        hidden_size: int,
        *,
        num_frequencies: int = 256,
        scale: float = 1.0,
        dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ) -> None:
        self.frequencies = nnx.Param(
            scale * jax.random.normal(rngs.params(), (num_frequencies,), jnp.float32),
            logical_axes=(None,),
        )
        self.linear_1 = nnx.Linear(
            2 * num_frequencies,
            hidden_size,
            dtype=dtype,
            kernel_init=normal_002,
            kernel_metadata={"logical_axes": (None, "mlp")},
            bias_metadata={"logical_axes": ("mlp",)},
            rngs=rngs,
        )
        self.linear_2 = nnx.Linear(
            hidden_size,
            hidden_size,
            dtype=dtype,
            kernel_init=normal_002,
            kernel_metadata={"logical_axes": ("mlp", "embed")},
            bias_metadata={"logical_axes": ("embed",)},
            rngs=rngs,
        )

    def __call__(self, t: jax.Array) -> jax.Array:
        """Embed ``t: (B,)`` into ``(B, D)``."""
        w = jax.lax.stop_gradient(self.frequencies[...])
        args = t.astype(jnp.float32)[:, None] * w[None, :] * (2.0 * math.pi)
        features = jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)
        return self.linear_2(jax.nn.silu(self.linear_1(features)))


class LabelEmbedder(nnx.Module):
    """Class-label table with one extra row for the null label of classifier-free guidance.

    Row ``num_classes`` is the null label (CONVENTIONS.md: the null label is always
    passed in as an argument; objectives replace dropped labels by it). Label dropout
    itself lives in the objectives, not here.

    Args:
      num_classes: number of real classes; the table has ``num_classes + 1`` rows.
      hidden_size: width ``D``.
      dtype: dtype of the looked-up rows.
      rngs: initialisation N(0, 0.02) as in DiT.
    """

    def __init__(
        self, num_classes: int, hidden_size: int, *, dtype: jnp.dtype = jnp.float32, rngs: nnx.Rngs
    ) -> None:
        self.num_classes = num_classes
        self.embedding_table = nnx.Embed(
            num_classes + 1,
            hidden_size,
            dtype=dtype,
            embedding_init=normal_002,
            embedding_metadata={"logical_axes": ("classes", "embed")},
            rngs=rngs,
        )

    def __call__(self, y: jax.Array) -> jax.Array:
        """Look up ``y: (B,)`` int labels in ``[0, num_classes]``; returns ``(B, D)``."""
        return self.embedding_table(y.astype(jnp.int32))


class PatchEmbed(nnx.Module):
    """Non-overlapping p x p patches -> tokens: a Conv with kernel = stride = p, with bias.

    Args:
      in_channels: ``C`` of the NHWC input.
      hidden_size: token width ``D``.
      patch_size: ``p``.
      dtype: compute dtype.
      rngs: initialisation (xavier-uniform on the flattened kernel, zero bias, as in DiT).
    """

    def __init__(
        self,
        in_channels: int,
        hidden_size: int,
        patch_size: int,
        *,
        dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ) -> None:
        self.patch_size = patch_size
        self.proj = nnx.Conv(
            in_channels,
            hidden_size,
            kernel_size=(patch_size, patch_size),
            strides=(patch_size, patch_size),
            padding="VALID",
            dtype=dtype,
            kernel_init=xavier_uniform_flat,
            kernel_metadata={"logical_axes": (None, None, "channels", "embed")},
            bias_metadata={"logical_axes": ("embed",)},
            rngs=rngs,
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        """Patchify ``x: (B, H, W, C)`` into tokens ``(B, (H/p)(W/p), D)``, row-major (h, w)."""
        batch, height, width, _ = x.shape
        p = self.patch_size
        if height % p or width % p:
            raise ValueError(
                f"input of size {height}x{width} is not divisible by the patch size {p}; "
                "crop or pad the input to a multiple of the patch size"
            )
        tokens = self.proj(x)
        return tokens.reshape(batch, -1, tokens.shape[-1])


def unpatchify(tokens: jax.Array, grid: tuple[int, int], patch_size: int) -> jax.Array:
    """Tokens ``(B, h*w, p*p*C)`` (per-token order p, q, c) -> image ``(B, h*p, w*p, C)``.

    The NHWC counterpart of DiT's ``nhwpqc -> nchpwq``.
    """
    batch, _, features = tokens.shape
    grid_h, grid_w = grid
    p = patch_size
    channels = features // (p * p)
    x = tokens.reshape(batch, grid_h, grid_w, p, p, channels)
    x = x.transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(batch, grid_h * p, grid_w * p, channels)


def _sincos_1d(dim: int, positions: np.ndarray) -> np.ndarray:
    omega = np.arange(dim // 2, dtype=np.float64) / (dim / 2.0)
    omega = 1.0 / 10_000**omega
    angles = np.einsum("m,d->md", positions.reshape(-1).astype(np.float64), omega)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


@functools.lru_cache(maxsize=32)
def sincos_pos_embed_1d(dim: int, length: int) -> np.ndarray:
    """Fixed 1-D sin-cos table over positions ``0 .. length-1``, ``(length, dim)`` float32.

    Each row is ``[sin, cos]`` of ``position * omega_i``, omega_i = 10000^(-i / (dim/2))
    (Vaswani et al. 2017, sec. 3.5, with the halves concatenated as in MAE / DiT).
    """
    if dim % 2:
        raise ValueError(f"1-D sin-cos position embedding needs an even width, got {dim}")
    return _sincos_1d(dim, np.arange(length)).astype(np.float32)


@functools.lru_cache(maxsize=32)
def sincos_pos_embed_2d(dim: int, grid_h: int, grid_w: int) -> np.ndarray:
    """Fixed 2-D sin-cos position table of MAE / DiT, ``(grid_h * grid_w, dim)`` float32.

    Tokens are row-major over (h, w). The **first dim/2 channels encode the column**
    (w), the second dim/2 the row (h); each half is ``[sin, cos]`` with
    omega_i = 10000^(-i / (dim/4)).
    """
    if dim % 4:
        raise ValueError(f"2-D sin-cos position embedding needs a width divisible by 4, got {dim}")
    cols, rows = np.meshgrid(
        np.arange(grid_w, dtype=np.float32), np.arange(grid_h, dtype=np.float32)
    )
    table = np.concatenate([_sincos_1d(dim // 2, cols), _sincos_1d(dim // 2, rows)], axis=1)
    table = table.astype(np.float32)
    table.setflags(write=False)
    return table
