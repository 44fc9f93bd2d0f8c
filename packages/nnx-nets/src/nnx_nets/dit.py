"""DiT: the Diffusion Transformer of Peebles & Xie (2023), facebookresearch/DiT layout.

Tokens are p x p patches of an NHWC latent plus a fixed 2-D sin-cos position table; each
block is adaLN-Zero conditioned on c = t_emb(time_scale * t) + y_emb(y):

    x = x + g1 * Attn(LN(x) * (1 + s1) + b1)
    x = x + g2 * MLP(LN(x) * (1 + s2) + b2),     (b1, s1, g1, b2, s2, g2) = Linear(SiLU(c))

and a final adaLN layer projects each token to p*p*C_out values (paper, sec. 3.2, fig. 3).

Time convention (CONVENTIONS.md): t in [0, 1], t = 0 is data, t = 1 is noise; the
embedder sees ``t * time_scale`` (1000 for the released DiT weights, trained on steps
0..999; 1 for SiT-style continuous time). The network returns raw outputs; what they
mean (noise, velocity, ...) is decided by the objective.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from nnx_nets.adaln import AdaLNModulation, modulate
from nnx_nets.attention import SelfAttention
from nnx_nets.block_stack import run_blocks
from nnx_nets.embeddings import (
    LabelEmbedder,
    PatchEmbed,
    TimestepEmbedder,
    sincos_pos_embed_2d,
    unpatchify,
)
from nnx_nets.initializers import zeros
from nnx_nets.mlp import Mlp
from nnx_nets.norms import layer_norm

_NORM_EPS = 1e-6

# name -> (hidden_size, depth, num_heads, patch_size); Peebles & Xie (2023), table 1.
DIT_PRESETS: dict[str, dict[str, int]] = {
    f"DiT-{size}/{patch}": {
        "hidden_size": hidden,
        "depth": depth,
        "num_heads": heads,
        "patch_size": patch,
    }
    for size, (hidden, depth, heads) in {
        "S": (384, 12, 6),
        "B": (768, 12, 12),
        "L": (1024, 24, 16),
        "XL": (1152, 28, 16),
    }.items()
    for patch in (2, 4, 8)
}


def check_inputs(
    x: jax.Array, t: jax.Array, y: jax.Array, *, in_channels: int, patch_size: int
) -> None:
    """Raise a ValueError that names the fix when ``(x, t, y)`` do not fit a DiT-like network."""
    if x.ndim != 4 or x.shape[-1] != in_channels:
        raise ValueError(
            f"expected an NHWC input (B, H, W, {in_channels}), got shape {x.shape}; "
            "images and latents are NHWC in this library (transpose NCHW with (0, 2, 3, 1))"
        )
    if t.shape != (x.shape[0],) or y.shape != (x.shape[0],):
        raise ValueError(
            f"t and y must have shape (B,) = ({x.shape[0]},); got t {t.shape}, y {y.shape}"
        )
    if x.shape[1] % patch_size or x.shape[2] % patch_size:
        raise ValueError(
            f"input of size {x.shape[1]}x{x.shape[2]} is not divisible by the patch size "
            f"{patch_size}; crop or pad the input to a multiple of the patch size"
        )


class DiTBlock(nnx.Module):
    """One adaLN-Zero transformer block (LayerNorm without affine, GELU-tanh MLP).

    Args:
      hidden_size: width ``D``.
      num_heads: attention heads.
      mlp_ratio: MLP width / ``D``.
      dtype: compute dtype.
      rngs: initialisation.
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        *,
        mlp_ratio: float = 4.0,
        dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ) -> None:
        self.attn = SelfAttention(hidden_size, num_heads, dtype=dtype, rngs=rngs)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio), dtype=dtype, rngs=rngs)
        self.adaln = AdaLNModulation(hidden_size, 6, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array, c: jax.Array, *, rope=None) -> jax.Array:
        """``x: (B, N, D)`` float32 residual stream, ``c: (B, D)`` -> ``(B, N, D)`` float32."""
        del rope
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaln(c)
        h = modulate(layer_norm(x, eps=_NORM_EPS).astype(c.dtype), shift1, scale1)
        x = x + gate1 * self.attn(h)
        h = modulate(layer_norm(x, eps=_NORM_EPS).astype(c.dtype), shift2, scale2)
        return x + gate2 * self.mlp(h)


