"""DINOv2 ViT-S/B/L/g with patch 14, with or without register tokens (Oquab et al., 2023;
Darcet et al., 2024), as a frozen feature extractor for REPA, FD-DINOv2 and the RAE encoder.

Forward pass (pre-LN ViT with layerscale, as transformers' ``Dinov2Model``)::

    x_0 = [cls; patch_embed(images)] + pos       # pos resized to the input grid
    x_0 = [x_0[:1]; registers; x_0[1:]]          # registers are added after the pos embedding
    x_l = x_{l-1} + ls1 * attn(LN(x_{l-1}))       # exact-erf GELU MLP, or SwiGLU for ViT-g
    x_l = x_l     + ls2 * ffn(LN(x_l))
    out = LN_final(x_L)                           # LayerNorm eps 1e-6 everywhere

Inputs are NHWC images already in the model's normalised space (ImageNet mean/std applied).
The extractor runs at ``Precision.HIGHEST`` by default (CONVENTIONS.md, dtypes).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from nnx_nets.block_stack import run_blocks
from nnx_nets.dinov2_pos_embed import (
    POS_EMBED_INTERPOLATIONS,
    PosEmbedInterpolation,
    resize_pos_grid,
)
from nnx_nets.flat_init import flat_initializer
from nnx_nets.vision_attention import PrecisionLike, VisionSelfAttention, dense, matmul_precision

# name: hidden_size, depth, num_heads, ffn ("mlp" | "swiglu"); patch 14, 518 px, mlp ratio 4.
DINOV2_PRESETS: dict[str, dict] = {
    "dinov2-vits14": {"hidden_size": 384, "depth": 12, "num_heads": 6, "ffn": "mlp"},
    "dinov2-vitb14": {"hidden_size": 768, "depth": 12, "num_heads": 12, "ffn": "mlp"},
    "dinov2-vitl14": {"hidden_size": 1024, "depth": 24, "num_heads": 16, "ffn": "mlp"},
    "dinov2-vitg14": {"hidden_size": 1536, "depth": 40, "num_heads": 24, "ffn": "swiglu"},
}
for _name in list(DINOV2_PRESETS):
    DINOV2_PRESETS[f"{_name}-reg"] = {**DINOV2_PRESETS[_name], "num_register_tokens": 4}


def swiglu_hidden_size(hidden_size: int, mlp_ratio: float) -> int:
    """DINOv2's SwiGLU width: 2/3 of the MLP width, rounded up to a multiple of 8 (4096 for g)."""
    return (int(int(hidden_size * mlp_ratio) * 2 / 3) + 7) // 8 * 8


def _layer_norm(width: int, eps: float, *, affine: bool = True, rngs: nnx.Rngs) -> nnx.LayerNorm:
    return nnx.LayerNorm(
        width,
        epsilon=eps,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
        use_bias=affine,
        use_scale=affine,
        scale_metadata={"logical_axes": (None,)},
        bias_metadata={"logical_axes": (None,)},
        rngs=rngs,
    )


