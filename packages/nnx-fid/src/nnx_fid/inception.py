"""InceptionV3 of the FID variant (inception-2015-12-05, as pytorch-fid's ``fid_inception_v3``).

Szegedy et al., "Rethinking the Inception Architecture for Computer Vision" (2016), with the
quirks of the TF graph that every FID implementation runs (mseitzer/pytorch-fid inception.py):

- every conv is ``conv (no bias) -> BatchNorm (eps 1e-3, running statistics) -> ReLU``;
- the pool branch of Mixed_5b-5d (A), 6b-6e (C) and 7b (E_1) is a 3 x 3 average pool, stride 1,
  padding 1, that does **not count the padding** (``count_include_pad=False``);
- the pool branch of Mixed_7c (E_2) is a 3 x 3 **max** pool;
- stride-2 convs and pools are VALID.

Outputs (``__call__`` returns a dict):

- ``"pool"`` ``(B, 2048)``: TF ``pool_3``, the global mean of Mixed_7c (FID, precision/recall);
- ``"spatial"`` ``(B, 7 * h * w)``: TF ``mixed_6/conv`` = the output of ``Mixed_6d.branch1x1``
  (conv, BN and ReLU: the TF op of that name is the block's ReLU, and NVIDIA's TorchScript port
  of the same graph exposes it as ``layers.mixed_6.conv``), first 7 of its 192 channels,
  flattened NHWC as ADM's evaluator does (``spatial[..., :7].reshape(B, -1)``): 17 * 17 * 7 =
  2023 values at 299 px (sFID);
- ``"logits"`` ``(B, 1008)``: ``pool @ W`` **without the bias**, as ADM's softmax graph takes
  only the ``softmax/logits/MatMul`` weight (Inception Score).

Module and parameter names follow torchvision's ``Inception3`` so that the checkpoint keys map
one to one (``nnx_fid.inception_weights``). Parameters are float32 and every conv / matmul runs
at ``Precision.HIGHEST`` (CONVENTIONS.md, dtypes).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

HIGHEST = jax.lax.Precision.HIGHEST
NUM_CLASSES = 1008
POOL_DIM = 2048
SPATIAL_CHANNELS = 7

Padding = tuple[tuple[int, int], tuple[int, int]]


def _pad(height: int, width: int) -> Padding:
    return ((height, height), (width, width))


def host_zeros(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """Zero initialiser built on the host, so that building the 94 convs compiles nothing per
    shape (the weights are meant to be overwritten by a checkpoint)."""
    del key
    return jax.device_put(np.zeros(shape, dtype))


class FrozenBatchNorm(nnx.Module):
    """Inference BatchNorm: ``(x - mean) / sqrt(var + eps) * scale + bias`` over the last axis.

    ``scale``/``bias`` are Params (torch ``bn.weight``/``bn.bias``); ``mean``/``var`` are
    BatchStats (torch ``bn.running_mean``/``bn.running_var``) and never updated.
    """

    def __init__(self, num_features: int, *, epsilon: float):
        self.epsilon = epsilon
        self.scale = nnx.Param(
            jax.device_put(np.ones(num_features, np.float32)), logical_axes=(None,)
        )
        self.bias = nnx.Param(
            jax.device_put(np.zeros(num_features, np.float32)), logical_axes=(None,)
        )
        self.mean = nnx.BatchStat(jax.device_put(np.zeros(num_features, np.float32)))
        self.var = nnx.BatchStat(jax.device_put(np.ones(num_features, np.float32)))

    def __call__(self, x: jax.Array) -> jax.Array:
        inv = jax.lax.rsqrt(self.var[...] + self.epsilon) * self.scale[...]
        return (x - self.mean[...]) * inv + self.bias[...]


class BasicConv2d(nnx.Module):
    """conv (no bias) -> BatchNorm(eps 1e-3, running statistics) -> ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, int],
        *,
        stride: int = 1,
        padding: Padding = ((0, 0), (0, 0)),
        rngs: nnx.Rngs,
    ):
        self.conv = nnx.Conv(
            in_channels,
            out_channels,
            kernel_size,
            strides=(stride, stride),
            padding=padding,
            use_bias=False,
            precision=HIGHEST,
            kernel_init=host_zeros,
            param_dtype=jnp.float32,
            kernel_metadata={"logical_axes": (None, None, None, None)},
            rngs=rngs,
        )
        self.bn = FrozenBatchNorm(out_channels, epsilon=1e-3)

    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.nn.relu(self.bn(self.conv(x)))


