"""A spatio-temporal DiT for video: factorised space / time attention, per-frame times.

The input is a clip ``x: (B, F, H, W, C)`` of ``F`` NHWC frames; every frame has its own
time ``t: (B, F)`` (Diffusion Forcing, Chen et al. 2024, sec. 3: an independent noise level
per token, a token being a frame here) and the clip one class label ``y: (B,)``::

    tokens = PatchEmbed(frame) + sincos_2d(h, w) + sincos_1d(frame index)   (B, F, N, D)
    c      = t_emb(time_scale * t) + y_emb(y)                               (B, F, D)
    block  : x += gate_s * SpatialAttn(mod(LN(x)))   over the N tokens of each frame
             x += gate_t * TemporalAttn(mod(LN(x)))  over the F frames of each position
             x += gate_m * MLP(mod(LN(x)))           (adaLN-Zero, 9 chunks from c)
    out    = unpatchify(final_layer(tokens, c))                             (B, F, H, W, C)

Factorised attention as in Latte (Ma et al. 2024, "Latte: Latent Diffusion Transformer for
Video Generation", variant 1 interleaves the two kinds of block; here each block holds both).
With ``causal=True`` the temporal attention is masked so that frame ``f`` sees frames
``<= f`` only: earlier frames never depend on later ones, which is what the autoregressive
rollout of `nnx_samplers.frame_schedules` relies on. The frame-index table is the 1-D sin-cos
table of the transformer (Vaswani et al. 2017, sec. 3.5) over positions inside the clip, so a
rollout longer than the training clip slides a window of training length.

Time convention (CONVENTIONS.md): t in [0, 1], t = 0 data, t = 1 noise. A fresh network
outputs exactly 0 (adaLN-Zero and a zero final layer, as DiT).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from nnx_nets.adaln import AdaLNModulation, modulate
from nnx_nets.attention import SelfAttention
from nnx_nets.block_stack import run_blocks
from nnx_nets.dit import DiTFinalLayer
from nnx_nets.embeddings import (
    LabelEmbedder,
    PatchEmbed,
    TimestepEmbedder,
    sincos_pos_embed_1d,
    sincos_pos_embed_2d,
    unpatchify,
)
from nnx_nets.mlp import Mlp
from nnx_nets.norms import layer_norm
from nnx_nets.precision import Precision, RematPolicy, remat_policy, resolve_precision
from nnx_nets.rope import axial_rope_tables

__all__ = ["VideoDiT", "VideoDiTBlock"]

_NORM_EPS = 1e-6


class VideoDiTBlock(nnx.Module):
    """Spatial attention, temporal attention and MLP, each adaLN-Zero modulated per frame.

    Args:
      hidden_size: width ``D``.
      num_heads: heads of both attentions.
      mlp_ratio: MLP width / ``D``.
      causal: mask the temporal attention (frame ``f`` sees frames ``<= f``).
      precision: the dtype policy (`nnx_nets.precision.Precision` or its name; its
        ``compute_dtype`` for the matmuls).
      rngs: initialisation.
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        *,
        mlp_ratio: float = 4.0,
        causal: bool = False,
        precision: Precision | str = "float32",
        rngs: nnx.Rngs,
    ) -> None:
        dtype = resolve_precision(precision).compute_dtype
        self.causal = causal
        self.spatial_attn = SelfAttention(hidden_size, num_heads, dtype=dtype, rngs=rngs)
        self.temporal_attn = SelfAttention(hidden_size, num_heads, dtype=dtype, rngs=rngs)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio), dtype=dtype, rngs=rngs)
        self.adaln = AdaLNModulation(hidden_size, 9, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array, c: jax.Array, *, rope=None) -> jax.Array:
        """``x: (B, F*N, D)`` float32 residual stream, ``c: (B, F, D)`` -> ``(B, F*N, D)``.

        The stream is flat over (frame, token), row-major, so that `run_blocks` (scan,
        remat, the ``(batch, seq, embed)`` hints) applies unchanged. ``rope``: optional
        ``(cos, sin)`` tables ``(N, head_dim)`` of the spatial attention.
        """
        batch, frames, width = c.shape
        tokens = x.shape[1] // frames
        x = x.reshape(batch, frames, tokens, width)
        chunks = self.adaln(c.reshape(batch * frames, width))  # 9 x (B*F, 1, D)
        chunks = [chunk.reshape(batch, frames, 1, width) for chunk in chunks]
        shift_s, scale_s, gate_s, shift_t, scale_t, gate_t, shift_m, scale_m, gate_m = chunks

        h = modulate(layer_norm(x, eps=_NORM_EPS).astype(c.dtype), shift_s, scale_s)
        h = self.spatial_attn(h.reshape(batch * frames, tokens, width), rope)
        x = x + gate_s * h.reshape(batch, frames, tokens, width)

        h = modulate(layer_norm(x, eps=_NORM_EPS).astype(c.dtype), shift_t, scale_t)
        h = h.transpose(0, 2, 1, 3).reshape(batch * tokens, frames, width)
        h = self.temporal_attn(h, is_causal=self.causal)
        x = x + gate_t * h.reshape(batch, tokens, frames, width).transpose(0, 2, 1, 3)

        h = modulate(layer_norm(x, eps=_NORM_EPS).astype(c.dtype), shift_m, scale_m)
        x = x + gate_m * self.mlp(h)
        return x.reshape(batch, frames * tokens, width)


