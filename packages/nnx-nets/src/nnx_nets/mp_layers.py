"""Magnitude-preserving layers of EDM2 (Karras et al., 2024, "Analyzing and Improving the
Training Dynamics of Diffusion Models"), NHWC.

Every operation keeps unit-variance inputs at unit variance in expectation:

- :func:`normalize`: ``x / (eps + rms(x))`` over the given axes (pixel norm over channels).
- :func:`mp_silu`: ``silu(x) / 0.596`` (Eq. 81).
- :func:`mp_sum`: ``((1 - t) a + t b) / sqrt((1 - t)^2 + t^2)`` (Eq. 88).
- :func:`mp_cat`: concatenation with per-part weights so that the result has unit variance and
  the parts contribute in ratio (1 - t) : t (Eq. 103).
- :class:`MPFourier`: ``sqrt(2) cos(2 pi (f x + phi))`` with fixed random f ~ N(0, 1),
  phi ~ U(0, 1) (Eq. 75).
- :class:`MPConv`: a conv / linear layer whose weight is normalised per output unit and scaled by
  ``gain / sqrt(fan_in)`` at every call (Eq. 47), plus *forced* weight normalisation (Eq. 66):
  the stored weight itself is projected back to unit norm per output unit after every optimiser
  step, with :func:`force_weight_normalization`. (EDM2's PyTorch layer does this in place in
  each training forward; in JAX the projection is an explicit step of the training loop.)
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nnx_nets.flat_init import flat_initializer
from nnx_nets.vision_attention import PrecisionLike

_normal_flat = flat_initializer(nnx.initializers.normal(1.0))


def normalize(
    x: jax.Array, axis: int | Sequence[int] | None = None, eps: float = 1e-4
) -> jax.Array:
    """Scale ``x`` to unit RMS over ``axis`` (default: all axes but the first), in float32.

    ``x / (eps + ||x|| / sqrt(n))`` with n the number of reduced elements.
    """
    if axis is None:
        axis = tuple(range(1, x.ndim))
    x32 = x.astype(jnp.float32)
    rms = jnp.sqrt(jnp.mean(jnp.square(x32), axis=axis, keepdims=True))
    return (x32 / (eps + rms)).astype(x.dtype)


def mp_silu(x: jax.Array) -> jax.Array:
    """Magnitude-preserving SiLU: ``silu(x) / 0.596`` (Eq. 81)."""
    return jax.nn.silu(x) / 0.596


def mp_sum(a: jax.Array, b: jax.Array, t: float = 0.5) -> jax.Array:
    """Magnitude-preserving blend ``lerp(a, b, t) / sqrt((1 - t)^2 + t^2)`` (Eq. 88)."""
    return (a + t * (b - a)) / np.sqrt((1 - t) ** 2 + t**2)


def mp_cat(a: jax.Array, b: jax.Array, t: float = 0.5, axis: int = -1) -> jax.Array:
    """Magnitude-preserving concatenation along ``axis`` (Eq. 103)."""
    size_a, size_b = a.shape[axis], b.shape[axis]
    scale = np.sqrt((size_a + size_b) / ((1 - t) ** 2 + t**2))
    weight_a = scale / np.sqrt(size_a) * (1 - t)
    weight_b = scale / np.sqrt(size_b) * t
    return jnp.concatenate([weight_a * a, weight_b * b], axis=axis)


class FixedBuffer(nnx.Variable):
    """A fixed random table (not trained, not an ``nnx.Param``)."""


class MPFourier(nnx.Module):
    """Magnitude-preserving Fourier features of a scalar, ``(B,) -> (B, num_channels)``.

    ``sqrt(2) cos(2 pi (f x + phi))`` with ``f ~ N(0, bandwidth^2)`` and ``phi ~ U(0, 1)``
    drawn once and kept fixed (``2 pi f`` and ``2 pi phi`` are stored, as EDM2 does; Eq. 75).
    With random phases every feature has unit mean square. The one implementation used by
    ``EDM2UNet`` (noise embedding) and ``nnx_objectives.LogVarHead`` (uncertainty head).

    Args:
      num_channels: number of features.
      bandwidth: scale of the random frequencies.
      rngs: draws the frequencies and then the phases (two keys of stream ``params``).
      keys: instead of ``rngs``, the two keys ``(key_freqs, key_phases)``.
      dtype: output dtype; ``None`` keeps the input's (the features are computed in float32).
    """

    def __init__(
        self,
        num_channels: int,
        bandwidth: float = 1.0,
        *,
        rngs: nnx.Rngs | None = None,
        keys: tuple[jax.Array, jax.Array] | None = None,
        dtype: jnp.dtype | None = None,
    ):
        if (rngs is None) == (keys is None):
            raise ValueError(
                "MPFourier needs exactly one of rngs= or keys=(key_freqs, key_phases)."
            )
        key_freqs, key_phases = keys if keys is not None else (rngs.params(), rngs.params())
        freqs = 2 * np.pi * bandwidth * jax.random.normal(key_freqs, (num_channels,))
        phases = 2 * np.pi * jax.random.uniform(key_phases, (num_channels,))
        self.freqs = FixedBuffer(freqs, logical_axes=(None,))
        self.phases = FixedBuffer(phases, logical_axes=(None,))
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        """``(B,) -> (B, num_channels)`` in ``dtype`` (default: the dtype of ``x``)."""
        x = jnp.asarray(x)
        y = x.astype(jnp.float32)[:, None] * self.freqs[...][None] + self.phases[...][None]
        return (jnp.cos(y) * np.sqrt(2)).astype(self.dtype or x.dtype)


class MPConv(nnx.Module):
    """Magnitude-preserving conv (``kernel_size > 0``) or fully-connected layer (``0``).

    The weight is stored as ``(k, k, in, out)`` (conv, HWIO) or ``(in, out)`` (linear) and
    initialised N(0, 1); each call uses ``normalize(w) * gain / sqrt(fan_in)`` with the norm
    taken per output unit. Convs pad to keep the size. No bias.

    Args:
      in_channels: input width.
      out_channels: output width.
      kernel_size: 0 for a linear layer, else the (odd) conv window.
      dtype: compute dtype (the weight is normalised in float32).
      precision: matmul / conv precision.
      rngs: parameter initialisation stream.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        dtype: jnp.dtype = jnp.float32,
        precision: PrecisionLike = None,
        rngs: nnx.Rngs,
    ):
        shape = (
            (kernel_size, kernel_size, in_channels, out_channels)
            if kernel_size
            else (in_channels, out_channels)
        )
        axes = (None, None, None, "embed") if kernel_size else (None, "embed")
        self.weight = nnx.Param(_normal_flat(rngs.params(), shape), logical_axes=axes)
        self.kernel_size = kernel_size
        self.dtype = dtype
        self.precision = precision

    def normalized_weight(self) -> jax.Array:
        """``normalize(w)`` per output unit, float32 (what forced normalisation stores)."""
        return normalize(
            self.weight[...].astype(jnp.float32), axis=tuple(range(self.weight[...].ndim - 1))
        )

    def force_normalize(self) -> None:
        """Project the stored weight to unit RMS per output unit in place (Eq. 66)."""
        self.weight[...] = self.normalized_weight().astype(self.weight[...].dtype)

    def __call__(self, x: jax.Array, gain: float | jax.Array = 1.0) -> jax.Array:
        """``(B, ..., in) -> (B, ..., out)`` (linear) or ``(B, H, W, in) -> (B, H, W, out)``."""
        w = self.normalized_weight()
        fan_in = int(np.prod(w.shape[:-1]))
        w = (w * (gain / np.sqrt(fan_in))).astype(self.dtype)
        x = x.astype(self.dtype)
        if not self.kernel_size:
            return jnp.matmul(x, w, precision=self.precision)
        pad = self.kernel_size // 2
        return jax.lax.conv_general_dilated(
            x,
            w,
            window_strides=(1, 1),
            padding=((pad, pad), (pad, pad)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            precision=self.precision,
        )


def force_weight_normalization(model: nnx.Module) -> None:
    """Apply :meth:`MPConv.force_normalize` to every MPConv of ``model`` in place.

    Call it once after initialisation and after every optimiser update (EDM2's forced weight
    normalisation); outside ``nnx.jit`` or inside a jitted step that returns the model state.
    """
    for _, module in nnx.iter_graph(model):
        if isinstance(module, MPConv):
            module.force_normalize()