def _conv(cin: int, cout: int, kh: int, kw: int, *, rngs: nnx.Rngs, stride: int = 1):
    """A 'same'-padded conv for stride 1, VALID for stride 2 (as torchvision's paddings)."""
    padding = _pad(kh // 2, kw // 2) if stride == 1 else _pad(0, 0)
    return BasicConv2d(cin, cout, (kh, kw), stride=stride, padding=padding, rngs=rngs)


def avg_pool_exclude_pad(x: jax.Array) -> jax.Array:
    """3 x 3 average pool, stride 1, padding 1, dividing by the number of real (unpadded) inputs."""
    window, strides, padding = (1, 3, 3, 1), (1, 1, 1, 1), ((0, 0), (1, 1), (1, 1), (0, 0))
    total = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, padding)
    ones = jnp.ones((1, x.shape[1], x.shape[2], 1), x.dtype)
    count = jax.lax.reduce_window(ones, 0.0, jax.lax.add, window, strides, padding)
    return total / count


def max_pool_same(x: jax.Array) -> jax.Array:
    """3 x 3 max pool, stride 1, padding 1 (padding never wins)."""
    return jax.lax.reduce_window(
        x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 1, 1, 1), ((0, 0), (1, 1), (1, 1), (0, 0))
    )


def max_pool_valid(x: jax.Array) -> jax.Array:
    """3 x 3 max pool, stride 2, VALID."""
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1), "VALID")


