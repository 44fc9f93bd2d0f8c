"""MeanFlowDiT: a DiT with a second time input for MeanFlow's average velocity.

MeanFlow (Geng et al. 2025) predicts the average velocity u(x_t, r, t) over [r, t]. The
network is a DiT whose condition adds an embedding of the interval length t - r through
a copy of the time embedder (``dt_embedder``):

    c = t_emb(time_scale * t) + dt_emb(time_scale * (t - r)) + y_emb(y).

Two-time convention (CONVENTIONS.md): ``0 <= r <= t <= 1``, t = 0 data, t = 1 noise;
``x_r = x_t + (r - t) u``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from nnx_nets.dit import DiT
from nnx_nets.embeddings import TimestepEmbedder
from nnx_nets.precision import Precision, RematPolicy


class MeanFlowDiT(DiT):
    """DiT with the extra ``dt_embedder`` of MeanFlow; call as ``model(x, r, t, y)``.

    Takes exactly the arguments of :class:`DiT` (and its presets, :data:`DIT_PRESETS`,
    through ``MeanFlowDiT.from_preset``). Parameter paths are DiT's plus
    ``dt_embedder.linear_{1,2}``, so DiT weights load into it with a DiT spec plus the
    two ``dt_embedder`` layers.
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
        precision: Precision | str = "float32",
        remat: RematPolicy | bool = False,
        scan_blocks: bool = False,
        rngs: nnx.Rngs,
    ) -> None:
        super().__init__(
            input_size=input_size,
            patch_size=patch_size,
            in_channels=in_channels,
            hidden_size=hidden_size,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            num_classes=num_classes,
            learn_sigma=learn_sigma,
            time_scale=time_scale,
            time_freq_shift=time_freq_shift,
            precision=precision,
            remat=remat,
            scan_blocks=scan_blocks,
            rngs=rngs,
        )
        # float32 like the time embedding (`nnx_nets.precision`).
        self.dt_embedder = TimestepEmbedder(hidden_size, freq_shift=time_freq_shift, rngs=rngs)

    def __call__(
        self,
        x: jax.Array,
        r: jax.Array,
        t: jax.Array,
        y: jax.Array,
        *,
        return_features: bool = False,
    ) -> jax.Array | tuple[jax.Array, dict[str, jax.Array]]:
        """Predict the average velocity over [r, t].

        Args:
          x: ``(B, H, W, C)`` NHWC noisy latents x_t.
          r: ``(B,)`` start times, ``0 <= r <= t``.
          t: ``(B,)`` current times in [0, 1] (t = 0 data, t = 1 noise).
          y: ``(B,)`` int labels; ``num_classes`` is the null label.
          return_features: also return ``{"block_i": (B, N, D)}``.

        Returns:
          ``(B, H, W, C_out)`` float32, and the features dict when asked.
        """
        self._check_inputs(x, t, y)
        if r.shape != t.shape:
            raise ValueError(f"r must have the shape of t {t.shape}, got {r.shape}")
        dt = t.astype(jnp.float32) - r.astype(jnp.float32)
        c = self.embed_time(t) + self.dt_embedder(dt * self.time_scale) + self.y_embedder(y)
        out, features = self.forward_tokens(x, c, return_features=return_features)
        return (out, features) if return_features else out


def meanflow_dit_from_preset(name: str, **kwargs) -> MeanFlowDiT:
    """Alias of `MeanFlowDiT.from_preset`: a DiT preset name ("DiT-B/2", ...; :data:`DIT_PRESETS`)."""
    return MeanFlowDiT.from_preset(name, **kwargs)
