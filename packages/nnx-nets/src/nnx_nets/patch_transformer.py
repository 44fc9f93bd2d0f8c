"""One patch-transformer trunk for the DiT family, with pluggable blocks and time embedders.

Every network of the family (DiT, MeanFlowDiT, LightningDiT, DiT-DH) is this pipeline over an
NHWC input ``x: (B, H, W, C)`` with patch size ``p`` and grid ``(h, w) = (H/p, W/p)``:

    tokens = PatchEmbed(x) + sincos_2d(h, w)                          (B, h*w, D) residual
    c      = t_emb(time_scale * t) + y_emb(y)                         (B, D) compute
    tokens = block_depth(... block_1(tokens, c, rope) ...)            (B, h*w, D) residual
    out    = unpatchify(final_layer(tokens, c), (h, w), p)            (B, H, W, C_out) float32

(Peebles & Xie 2023, fig. 3). A network differs only in its parts (`TrunkParts`): the time
embedder, the block, the final layer, whether the blocks get 2-D axial RoPE tables, and for
DiT-DH further modules (its head) built around the trunk. The blocks run through
`nnx_nets.block_stack.run_blocks` (scan, the remat policy and the activation sharding hints of
`nnx_nets.activation_axes`). Dtypes follow one `nnx_nets.precision.Precision` policy: the
token stream in its ``residual_dtype``, the condition and the blocks' matmuls in its
``compute_dtype``, the time embedding, norms, softmax and the output in float32. Parameters
are created in a fixed order (token embedder, extra embedders, time embedder, label embedder,
blocks, head modules, final layer), which with the attribute names fixes both the
``nnx.state`` tree and the initial values for a seed.

Presets: one rule for the family, `PatchTransformer.from_preset`: a preset fixes its fields
(widths, depths, heads, patch size); keyword arguments give every other constructor argument
and may not repeat a preset field (call the constructor to change a size).

Time convention (CONVENTIONS.md): t in [0, 1], t = 0 data, t = 1 noise.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import ClassVar, Literal, Self

import jax
import jax.numpy as jnp
from flax import nnx

from nnx_nets.block_stack import run_blocks
from nnx_nets.embeddings import (
    GaussianFourierEmbedder,
    LabelEmbedder,
    PatchEmbed,
    TimestepEmbedder,
    sincos_pos_embed_2d,
    unpatchify,
)
from nnx_nets.precision import Precision, RematPolicy, remat_policy, resolve_precision
from nnx_nets.rope import axial_rope_tables

TimeEmbedding = Literal["sinusoidal", "gaussian_fourier"]

ModuleFactory = Callable[[nnx.Rngs], nnx.Module]
ModulesFactory = Callable[[nnx.Rngs], dict[str, nnx.Module | None]]


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


def make_time_embedder(
    kind: TimeEmbedding,
    hidden_size: int,
    *,
    freq_shift: float = 0.0,
    rngs: nnx.Rngs,
) -> TimestepEmbedder | GaussianFourierEmbedder:
    """The time embedder named ``kind``, ``(B,) -> (B, hidden_size)``, float32 under every
    precision policy.

    "sinusoidal": DiT's 256 sin-cos features and an MLP (``freq_shift`` 1 for diffusers);
    "gaussian_fourier": RAE's 2 x 256 random Fourier features and an MLP.
    """
    match kind:
        case "sinusoidal":
            return TimestepEmbedder(hidden_size, freq_shift=freq_shift, rngs=rngs)
        case "gaussian_fourier":
            return GaussianFourierEmbedder(hidden_size, rngs=rngs)
        case _:
            raise ValueError(
                f"unknown time_embedding {kind!r}; valid: 'sinusoidal', 'gaussian_fourier'"
            )


@dataclasses.dataclass(frozen=True)
class TrunkParts:
    """The pluggable parts of a `PatchTransformer`; each factory takes the ``nnx.Rngs``.

    Attributes:
      time_embedder: builds ``t_embedder``, ``(B,) -> (B, D)``.
      block: builds one block ``(x (B, N, D), c, *, rope) -> (B, N, D)``; called ``depth``
        times for ``blocks``.
      final_layer: builds ``final_layer``, ``(tokens, c) -> (B, N, p*p*C_out)`` float32.
      rope_head_dim: per-head width for the 2-D axial RoPE tables given to every block;
        ``None``: no RoPE (the blocks get ``rope=None``).
      token_embedder: attribute name of the trunk's patch embedding.
      extra_embedders: further modules built right after the patch embedding, by name.
      head: further modules built after the blocks and before ``final_layer``, by name.
    """

    time_embedder: ModuleFactory
    block: ModuleFactory
    final_layer: ModuleFactory
    rope_head_dim: int | None = None
    token_embedder: str = "x_embedder"
    extra_embedders: ModulesFactory | None = None
    head: ModulesFactory | None = None


class PatchTransformer(nnx.Module):
    """The trunk: patchify -> position table -> blocks -> final layer -> unpatchify.

    Subclasses (`~nnx_nets.DiT`, `~nnx_nets.LightningDiT`, `~nnx_nets.DiTDH`) name their
    constructor arguments and pass their parts here; call as ``model(x, t, y)``.

    Args:
      input_size: latent height = width the network is built for; other sizes divisible by
        ``patch_size`` also run (the position table is built for the actual grid).
      patch_size: ``p``.
      in_channels: ``C`` of the NHWC input.
      out_channels: ``C_out`` of the output.
      hidden_size: token width ``D`` of the trunk.
      depth: number of trunk blocks.
      num_classes: real classes; label ``num_classes`` is the null label.
      time_scale: the time embedder sees ``t * time_scale``.
      precision: the dtype policy (`~nnx_nets.precision.Precision` or its name).
      remat: what each block keeps for the backward pass: "none", "dots_saveable" or "full"
        (`nnx_nets.precision.REMAT_POLICIES`; True = "full", False = "none").
      scan_blocks: run the blocks under one ``jax.lax.scan`` (same parameter layout).
      parts: the pluggable parts.
      rngs: initialisation.
    """

    PRESETS: ClassVar[dict[str, dict[str, int]]] = {}
    PRESET_FAMILY: ClassVar[str] = "patch-transformer"

    def __init__(
        self,
        *,
        input_size: int,
        patch_size: int,
        in_channels: int,
        out_channels: int,
        hidden_size: int,
        depth: int,
        num_classes: int,
        time_scale: float,
        precision: Precision | str,
        remat: RematPolicy | bool,
        scan_blocks: bool,
        parts: TrunkParts,
        rngs: nnx.Rngs,
    ) -> None:
        if input_size % patch_size:
            raise ValueError(f"input_size {input_size} is not divisible by patch_size {patch_size}")
        self.input_size = input_size
        self.patch_size = patch_size
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.hidden_size = hidden_size
        self.num_classes = num_classes
        self.time_scale = time_scale
        self.precision = resolve_precision(precision)
        self.dtype = dtype = self.precision.compute_dtype
        self.remat = remat_policy(remat)
        self.scan_blocks = scan_blocks
        self.rope_head_dim = parts.rope_head_dim
        embedder = PatchEmbed(in_channels, hidden_size, patch_size, dtype=dtype, rngs=rngs)
        setattr(self, parts.token_embedder, embedder)
        self._set_modules(parts.extra_embedders, rngs)
        self.t_embedder = parts.time_embedder(rngs)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size, dtype=dtype, rngs=rngs)
        self.blocks = nnx.List([parts.block(rngs) for _ in range(depth)])
        self._set_modules(parts.head, rngs)
        self.final_layer = parts.final_layer(rngs)
        if parts.rope_head_dim is not None:
            axial_rope_tables(parts.rope_head_dim, 1, 1)  # validates the head width early

    def _set_modules(self, factory: ModulesFactory | None, rngs: nnx.Rngs) -> None:
        for name, module in (factory(rngs) if factory is not None else {}).items():
            setattr(self, name, module)

    @classmethod
    def from_preset(cls, name: str, **kwargs) -> Self:
        """Build ``cls`` from ``cls.PRESETS[name]``; the one preset rule of the family.

        The preset fixes its fields (widths, depths, heads, patch size); ``kwargs`` are the
        remaining constructor arguments (``input_size``, ``in_channels``, ``rngs``, ...) and
        may not repeat a preset field (call the constructor to change a size).
        """
        if name not in cls.PRESETS:
            raise ValueError(
                f"unknown {cls.PRESET_FAMILY} preset {name!r}; valid: {', '.join(cls.PRESETS)}"
            )
        clash = set(cls.PRESETS[name]) & set(kwargs)
        if clash:
            raise ValueError(f"preset {name!r} already sets {sorted(clash)}; drop them from kwargs")
        return cls(**cls.PRESETS[name], **kwargs)

    def _check_inputs(self, x: jax.Array, t: jax.Array, y: jax.Array) -> None:
        check_inputs(x, t, y, in_channels=self.in_channels, patch_size=self.patch_size)

    def grid(self, x: jax.Array) -> tuple[int, int]:
        """The token grid ``(H / p, W / p)`` of an NHWC input."""
        return x.shape[1] // self.patch_size, x.shape[2] // self.patch_size

    def embed_time(self, t: jax.Array) -> jax.Array:
        """``t: (B,)`` in [0, 1] -> ``(B, D)`` (the embedder sees ``t * time_scale``)."""
        return self.t_embedder(t.astype(jnp.float32) * self.time_scale)

    def condition(self, t: jax.Array, y: jax.Array) -> jax.Array:
        """The blocks' condition ``c = t_emb(time_scale * t) + y_emb(y)``, ``(B, D)``."""
        return self.embed_time(t) + self.y_embedder(y)

    def embed_tokens(
        self, embedder: PatchEmbed, x: jax.Array, grid: tuple[int, int], *, pos: bool = True
    ) -> jax.Array:
        """``x: (B, H, W, C)`` -> tokens ``(B, h*w, width)`` (+ the sin-cos table, added in
        float32) in the policy's residual dtype."""
        tokens = embedder(x.astype(self.dtype)).astype(jnp.float32)
        if pos:
            tokens = tokens + sincos_pos_embed_2d(tokens.shape[-1], *grid)[None]
        return tokens.astype(self.precision.residual_dtype)

    def run_stack(
        self,
        blocks: nnx.List,
        tokens: jax.Array,
        c: jax.Array,
        grid: tuple[int, int],
        *,
        rope_head_dim: int | None,
        return_features: bool = False,
    ) -> tuple[jax.Array, list[jax.Array]]:
        """Run ``blocks`` on ``tokens: (B, N, width)`` with the model's scan / remat policy."""
        rope = None if rope_head_dim is None else axial_rope_tables(rope_head_dim, *grid)
        return run_blocks(
            blocks,
            tokens,
            c,
            rope=rope,
            scan=self.scan_blocks,
            remat=self.remat,
            return_features=return_features,
        )

    def forward_tokens(
        self, x: jax.Array, c: jax.Array, *, return_features: bool = False
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Patchify, run the blocks conditioned on ``c: (B, D)``, project and unpatchify.

        Returns ``((B, H, W, C_out) float32, {"block_i": (B, N, D)})`` (features empty
        unless ``return_features``).
        """
        grid = self.grid(x)
        tokens = self.embed_tokens(self.x_embedder, x, grid)
        c = c.astype(self.dtype)
        tokens, per_block = self.run_stack(
            self.blocks,
            tokens,
            c,
            grid,
            rope_head_dim=self.rope_head_dim,
            return_features=return_features,
        )
        out = unpatchify(self.final_layer(tokens, c), grid, self.patch_size)
        return out, {f"block_{i + 1}": feat for i, feat in enumerate(per_block)}

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
          ``(B, H, W, C_out)`` float32, and the features dict when ``return_features``.
        """
        self._check_inputs(x, t, y)
        out, features = self.forward_tokens(
            x, self.condition(t, y), return_features=return_features
        )
        return (out, features) if return_features else out
