"""DiT-DH: a DiT trunk with a wide, shallow head (RAE stage 2, ``DiTwDDTHead``).

Zheng et al. (2025), "Diffusion Transformers with Representation Autoencoders", sec. 5:
the trunk is a LightningDiT-style transformer over the noisy latent; its output tokens
condition, per token, a wide and shallow head that reads the noisy latent again:

    c = SiLU(t_emb + y_emb)                             (global trunk condition)
    s = trunk(PatchEmbed_s(x) + pos, c)                 (RoPE + sin-cos positions)
    s = Proj(SiLU(t_emb + s))                           (per-token head condition)
    h = head(PatchEmbed_x(x), s)                        (RoPE only, adaLN per token)
    out = FinalLayer(h, s)

Blocks are RMSNorm / SwiGLU / RoPE / adaLN-with-shift / qkv-bias, without QK-norm; the
time embedding is Gaussian-Fourier. Each block's adaLN applies its own SiLU, so the
trunk sees SiLU(SiLU(t_emb + y_emb)) exactly as upstream. When trunk and head widths
are equal the projection is the identity (upstream ``nn.Identity``: no parameters).

Time convention (CONVENTIONS.md): t in [0, 1], t = 0 data, t = 1 noise; RAE's own code
runs the other way, which the objective converts.
"""

from __future__ import annotations

import functools

import jax
from flax import nnx

from nnx_nets.activation_axes import constrain_tokens
from nnx_nets.embeddings import GaussianFourierEmbedder, PatchEmbed, unpatchify
from nnx_nets.initializers import xavier_uniform
from nnx_nets.lightning_dit import LightningDiTBlock, LightningFinalLayer
from nnx_nets.patch_transformer import PatchTransformer, TrunkParts
from nnx_nets.precision import Precision, RematPolicy, resolve_precision
from nnx_nets.rope import axial_rope_tables

# RAE configs/stage2/training/ImageNet256/DiTDH-{S,XL}_DINOv2-B.yaml.
DIT_DH_PRESETS: dict[str, dict[str, int]] = {
    "DiTDH-S": {
        "hidden_size": 384,
        "depth": 12,
        "num_heads": 6,
        "head_hidden_size": 2048,
        "head_depth": 2,
        "head_num_heads": 16,
        "patch_size": 1,
    },
    "DiTDH-XL": {
        "hidden_size": 1152,
        "depth": 28,
        "num_heads": 16,
        "head_hidden_size": 2048,
        "head_depth": 2,
        "head_num_heads": 16,
        "patch_size": 1,
    },
}


def _ddt_head(
    hidden_size: int,
    head_hidden_size: int,
    head_depth: int,
    head_num_heads: int,
    rngs: nnx.Rngs,
    *,
    mlp_ratio: float,
    precision: Precision | str,
) -> dict[str, nnx.Module | None]:
    """The head's modules after the trunk blocks: ``s_projector`` and ``head_blocks``."""
    dtype = resolve_precision(precision).compute_dtype
    projector = None
    if hidden_size != head_hidden_size:  # else upstream's nn.Identity: no parameters
        projector = nnx.Linear(
            hidden_size,
            head_hidden_size,
            dtype=dtype,
            kernel_init=xavier_uniform,
            kernel_metadata={"logical_axes": (None, "embed")},
            bias_metadata={"logical_axes": ("embed",)},
            rngs=rngs,
        )
    blocks = [
        LightningDiTBlock(
            head_hidden_size, head_num_heads, mlp_ratio=mlp_ratio, precision=precision, rngs=rngs
        )
        for _ in range(head_depth)
    ]
    return {"s_projector": projector, "head_blocks": nnx.List(blocks)}


