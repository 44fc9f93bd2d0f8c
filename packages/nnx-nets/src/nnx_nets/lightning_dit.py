"""LightningDiT (Yao et al. 2025, hustvl/LightningDiT): DiT with modern transformer parts.

Differences from DiT (paper sec. 4 "LightningDiT"):
- RMSNorm with a learnable weight (float32) instead of LayerNorm, also before the final
  projection;
- SwiGLU feed-forward of width ``int(2/3 * 4D)``;
- 2-D axial RoPE (EVA-02 style) on queries and keys, on top of the absolute sin-cos table;
- optional QK-norm (separate ``q_norm`` and ``k_norm`` RMSNorms);
- adaLN with shifts (6 chunks) or without (4 chunks).

The published configuration (``lightningdit_xl_vavae_f16d32.yaml``) is XL/1 on 32-channel
VA-VAE latents with SwiGLU, RoPE and RMSNorm on, QK-norm and ``wo_shift`` off. Only the
RMSNorm + SwiGLU + RoPE combination is built here (the others are DiT).

Time convention (CONVENTIONS.md): t in [0, 1], t = 0 data, t = 1 noise. LightningDiT's
own code runs t = 1 at the data; converting is the objective's job. The time embedder
is DiT's sinusoidal one (hustvl checkpoints) or RAE's Gaussian-Fourier one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from nnx_nets.adaln import AdaLNModulation, modulate
from nnx_nets.attention import SelfAttention
from nnx_nets.initializers import zeros
from nnx_nets.mlp import SwiGLU, swiglu_hidden_size
from nnx_nets.norms import RMSNorm
from nnx_nets.patch_transformer import (
    PatchTransformer,
    TimeEmbedding,
    TrunkParts,
    make_time_embedder,
)
from nnx_nets.precision import Precision, RematPolicy, resolve_precision

__all__ = [
    "LIGHTNING_DIT_PRESETS",
    "LightningDiT",
    "LightningDiTBlock",
    "LightningFinalLayer",
    "TimeEmbedding",
    "lightning_dit_from_preset",
    "make_time_embedder",
]

# name -> (hidden_size, depth, num_heads, patch_size); hustvl/LightningDiT models/lightningdit.py.
LIGHTNING_DIT_PRESETS: dict[str, dict[str, int]] = {
    name: {"hidden_size": hidden, "depth": depth, "num_heads": heads, "patch_size": patch}
    for name, (hidden, depth, heads, patch) in {
        "LightningDiT-B/1": (768, 12, 12, 1),
        "LightningDiT-B/2": (768, 12, 12, 2),
        "LightningDiT-L/2": (1024, 24, 16, 2),
        "LightningDiT-XL/1": (1152, 28, 16, 1),
        "LightningDiT-XL/2": (1152, 28, 16, 2),
        "LightningDiT-1p0B/1": (1536, 24, 24, 1),
        "LightningDiT-1p0B/2": (1536, 24, 24, 2),
        "LightningDiT-1p6B/1": (1792, 28, 28, 1),
        "LightningDiT-1p6B/2": (1792, 28, 28, 2),
    }.items()
}


class LightningDiTBlock(nnx.Module):
    """RMSNorm / RoPE attention / SwiGLU block with adaLN, conditioned globally or per token.

    Args:
      hidden_size: width ``D``.
      num_heads: attention heads.
      mlp_ratio: sets the SwiGLU width ``int(2/3 * int(D * mlp_ratio))``.
      qk_norm: separate RMSNorms on each head's queries and keys.
      adaln_shift: 6 adaLN chunks (shift, scale, gate x 2) if True, else 4 (no shifts).
      precision: the dtype policy (its ``compute_dtype`` for the matmuls).
      rngs: initialisation.
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        *,
        mlp_ratio: float = 4.0,
        qk_norm: bool = False,
        adaln_shift: bool = True,
        precision: Precision | str = "float32",
        rngs: nnx.Rngs,
    ) -> None:
        dtype = resolve_precision(precision).compute_dtype
        self.adaln_shift = adaln_shift
        self.norm1 = RMSNorm(hidden_size, rngs=rngs)
        self.attn = SelfAttention(hidden_size, num_heads, qk_norm=qk_norm, dtype=dtype, rngs=rngs)
        self.norm2 = RMSNorm(hidden_size, rngs=rngs)
        self.mlp = SwiGLU(
            hidden_size, swiglu_hidden_size(hidden_size, mlp_ratio), dtype=dtype, rngs=rngs
        )
        self.adaln = AdaLNModulation(hidden_size, 6 if adaln_shift else 4, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array, c: jax.Array, *, rope=None) -> jax.Array:
        """``x: (B, N, D)`` residual stream, ``c: (B, D)`` or ``(B, N, D)``; ``rope = (cos, sin)``.

        Returns ``(B, N, D)`` in the dtype of ``x``.
        """
        if self.adaln_shift:
            shift1, scale1, gate1, shift2, scale2, gate2 = self.adaln(c)
        else:
            (scale1, gate1, scale2, gate2), shift1, shift2 = self.adaln(c), None, None
        h = modulate(self.norm1(x).astype(c.dtype), shift1, scale1)
        x = x + gate1 * self.attn(h, rope)
        h = modulate(self.norm2(x).astype(c.dtype), shift2, scale2)
        return x + gate2 * self.mlp(h)