class DiTFinalLayer(nnx.Module):
    """adaLN (shift, scale) then a zero-initialised Linear to ``p*p*C_out`` per token.

    Args:
      hidden_size: width ``D``.
      out_features: ``p * p * C_out``.
      cond_size: width of the condition (defaults to ``hidden_size``).
      dtype: compute dtype.
      rngs: initialisation.
    """

    def __init__(
        self,
        hidden_size: int,
        out_features: int,
        *,
        cond_size: int | None = None,
        dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ) -> None:
        self.adaln = AdaLNModulation(hidden_size, 2, cond_size=cond_size, dtype=dtype, rngs=rngs)
        self.linear = nnx.Linear(
            hidden_size,
            out_features,
            dtype=dtype,
            kernel_init=zeros,
            kernel_metadata={"logical_axes": ("embed", "channels")},
            bias_metadata={"logical_axes": ("channels",)},
            rngs=rngs,
        )

    def normalize(self, x: jax.Array) -> jax.Array:
        """The pre-modulation norm; DiT: LayerNorm without affine, eps 1e-6."""
        return layer_norm(x, eps=_NORM_EPS)

    def __call__(self, x: jax.Array, c: jax.Array) -> jax.Array:
        """``x: (B, N, D)``, ``c: (B, D)`` or ``(B, N, D)`` -> ``(B, N, out_features)`` float32."""
        shift, scale = self.adaln(c)
        h = modulate(self.normalize(x).astype(c.dtype), shift, scale)
        return self.linear(h).astype(jnp.float32)