class DiTDH(PatchTransformer):
    """DiT with a wide DDT head on the shared trunk; call as ``model(x, t, y)``.

    The trunk's patch embedding is ``s_embedder``; the head (``x_embedder``,
    ``s_projector``, ``head_blocks``) plugs into the trunk as its extra embedders and head
    modules, and ``final_layer`` works at the head width.

    Args:
      input_size: latent height = width (16 for DINOv2-B RAE latents at 256 px).
      patch_size: ``p`` (1 upstream) for both the trunk and the head. Upstream's head patch
        embedding takes ``C * p * p`` input channels, which only works for p = 1; here both
        embeddings read the ``C``-channel input, identical at p = 1.
      in_channels: ``C`` (768 for DINOv2-B latents).
      hidden_size: trunk width (XL: 1152).
      depth: trunk blocks (XL: 28).
      num_heads: trunk attention heads (XL: 16).
      head_hidden_size: head width (2048).
      head_depth: head blocks (2).
      head_num_heads: head attention heads (16).
      mlp_ratio: SwiGLU width ``int(2/3 * int(D * mlp_ratio))`` in both parts.
      num_classes: real classes; label ``num_classes`` is the null label.
      time_scale: the embedder sees ``t * time_scale``.
      precision: the dtype policy (`~nnx_nets.precision.Precision` or its name): params
        float32; norms, RoPE, softmax, the time embedding and the output float32.
      remat: what each block keeps for the backward pass: "none", "dots_saveable", "full"
        (True = "full").
      scan_blocks: run the trunk blocks (and the head blocks) under ``jax.lax.scan``.
      rngs: initialisation (a fresh network outputs exactly 0).
    """

    PRESETS = DIT_DH_PRESETS
    PRESET_FAMILY = "DiT-DH"

    def __init__(
        self,
        *,
        input_size: int,
        patch_size: int,
        in_channels: int,
        hidden_size: int,
        depth: int,
        num_heads: int,
        head_hidden_size: int,
        head_depth: int,
        head_num_heads: int,
        mlp_ratio: float = 4.0,
        num_classes: int = 1000,
        time_scale: float = 1.0,
        precision: Precision | str = "float32",
        remat: RematPolicy | bool = False,
        scan_blocks: bool = False,
        rngs: nnx.Rngs,
    ) -> None:
        block = dict(mlp_ratio=mlp_ratio, precision=precision)
        dtype = resolve_precision(precision).compute_dtype
        head = functools.partial(
            _ddt_head, hidden_size, head_hidden_size, head_depth, head_num_heads, **block
        )
        parts = TrunkParts(
            time_embedder=lambda rngs: GaussianFourierEmbedder(hidden_size, rngs=rngs),
            block=lambda rngs: LightningDiTBlock(hidden_size, num_heads, **block, rngs=rngs),
            final_layer=lambda rngs: LightningFinalLayer(
                head_hidden_size,
                patch_size * patch_size * in_channels,
                precision=precision,
                rngs=rngs,
            ),
            rope_head_dim=hidden_size // num_heads,
            token_embedder="s_embedder",
            extra_embedders=lambda rngs: {
                "x_embedder": PatchEmbed(
                    in_channels, head_hidden_size, patch_size, dtype=dtype, rngs=rngs
                )
            },
            head=head,
        )
        super().__init__(
            input_size=input_size,
            patch_size=patch_size,
            in_channels=in_channels,
            out_channels=in_channels,
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
        self.head_hidden_size = head_hidden_size
        self.head_dim = hidden_size // num_heads
        self.head_head_dim = head_hidden_size // head_num_heads
        axial_rope_tables(self.head_head_dim, 1, 1)  # validates the head's head width early

    def __call__(
        self, x: jax.Array, t: jax.Array, y: jax.Array, *, return_features: bool = False
    ) -> jax.Array | tuple[jax.Array, dict[str, jax.Array]]:
        """Predict from a noisy latent.

        Args:
          x: ``(B, H, W, C)`` NHWC noisy latents.
          t: ``(B,)`` float times in [0, 1] (t = 0 data, t = 1 noise).
          y: ``(B,)`` int labels in ``[0, num_classes]``.
          return_features: also return ``{"block_i": ...}`` for trunk blocks and
            ``{"head_block_j": ...}`` for head blocks (1-indexed), each ``(B, N, width)``.

        Returns:
          ``(B, H, W, C)`` float32, and the features dict when asked.
        """
        self._check_inputs(x, t, y)
        grid = self.grid(x)
        t_emb = self.embed_time(t)
        c = jax.nn.silu(t_emb + self.y_embedder(y))
        s = self.embed_tokens(self.s_embedder, x, grid)
        s, trunk_features = self.run_stack(
            self.blocks, s, c, grid, rope_head_dim=self.head_dim, return_features=return_features
        )
        s = jax.nn.silu(t_emb[:, None, :] + s).astype(self.dtype)
        if self.s_projector is not None:
            s = self.s_projector(s)
        s = constrain_tokens(s)  # the head's per-token condition, split like its tokens

        h = self.embed_tokens(self.x_embedder, x, grid, pos=False)
        h, head_features = self.run_stack(
            self.head_blocks,
            h,
            s,
            grid,
            rope_head_dim=self.head_head_dim,
            return_features=return_features,
        )
        out = unpatchify(self.final_layer(h, s), grid, self.patch_size)
        if not return_features:
            return out
        features = {f"block_{i + 1}": f for i, f in enumerate(trunk_features)}
        features.update({f"head_block_{j + 1}": f for j, f in enumerate(head_features)})
        return out, features


def dit_dh_from_preset(name: str, **kwargs) -> DiTDH:
    """Alias of `DiTDH.from_preset`: a :data:`DIT_DH_PRESETS` name ("DiTDH-S", "DiTDH-XL")."""
    return DiTDH.from_preset(name, **kwargs)