class VideoDiT(nnx.Module):
    """Class-conditional spatio-temporal DiT over clips ``(B, F, H, W, C)`` (module docstring).

    Args:
      input_size: frame side ``H = W``.
      patch_size: ``p``.
      in_channels: ``C``.
      num_frames: the clip length the frame-index table covers (the training clip).
      hidden_size: token width ``D``.
      depth: number of blocks.
      num_heads: heads of both attentions.
      mlp_ratio: MLP width / ``D``.
      num_classes: real classes; the label table has a null row for guidance.
      causal: causal temporal attention.
      time_scale: multiplies ``t`` before the sinusoidal embedding (1: continuous time).
      spatial_rope: also rotate the spatial attention's queries and keys with 2-D axial
        RoPE over the frame's token grid (`nnx_nets.rope`, as LightningDiT): attention then
        depends on relative positions, which a moving object keeps.
      precision: the dtype policy (parameters float32; norms, the time embedding and the
        output float32; the residual stream in its ``residual_dtype``).
      remat: what each block keeps for the backward pass ("none", "dots_saveable", "full").
      scan_blocks: run the blocks under one ``jax.lax.scan`` (same parameter layout; on
        XLA:CPU this shortens compilation and, with ``remat="full"``, the step).
      rngs: initialisation.

    Call as ``model(x, t, y)`` with ``t: (B, F)`` -> velocity ``(B, F, H, W, C)`` float32.
    """

    def __init__(
        self,
        *,
        input_size: int,
        patch_size: int,
        in_channels: int,
        num_frames: int,
        hidden_size: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        num_classes: int = 10,
        causal: bool = True,
        time_scale: float = 1.0,
        spatial_rope: bool = False,
        precision: Precision | str = "float32",
        remat: RematPolicy | bool = "none",
        scan_blocks: bool = False,
        rngs: nnx.Rngs,
    ) -> None:
        self.precision = resolve_precision(precision)
        self.remat, self.scan_blocks = remat_policy(remat), scan_blocks
        dtype = self.precision.compute_dtype
        if input_size % patch_size:
            raise ValueError(f"input_size {input_size} is not a multiple of patch {patch_size}")
        self.input_size, self.patch_size, self.in_channels = input_size, patch_size, in_channels
        self.num_frames, self.num_classes, self.time_scale = num_frames, num_classes, time_scale
        self.hidden_size = hidden_size
        self.rope_head_dim = hidden_size // num_heads if spatial_rope else None
        if self.rope_head_dim is not None:
            axial_rope_tables(self.rope_head_dim, 1, 1)  # validates the head width early
        self.x_embedder = PatchEmbed(in_channels, hidden_size, patch_size, dtype=dtype, rngs=rngs)
        self.t_embedder = TimestepEmbedder(hidden_size, rngs=rngs)  # float32 in every policy
        self.y_embedder = LabelEmbedder(num_classes, hidden_size, dtype=dtype, rngs=rngs)
        self.blocks = nnx.List(
            [
                VideoDiTBlock(
                    hidden_size,
                    num_heads,
                    mlp_ratio=mlp_ratio,
                    causal=causal,
                    precision=self.precision,
                    rngs=rngs,
                )
                for _ in range(depth)
            ]
        )
        self.final_layer = DiTFinalLayer(
            hidden_size, patch_size * patch_size * in_channels, precision=self.precision, rngs=rngs
        )

    def _check(self, x: jax.Array, t: jax.Array, y: jax.Array) -> None:
        size, channels = self.input_size, self.in_channels
        if x.ndim != 5 or x.shape[2:] != (size, size, channels):
            raise ValueError(
                f"expected a clip (B, F, {size}, {size}, {channels}) of NHWC frames, got "
                f"{x.shape}; stack frames on axis 1"
            )
        if x.shape[1] > self.num_frames:
            raise ValueError(
                f"a clip of {x.shape[1]} frames is longer than num_frames={self.num_frames}; "
                "roll out longer videos with a sliding window (nnx_samplers.rollout_frames)"
            )
        if t.shape != x.shape[:2] or y.shape != x.shape[:1]:
            raise ValueError(
                f"t must be (B, F) = {x.shape[:2]} (one time per frame) and y (B,) = "
                f"{x.shape[:1]}; got t {t.shape}, y {y.shape}"
            )

    def __call__(self, x: jax.Array, t: jax.Array, y: jax.Array) -> jax.Array:
        self._check(x, t, y)
        batch, frames = x.shape[:2]
        grid = self.input_size // self.patch_size
        dtype = self.precision.compute_dtype
        frames_flat = x.reshape(batch * frames, *x.shape[2:]).astype(dtype)
        tokens = self.x_embedder(frames_flat).astype(jnp.float32)
        tokens = tokens.reshape(batch, frames, grid * grid, self.hidden_size)
        tokens = tokens + sincos_pos_embed_2d(self.hidden_size, grid, grid)[None, None]
        frame_table = sincos_pos_embed_1d(self.hidden_size, self.num_frames)[:frames]
        tokens = (tokens + frame_table[None, :, None, :]).astype(self.precision.residual_dtype)
        tokens = tokens.reshape(batch, frames * grid * grid, self.hidden_size)
        t_emb = self.t_embedder(self.time_scale * t.reshape(-1)).reshape(batch, frames, -1)
        c = (t_emb + self.y_embedder(y)[:, None, :].astype(jnp.float32)).astype(dtype)
        rope = None
        if self.rope_head_dim is not None:
            rope = axial_rope_tables(self.rope_head_dim, grid, grid)
        tokens, _ = run_blocks(
            self.blocks, tokens, c, rope=rope, scan=self.scan_blocks, remat=self.remat
        )
        flat_c = jnp.repeat(c.reshape(batch * frames, 1, -1), grid * grid, axis=1)
        out = self.final_layer(tokens.reshape(batch * frames, grid * grid, -1), flat_c)
        out = unpatchify(out, (grid, grid), self.patch_size)
        return out.reshape(batch, frames, *out.shape[1:])