class _GeluMLP(nnx.Module):
    """fc1 -> exact-erf GELU -> fc2."""

    def __init__(self, width: int, hidden: int, *, dtype, precision, rngs: nnx.Rngs):
        self.fc1 = dense(
            width, hidden, ("embed", "mlp"), dtype=dtype, precision=precision, rngs=rngs
        )
        self.fc2 = dense(
            hidden, width, ("mlp", "embed"), dtype=dtype, precision=precision, rngs=rngs
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc2(jax.nn.gelu(self.fc1(x), approximate=False))


class _SwiGLU(nnx.Module):
    """down(silu(gate(x)) * up(x)) (Shazeer, 2020, Eq. 6); the checkpoint fuses gate|up."""

    def __init__(self, width: int, hidden: int, *, dtype, precision, rngs: nnx.Rngs):
        kwargs = {"dtype": dtype, "precision": precision, "rngs": rngs}
        self.gate = dense(width, hidden, ("embed", "mlp"), **kwargs)
        self.up = dense(width, hidden, ("embed", "mlp"), **kwargs)
        self.down = dense(hidden, width, ("mlp", "embed"), **kwargs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.down(jax.nn.silu(self.gate(x)) * self.up(x))


class DINOv2Block(nnx.Module):
    """Pre-LN transformer block with layerscale: ``x + ls1*attn(LN x)``, ``x + ls2*ffn(LN x)``.

    Args:
      hidden_size: width D.
      num_heads: attention heads.
      ffn: ``"mlp"`` (exact-erf GELU, hidden ``mlp_ratio * D``) or ``"swiglu"`` (ViT-g).
      mlp_ratio: MLP expansion.
      layer_norm_eps: LayerNorm epsilon (1e-6 in every released model).
      layerscale_init: initial value of the layerscale vectors.
      dtype: compute dtype.
      precision: matmul precision.
      rngs: parameter initialisation stream.
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        *,
        ffn: str = "mlp",
        mlp_ratio: float = 4.0,
        layer_norm_eps: float = 1e-6,
        layerscale_init: float = 1.0,
        dtype: jnp.dtype = jnp.float32,
        precision: PrecisionLike = None,
        rngs: nnx.Rngs,
    ):
        kwargs = {"dtype": dtype, "precision": precision, "rngs": rngs}
        self.norm1 = _layer_norm(hidden_size, layer_norm_eps, rngs=rngs)
        self.attn = VisionSelfAttention(hidden_size, num_heads, **kwargs)
        self.ls1 = nnx.Param(
            jnp.full((hidden_size,), layerscale_init, jnp.float32), logical_axes=("embed",)
        )
        self.norm2 = _layer_norm(hidden_size, layer_norm_eps, rngs=rngs)
        match ffn:
            case "mlp":
                self.mlp = _GeluMLP(hidden_size, int(hidden_size * mlp_ratio), **kwargs)
            case "swiglu":
                self.mlp = _SwiGLU(
                    hidden_size, swiglu_hidden_size(hidden_size, mlp_ratio), **kwargs
                )
            case _:
                raise ValueError(f"unknown ffn {ffn!r}; choose 'mlp' or 'swiglu' (ViT-g)")
        self.ls2 = nnx.Param(
            jnp.full((hidden_size,), layerscale_init, jnp.float32), logical_axes=("embed",)
        )
        self.dtype = dtype

    def __call__(self, x: jax.Array, *, rope: None = None) -> jax.Array:
        """``(B, N, D) -> (B, N, D)``; ``rope`` is unused (uniform with ``run_blocks``)."""
        del rope
        h = self.attn(self.norm1(x).astype(self.dtype))
        x = x + (h * self.ls1[...]).astype(x.dtype)
        h = self.mlp(self.norm2(x).astype(self.dtype))
        return x + (h * self.ls2[...]).astype(x.dtype)


class DINOv2(nnx.Module):
    """DINOv2 vision transformer returning CLS, patch, register and intermediate tokens.

    Args:
      hidden_size: width (see :data:`DINOV2_PRESETS`).
      depth: number of blocks.
      num_heads: attention heads.
      patch_size: patch side in pixels (14).
      image_size: side of the training resolution; the position table covers
        ``(image_size // patch_size)**2`` patches (518 -> 37 x 37).
      in_channels: image channels.
      ffn: ``"mlp"`` or ``"swiglu"`` (ViT-g).
      mlp_ratio: MLP expansion (4).
      num_register_tokens: 0 (``Dinov2Model``) or 4 (``-reg`` / ``Dinov2WithRegistersModel``).
      layerscale_init: initial layerscale value.
      layer_norm_eps: LayerNorm epsilon (1e-6).
      final_norm_affine: False drops the final LayerNorm's scale and bias (RAE's encoder).
      pos_embed_interpolation: how the table is resized for other input sizes, one of
        ``"bicubic"`` / ``"bicubic_antialias"`` / ``"bicubic_offset"``
        (see :mod:`nnx_nets.dinov2_pos_embed`); ``None`` picks transformers' choice:
        ``"bicubic_antialias"`` with registers, ``"bicubic"`` without.
      dtype: compute dtype (parameters stay float32; norms and softmax run in float32).
      precision: matmul precision (default HIGHEST, for feature extraction).
      remat: rematerialise each block in the backward pass.
      scan: run the blocks under one ``jax.lax.scan`` (one block compiled instead of depth).
      rngs: parameter initialisation stream.
    """

    def __init__(
        self,
        *,
        hidden_size: int,
        depth: int,
        num_heads: int,
        patch_size: int = 14,
        image_size: int = 518,
        in_channels: int = 3,
        ffn: str = "mlp",
        mlp_ratio: float = 4.0,
        num_register_tokens: int = 0,
        layerscale_init: float = 1.0,
        layer_norm_eps: float = 1e-6,
        final_norm_affine: bool = True,
        pos_embed_interpolation: PosEmbedInterpolation | None = None,
        dtype: jnp.dtype = jnp.float32,
        precision: PrecisionLike = jax.lax.Precision.HIGHEST,
        remat: bool = False,
        scan: bool = False,
        rngs: nnx.Rngs,
    ):
        if pos_embed_interpolation is None:
            pos_embed_interpolation = "bicubic_antialias" if num_register_tokens else "bicubic"
        if pos_embed_interpolation not in POS_EMBED_INTERPOLATIONS:
            raise ValueError(
                f"unknown pos_embed_interpolation {pos_embed_interpolation!r}; "
                f"choose one of {POS_EMBED_INTERPOLATIONS}"
            )
        self.patch_size = patch_size
        self.grid_size = image_size // patch_size
        self.hidden_size = hidden_size
        self.num_register_tokens = num_register_tokens
        self.pos_embed_interpolation = pos_embed_interpolation
        self.dtype = dtype
        self.precision = precision
        self.remat = remat
        self.scan = scan
        init = nnx.initializers.truncated_normal(0.02)
        self.patch_embed = nnx.Conv(
            in_channels,
            hidden_size,
            (patch_size, patch_size),
            strides=(patch_size, patch_size),
            padding="VALID",
            dtype=dtype,
            param_dtype=jnp.float32,
            precision=precision,
            kernel_init=flat_initializer(init),
            kernel_metadata={"logical_axes": (None, None, "channels", "embed")},
            bias_metadata={"logical_axes": ("embed",)},
            rngs=rngs,
        )
        self.cls_token = nnx.Param(
            init(rngs.params(), (1, 1, hidden_size)), logical_axes=(None, None, "embed")
        )
        # Used only by DINOv2's masked-image pretraining; kept so checkpoints load and export 1:1.
        self.mask_token = nnx.Param(jnp.zeros((1, hidden_size)), logical_axes=(None, "embed"))
        self.pos_embed = nnx.Param(
            init(rngs.params(), (1, self.grid_size**2 + 1, hidden_size)),
            logical_axes=(None, None, "embed"),
        )
        if num_register_tokens:
            self.register_tokens = nnx.Param(
                init(rngs.params(), (1, num_register_tokens, hidden_size)),
                logical_axes=(None, None, "embed"),
            )
        else:
            self.register_tokens = None
        self.blocks = nnx.List(
            [
                DINOv2Block(
                    hidden_size,
                    num_heads,
                    ffn=ffn,
                    mlp_ratio=mlp_ratio,
                    layer_norm_eps=layer_norm_eps,
                    layerscale_init=layerscale_init,
                    dtype=dtype,
                    precision=precision,
                    rngs=rngs,
                )
                for _ in range(depth)
            ]
        )
        self.norm = _layer_norm(hidden_size, layer_norm_eps, affine=final_norm_affine, rngs=rngs)

    def position_embedding(self, grid_hw: tuple[int, int]) -> jax.Array:
        """The position table for a ``(h, w)`` patch grid, ``(1, 1 + h*w, D)`` (CLS row first)."""
        table = self.pos_embed[...]
        cls_pos, grid = table[:, :1], table[0, 1:]
        grid = grid.reshape(self.grid_size, self.grid_size, self.hidden_size)
        grid = resize_pos_grid(grid, grid_hw, self.pos_embed_interpolation)
        return jnp.concatenate([cls_pos, grid.reshape(1, -1, self.hidden_size)], axis=1)

    def embed(self, images: jax.Array) -> jax.Array:
        """Token sequence entering block 1, ``(B, 1 + R + h*w, D)`` (CLS, registers, patches)."""
        batch, height, width, _ = images.shape
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(
                f"image size {height}x{width} is not a multiple of the patch size "
                f"{self.patch_size}; resize or crop the input first"
            )
        grid_hw = (height // self.patch_size, width // self.patch_size)
        patches = self.patch_embed(images.astype(self.dtype)).reshape(batch, -1, self.hidden_size)
        cls = jnp.broadcast_to(self.cls_token[...], (batch, 1, self.hidden_size))
        tokens = jnp.concatenate([cls.astype(patches.dtype), patches], axis=1)
        tokens = tokens + self.position_embedding(grid_hw).astype(tokens.dtype)
        if self.register_tokens is not None:
            registers = jnp.broadcast_to(
                self.register_tokens[...], (batch, self.num_register_tokens, self.hidden_size)
            )
            tokens = jnp.concatenate(
                [tokens[:, :1], registers.astype(tokens.dtype), tokens[:, 1:]], axis=1
            )
        return tokens

    def __call__(
        self, images: jax.Array, *, intermediate_layers: Sequence[int] = ()
    ) -> dict[str, jax.Array]:
        """Extract features.

        Args:
          images: ``(B, H, W, C)`` normalised images (``(x - imagenet_mean) / imagenet_std``
            for x in [0, 1]); H and W multiples of the patch size.
          intermediate_layers: 1-indexed block numbers whose raw output tokens to return.

        Returns:
          dict with ``"cls"`` ``(B, D)``, ``"patch_tokens"`` ``(B, h*w, D)`` (row-major grid),
          ``"register_tokens"`` ``(B, R, D)`` (all after the final norm, float32), and
          ``"block_{i}"`` ``(B, 1 + R + h*w, D)`` for each requested block (before the
          final norm).
        """
        wanted = set(intermediate_layers)
        bad = sorted(i for i in wanted if not 1 <= i <= len(self.blocks))
        if bad:
            raise ValueError(
                f"intermediate_layers {bad} out of range; blocks are numbered 1..{len(self.blocks)}"
            )
        out: dict[str, jax.Array] = {}
        with matmul_precision(self.precision):
            x = self.embed(images)
            x, features = run_blocks(
                self.blocks, x, scan=self.scan, remat=self.remat, return_features=bool(wanted)
            )
            for index in sorted(wanted):
                out[f"block_{index}"] = features[index - 1]
            x = self.norm(x)
        registers_end = 1 + self.num_register_tokens
        out["cls"] = x[:, 0]
        out["register_tokens"] = x[:, 1:registers_end]
        out["patch_tokens"] = x[:, registers_end:]
        return out


def dinov2_from_preset(name: str, **kwargs) -> DINOv2:
    """Build a DINOv2 from :data:`DINOV2_PRESETS` (e.g. ``"dinov2-vitb14-reg"``).

    Keyword arguments override the preset and must include ``rngs``.
    """
    if name not in DINOV2_PRESETS:
        raise ValueError(f"unknown DINOv2 preset {name!r}; choose one of {sorted(DINOV2_PRESETS)}")
    return DINOv2(**{**DINOV2_PRESETS[name], **kwargs})