class InceptionA(nnx.Module):
    """Mixed_5b-5d: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool(no pad count)-1x1."""

    def __init__(self, in_channels: int, pool_features: int, *, rngs: nnx.Rngs):
        self.branch1x1 = _conv(in_channels, 64, 1, 1, rngs=rngs)
        self.branch5x5_1 = _conv(in_channels, 48, 1, 1, rngs=rngs)
        self.branch5x5_2 = _conv(48, 64, 5, 5, rngs=rngs)
        self.branch3x3dbl_1 = _conv(in_channels, 64, 1, 1, rngs=rngs)
        self.branch3x3dbl_2 = _conv(64, 96, 3, 3, rngs=rngs)
        self.branch3x3dbl_3 = _conv(96, 96, 3, 3, rngs=rngs)
        self.branch_pool = _conv(in_channels, pool_features, 1, 1, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(avg_pool_exclude_pad(x))
        return jnp.concatenate([self.branch1x1(x), b5, b3, bp], axis=-1)


class InceptionB(nnx.Module):
    """Mixed_6a (grid reduction 35 -> 17): 3x3/2 | 1x1-3x3-3x3/2 | maxpool/2."""

    def __init__(self, in_channels: int, *, rngs: nnx.Rngs):
        self.branch3x3 = _conv(in_channels, 384, 3, 3, stride=2, rngs=rngs)
        self.branch3x3dbl_1 = _conv(in_channels, 64, 1, 1, rngs=rngs)
        self.branch3x3dbl_2 = _conv(64, 96, 3, 3, rngs=rngs)
        self.branch3x3dbl_3 = _conv(96, 96, 3, 3, stride=2, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return jnp.concatenate([b3, bd, max_pool_valid(x)], axis=-1)


class InceptionC(nnx.Module):
    """Mixed_6b-6e: 1x1 | 1x1-1x7-7x1 | 1x1-7x1-1x7-7x1-1x7 | avgpool(no pad count)-1x1."""

    def __init__(self, in_channels: int, channels_7x7: int, *, rngs: nnx.Rngs):
        c7 = channels_7x7
        self.branch1x1 = _conv(in_channels, 192, 1, 1, rngs=rngs)
        self.branch7x7_1 = _conv(in_channels, c7, 1, 1, rngs=rngs)
        self.branch7x7_2 = _conv(c7, c7, 1, 7, rngs=rngs)
        self.branch7x7_3 = _conv(c7, 192, 7, 1, rngs=rngs)
        self.branch7x7dbl_1 = _conv(in_channels, c7, 1, 1, rngs=rngs)
        self.branch7x7dbl_2 = _conv(c7, c7, 7, 1, rngs=rngs)
        self.branch7x7dbl_3 = _conv(c7, c7, 1, 7, rngs=rngs)
        self.branch7x7dbl_4 = _conv(c7, c7, 7, 1, rngs=rngs)
        self.branch7x7dbl_5 = _conv(c7, 192, 1, 7, rngs=rngs)
        self.branch_pool = _conv(in_channels, 192, 1, 1, rngs=rngs)

    def branches(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(block output, branch1x1 output)``; the latter is TF's ``mixed_6/conv`` in Mixed_6d."""
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        bd = self.branch7x7dbl_3(self.branch7x7dbl_2(bd))
        bd = self.branch7x7dbl_5(self.branch7x7dbl_4(bd))
        bp = self.branch_pool(avg_pool_exclude_pad(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1), b1

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.branches(x)[0]


class InceptionD(nnx.Module):
    """Mixed_7a (grid reduction 17 -> 8): 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2."""

    def __init__(self, in_channels: int, *, rngs: nnx.Rngs):
        self.branch3x3_1 = _conv(in_channels, 192, 1, 1, rngs=rngs)
        self.branch3x3_2 = _conv(192, 320, 3, 3, stride=2, rngs=rngs)
        self.branch7x7x3_1 = _conv(in_channels, 192, 1, 1, rngs=rngs)
        self.branch7x7x3_2 = _conv(192, 192, 1, 7, rngs=rngs)
        self.branch7x7x3_3 = _conv(192, 192, 7, 1, rngs=rngs)
        self.branch7x7x3_4 = _conv(192, 192, 3, 3, stride=2, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_2(self.branch7x7x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(b7))
        return jnp.concatenate([b3, b7, max_pool_valid(x)], axis=-1)


class InceptionE(nnx.Module):
    """Mixed_7b / 7c: 1x1 | 1x1-(1x3, 3x1) | 1x1-3x3-(1x3, 3x1) | pool-1x1.

    The pool is the count-excluding average pool in Mixed_7b (pytorch-fid's ``FIDInceptionE_1``)
    and a max pool in Mixed_7c (``FIDInceptionE_2``); ``pool`` selects it.
    """

    def __init__(self, in_channels: int, *, pool: str, rngs: nnx.Rngs):
        if pool not in ("avg", "max"):
            raise ValueError(f"InceptionE pool must be 'avg' or 'max', got {pool!r}")
        self.pool = pool
        self.branch1x1 = _conv(in_channels, 320, 1, 1, rngs=rngs)
        self.branch3x3_1 = _conv(in_channels, 384, 1, 1, rngs=rngs)
        self.branch3x3_2a = _conv(384, 384, 1, 3, rngs=rngs)
        self.branch3x3_2b = _conv(384, 384, 3, 1, rngs=rngs)
        self.branch3x3dbl_1 = _conv(in_channels, 448, 1, 1, rngs=rngs)
        self.branch3x3dbl_2 = _conv(448, 384, 3, 3, rngs=rngs)
        self.branch3x3dbl_3a = _conv(384, 384, 1, 3, rngs=rngs)
        self.branch3x3dbl_3b = _conv(384, 384, 3, 1, rngs=rngs)
        self.branch_pool = _conv(in_channels, 192, 1, 1, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        b3 = self.branch3x3_1(x)
        b3 = jnp.concatenate([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], axis=-1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = jnp.concatenate([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], axis=-1)
        pooled = avg_pool_exclude_pad(x) if self.pool == "avg" else max_pool_same(x)
        return jnp.concatenate([self.branch1x1(x), b3, bd, self.branch_pool(pooled)], axis=-1)


class InceptionV3(nnx.Module):
    """The FID InceptionV3 (see the module docstring); an inference-only feature extractor.

    Args:
      rngs: initialisation stream. Conv and fc kernels start at zero (and BN at identity):
        the network is meant to be filled by :func:`nnx_fid.load_inception`.
    """

    def __init__(self, *, rngs: nnx.Rngs):
        self.Conv2d_1a_3x3 = _conv(3, 32, 3, 3, stride=2, rngs=rngs)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, (3, 3), rngs=rngs)
        self.Conv2d_2b_3x3 = _conv(32, 64, 3, 3, rngs=rngs)
        self.Conv2d_3b_1x1 = _conv(64, 80, 1, 1, rngs=rngs)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, (3, 3), rngs=rngs)
        self.Mixed_5b = InceptionA(192, 32, rngs=rngs)
        self.Mixed_5c = InceptionA(256, 64, rngs=rngs)
        self.Mixed_5d = InceptionA(288, 64, rngs=rngs)
        self.Mixed_6a = InceptionB(288, rngs=rngs)
        self.Mixed_6b = InceptionC(768, 128, rngs=rngs)
        self.Mixed_6c = InceptionC(768, 160, rngs=rngs)
        self.Mixed_6d = InceptionC(768, 160, rngs=rngs)
        self.Mixed_6e = InceptionC(768, 192, rngs=rngs)
        self.Mixed_7a = InceptionD(768, rngs=rngs)
        self.Mixed_7b = InceptionE(1280, pool="avg", rngs=rngs)
        self.Mixed_7c = InceptionE(2048, pool="max", rngs=rngs)
        # The bias is kept so that the checkpoint loads and exports 1:1; logits do not use it.
        self.fc = nnx.Linear(
            POOL_DIM,
            NUM_CLASSES,
            precision=HIGHEST,
            kernel_init=host_zeros,
            param_dtype=jnp.float32,
            kernel_metadata={"logical_axes": (None, None)},
            bias_metadata={"logical_axes": (None,)},
            rngs=rngs,
        )

    def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
        """Features of normalised images.

        Args:
          x: ``(B, H, W, 3)`` float32 in the network's input space (about [-1, 1]; see
            :func:`nnx_fid.inception_preprocess`), normally 299 x 299 (at least 75 x 75).

        Returns:
          ``{"pool": (B, 2048), "spatial": (B, 7 h w), "logits": (B, 1008)}`` float32, where
          ``h, w`` is Mixed_6d's grid (17 x 17 at 299 px).
        """
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"InceptionV3 expects (B, H, W, 3) images, got {x.shape}")
        x = x.astype(jnp.float32)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = max_pool_valid(x)
        x = max_pool_valid(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)))
        x = self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x)))
        x = self.Mixed_6c(self.Mixed_6b(self.Mixed_6a(x)))
        x, mixed_6_conv = self.Mixed_6d.branches(x)
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(self.Mixed_6e(x))))
        pool = jnp.mean(x, axis=(1, 2))
        spatial = mixed_6_conv[..., :SPATIAL_CHANNELS].reshape(x.shape[0], -1)
        logits = jnp.dot(pool, self.fc.kernel[...], precision=HIGHEST)
        return {"pool": pool, "spatial": spatial, "logits": logits}