class LightningFinalLayer(nnx.Module):
    """RMSNorm, adaLN (shift, scale), zero-initialised Linear to ``p*p*C_out`` per token.

    Args:
      hidden_size: width ``D``.
      out_features: ``p * p * C_out``.
      precision: the dtype policy (its ``compute_dtype`` for the matmuls; output float32).
      rngs: initialisation.
    """

    def __init__(
        self,
        hidden_size: int,
        out_features: int,
        *,
        precision: Precision | str = "float32",
        rngs: nnx.Rngs,
    ) -> None:
        dtype = resolve_precision(precision).compute_dtype
        self.norm = RMSNorm(hidden_size, rngs=rngs)
        self.adaln = AdaLNModulation(hidden_size, 2, dtype=dtype, rngs=rngs)
        self.linear = nnx.Linear(
            hidden_size,
            out_features,
            dtype=dtype,
            kernel_init=zeros,
            kernel_metadata={"logical_axes": ("embed", "channels")},
            bias_metadata={"logical_axes": ("channels",)},
            rngs=rngs,
        )

    def __call__(self, x: jax.Array, c: jax.Array) -> jax.Array:
        """``x: (B, N, D)``, ``c: (B, D)`` or ``(B, N, D)`` -> ``(B, N, out)`` float32."""
        shift, scale = self.adaln(c)
        h = modulate(self.norm(x).astype(c.dtype), shift, scale)
        return self.linear(h).astype(jnp.float32)


class LightningDiT(PatchTransformer):
    """Class-conditional LightningDiT on the shared trunk; call as ``model(x, t, y)``.

    Args:
      input_size: latent height = width (16 for 256-px images through VA-VAE f16).
      patch_size: ``p`` (1 or 2 in the presets).
      in_channels: ``C`` (32 for VA-VAE f16d32).
      hidden_size: transformer width.
      depth: number of blocks.
      num_heads: attention heads.
      mlp_ratio: MLP expansion.
      num_classes: real classes; label ``num_classes`` is the null label.
      learn_sigma: output ``2C`` channels. Upstream then drops the second half in its
        forward; here the raw ``2C`` output is returned.
      qk_norm: RMS QK-norm (off in the published checkpoints).
      adaln_shift: adaLN with shifts (upstream ``wo_shift=False``, the published setting).
      time_embedding: "sinusoidal" (hustvl checkpoints) or "gaussian_fourier" (RAE's).
      time_scale: the embedder sees ``t * time_scale``.
      precision: the dtype policy (`~nnx_nets.precision.Precision` or its name): params
        float32; norms, RoPE, softmax, the time embedding and the output float32.
      remat: what each block keeps for the backward pass: "none", "dots_saveable", "full"
        (True = "full").
      scan_blocks: run the blocks under one ``jax.lax.scan``.
      rngs: initialisation (a fresh network outputs exactly 0).

    Call as ``model(x, t, y, return_features=False)``: see `PatchTransformer.__call__`.
    """

    PRESETS = LIGHTNING_DIT_PRESETS
    PRESET_FAMILY = "LightningDiT"

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
        qk_norm: bool = False,
        adaln_shift: bool = True,
        time_embedding: TimeEmbedding = "sinusoidal",
        time_scale: float = 1.0,
        precision: Precision | str = "float32",
        remat: RematPolicy | bool = False,
        scan_blocks: bool = False,
        rngs: nnx.Rngs,
    ) -> None:
        out_channels = 2 * in_channels if learn_sigma else in_channels
        head_dim = hidden_size // num_heads
        parts = TrunkParts(
            time_embedder=lambda rngs: make_time_embedder(time_embedding, hidden_size, rngs=rngs),
            block=lambda rngs: LightningDiTBlock(
                hidden_size,
                num_heads,
                mlp_ratio=mlp_ratio,
                qk_norm=qk_norm,
                adaln_shift=adaln_shift,
                precision=precision,
                rngs=rngs,
            ),
            final_layer=lambda rngs: LightningFinalLayer(
                hidden_size,
                patch_size * patch_size * out_channels,
                precision=precision,
                rngs=rngs,
            ),
            rope_head_dim=head_dim,
        )
        super().__init__(
            input_size=input_size,
            patch_size=patch_size,
            in_channels=in_channels,
            out_channels=out_channels,
            hidden_size=hidden_size,
            depth=depth,
            num_classes=num_classes,
            time_scale=time_scale,
            precision=precision,
            remat=remat,
            scan_blocks=scan_blocks,
            parts=parts,
            rngs=rngs,
        )
        self.head_dim = head_dim


def lightning_dit_from_preset(name: str, **kwargs) -> LightningDiT:
    """Alias of `LightningDiT.from_preset`: a :data:`LIGHTNING_DIT_PRESETS` name."""
    return LightningDiT.from_preset(name, **kwargs)
