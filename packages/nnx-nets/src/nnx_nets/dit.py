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
from nnx_nets.initializers import zeros
from nnx_nets.mlp import Mlp
from nnx_nets.norms import layer_norm
from nnx_nets.patch_transformer import (
    PatchTransformer,
    TrunkParts,
    check_inputs,
    make_time_embedder,
)
from nnx_nets.precision import Precision, RematPolicy, resolve_precision

__all__ = ["DIT_PRESETS", "DiT", "DiTBlock", "DiTFinalLayer", "check_inputs", "dit_from_preset"]

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


class DiTBlock(nnx.Module):
    """One adaLN-Zero transformer block (LayerNorm without affine, GELU-tanh MLP).

    Args:
      hidden_size: width ``D``.
      num_heads: attention heads.
      mlp_ratio: MLP width / ``D``.
      precision: the dtype policy (its ``compute_dtype`` for the matmuls).
      rngs: initialisation.
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        *,
        mlp_ratio: float = 4.0,
        precision: Precision | str = "float32",
        rngs: nnx.Rngs,
    ) -> None:
        dtype = resolve_precision(precision).compute_dtype
        self.attn = SelfAttention(hidden_size, num_heads, dtype=dtype, rngs=rngs)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio), dtype=dtype, rngs=rngs)
        self.adaln = AdaLNModulation(hidden_size, 6, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array, c: jax.Array, *, rope=None) -> jax.Array:
        """``x: (B, N, D)`` residual stream, ``c: (B, D)`` -> ``(B, N, D)`` in the dtype of ``x``."""
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
      precision: the dtype policy (its ``compute_dtype`` for the matmuls; output float32).
      rngs: initialisation.
    """

    def __init__(
        self,
        hidden_size: int,
        out_features: int,
        *,
        cond_size: int | None = None,
        precision: Precision | str = "float32",
        rngs: nnx.Rngs,
    ) -> None:
        dtype = resolve_precision(precision).compute_dtype
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


class DiT(PatchTransformer):
    """Class-conditional Diffusion Transformer (facebookresearch/DiT) on the shared trunk.

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
      precision: the dtype policy, a `~nnx_nets.precision.Precision` or its name
        ("float32", "bfloat16"): parameters float32; matmuls and the token stream in the
        policy's dtypes; time embedding, norms, softmax and the output float32.
      remat: what each block keeps for the backward pass: "none", "dots_saveable", "full"
        (True = "full").
      scan_blocks: run the blocks under one ``jax.lax.scan`` (faster compiles; with
        ``remat`` much less activation memory). Parameters are laid out the same way.
      rngs: initialisation (DiT's ``initialize_weights``: a fresh network outputs 0).

    Call as ``model(x, t, y, return_features=False)``: see `PatchTransformer.__call__`.
    """

    PRESETS = DIT_PRESETS
    PRESET_FAMILY = "DiT"

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
        precision: Precision | str = "float32",
        remat: RematPolicy | bool = False,
        scan_blocks: bool = False,
        rngs: nnx.Rngs,
    ) -> None:
        out_channels = 2 * in_channels if learn_sigma else in_channels
        parts = TrunkParts(
            time_embedder=lambda rngs: make_time_embedder(
                "sinusoidal", hidden_size, freq_shift=time_freq_shift, rngs=rngs
            ),
            block=lambda rngs: DiTBlock(
                hidden_size, num_heads, mlp_ratio=mlp_ratio, precision=precision, rngs=rngs
            ),
            final_layer=lambda rngs: DiTFinalLayer(
                hidden_size,
                patch_size * patch_size * out_channels,
                precision=precision,
                rngs=rngs,
            ),
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


def dit_from_preset(name: str, **kwargs) -> DiT:
    """Alias of `DiT.from_preset`: a :data:`DIT_PRESETS` name ("DiT-S/2" ... "DiT-XL/8")."""
    return DiT.from_preset(name, **kwargs)