class DiT(nnx.Module):
    """Class-conditional Diffusion Transformer (facebookresearch/DiT).

    Args:
      input_size: latent height = width the network is built for (32 for 256-px SD-VAE
        latents). Other sizes divisible by ``patch_size`` also run; the position table
        is built for the actual grid.
      patch_size: ``p`` (2, 4 or 8 in the presets).
      in_channels: ``C`` of the NHWC input (4 for SD-VAE latents).
      hidden_size: token width ``D``.
      depth: number of blocks.
      num_heads: attention heads.
      mlp_ratio: MLP width / ``D``.
      num_classes: real classes; label ``num_classes`` is the null label.
      learn_sigma: output ``2 C`` channels (mean and variance of DiT's diffusion) instead
        of ``C``.
      time_scale: the time embedder sees ``t * time_scale``.
      time_freq_shift: 0 as in DiT; 1 reproduces diffusers' ``DiTTransformer2DModel``.
      dtype: compute dtype (parameters are float32; norms, softmax and the output stay
        float32; the residual stream is float32).
      remat: rematerialise block activations in the backward pass.
      scan_blocks: run the blocks under one ``jax.lax.scan`` (faster compiles; with
        ``remat`` much less activation memory). Parameters are laid out the same way.
      rngs: initialisation (DiT's ``initialize_weights``: a fresh network outputs 0).
    """

    def __init__(
        self,
        *,
        input_size: int,
        patch_size: int,
        in_channels: int,
        hidden_size: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        num_classes: int = 1000,
        learn_sigma: bool = False,
        time_scale: float = 1.0,
        time_freq_shift: float = 0.0,
        dtype: jnp.dtype = jnp.float32,
        remat: bool = False,
        scan_blocks: bool = False,
        rngs: nnx.Rngs,
    ) -> None:
        if input_size % patch_size:
            raise ValueError(f"input_size {input_size} is not divisible by patch_size {patch_size}")
        self.input_size = input_size
        self.patch_size = patch_size
        self.in_channels = in_channels
        self.out_channels = 2 * in_channels if learn_sigma else in_channels
        self.hidden_size = hidden_size
        self.num_classes = num_classes
        self.time_scale = time_scale
        self.dtype = dtype
        self.remat = remat
        self.scan_blocks = scan_blocks
        self.x_embedder = PatchEmbed(in_channels, hidden_size, patch_size, dtype=dtype, rngs=rngs)
        self.t_embedder = TimestepEmbedder(
            hidden_size, freq_shift=time_freq_shift, dtype=dtype, rngs=rngs
        )
        self.y_embedder = LabelEmbedder(num_classes, hidden_size, dtype=dtype, rngs=rngs)
        self.blocks = nnx.List(
            [
                DiTBlock(hidden_size, num_heads, mlp_ratio=mlp_ratio, dtype=dtype, rngs=rngs)
                for _ in range(depth)
            ]
        )
        self.final_layer = DiTFinalLayer(
            hidden_size, patch_size * patch_size * self.out_channels, dtype=dtype, rngs=rngs
        )

    def _check_inputs(self, x: jax.Array, t: jax.Array, y: jax.Array) -> None:
        check_inputs(x, t, y, in_channels=self.in_channels, patch_size=self.patch_size)

    def embed_time(self, t: jax.Array) -> jax.Array:
        """``t: (B,)`` in [0, 1] -> ``(B, D)`` (the embedder sees ``t * time_scale``)."""
        return self.t_embedder(t.astype(jnp.float32) * self.time_scale)

    def forward_tokens(
        self, x: jax.Array, c: jax.Array, *, return_features: bool = False
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Patchify, run the blocks conditioned on ``c: (B, D)``, project and unpatchify."""
        batch, height, width, _ = x.shape
        grid = (height // self.patch_size, width // self.patch_size)
        tokens = self.x_embedder(x.astype(self.dtype)).astype(jnp.float32)
        tokens = tokens + sincos_pos_embed_2d(self.hidden_size, *grid)[None]
        tokens, per_block = run_blocks(
            self.blocks,
            tokens,
            c.astype(self.dtype),
            scan=self.scan_blocks,
            remat=self.remat,
            return_features=return_features,
        )
        out = unpatchify(self.final_layer(tokens, c.astype(self.dtype)), grid, self.patch_size)
        features = {f"block_{i + 1}": feat for i, feat in enumerate(per_block)}
        return out, features

    def __call__(
        self, x: jax.Array, t: jax.Array, y: jax.Array, *, return_features: bool = False
    ) -> jax.Array | tuple[jax.Array, dict[str, jax.Array]]:
        """Predict from a noisy input.

        Args:
          x: ``(B, H, W, C)`` NHWC noisy latents.
          t: ``(B,)`` float times in [0, 1] (t = 0 data, t = 1 noise).
          y: ``(B,)`` int labels in ``[0, num_classes]``; ``num_classes`` is the null label.
          return_features: also return ``{"block_i": (B, N, D)}``, the token sequence
            after block i (1-indexed), e.g. for REPA.

        Returns:
          ``(B, H, W, C_out)`` float32 (``C_out = 2C`` with ``learn_sigma``), and the
          features dict when ``return_features``.
        """
        self._check_inputs(x, t, y)
        c = self.embed_time(t) + self.y_embedder(y)
        out, features = self.forward_tokens(x, c, return_features=return_features)
        return (out, features) if return_features else out


def dit_from_preset(name: str, **kwargs) -> DiT:
    """Build a DiT from a preset name of :data:`DIT_PRESETS` ("DiT-S/2" ... "DiT-XL/8").

    ``kwargs`` are the remaining :class:`DiT` arguments (``input_size``, ``in_channels``,
    ``rngs``, ...); they may not repeat a preset field.
    """
    if name not in DIT_PRESETS:
        raise ValueError(f"unknown DiT preset {name!r}; valid: {', '.join(DIT_PRESETS)}")
    clash = set(DIT_PRESETS[name]) & set(kwargs)
    if clash:
        raise ValueError(f"preset {name!r} already sets {sorted(clash)}; drop them from kwargs")
    return DiT(**DIT_PRESETS[name], **kwargs)
