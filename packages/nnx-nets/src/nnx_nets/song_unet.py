"""EDM (Karras et al. 2022) ``SongUNet``, NHWC: the DDPM++ (VP) and NCSN++ (VE) networks.

Architecture as in NVlabs/edm ``training/networks.py`` (``SongUNet``, a reimplementation of
Song et al. 2021's DDPM++ and NCSN++), with the configurations of NVlabs/edm ``train.py``
(``--arch=ddpmpp|ncsnpp``) and the paper's Table 7:

- DDPM++ (VP): positional noise embedding (``endpoint=True``, sin/cos swapped), box
  resampling filter ``[1, 1]``, standard encoder and decoder, attention at 16x16.
- NCSN++ (VE): random Fourier noise embedding (scale 16, twice the width), FIR filter
  ``[1, 3, 3, 1]``, a "residual" encoder (an extra strided-conv path from the input).

Both: one attention head, residual sums scaled by ``sqrt(0.5)``, the embedding added as a
bias before ``norm1``, a 1x1 projection on every resampled skip; the output is a GroupNorm ->
SiLU -> conv head at full resolution (``dec['32x32_aux_*']``).

The network returns the raw ``F(c_in x, c_noise, y)``; preconditioning (VP, VE, EDM) lives in
nnx-objectives. Labels are integers in ``[0, num_classes]``, ``num_classes`` being the null
label, which maps to the all-zero label vector (upstream: ``class_labels = None``, or a
dropped label). Module names are upstream's (``enc['32x32_block0']``, ``dec['32x32_aux_norm']``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nnx_nets.block_stack import call_block
from nnx_nets.edm_layers import (
    EDMConv,
    EDMUNetBlock,
    FourierEmbedding,
    PositionalEmbedding,
    class_vectors,
    edm_group_norm,
    edm_linear,
)
from nnx_nets.vision_attention import PrecisionLike

_CIFAR10 = {
    "img_resolution": 32,
    "in_channels": 3,
    "out_channels": 3,
    "num_classes": 10,
    "model_channels": 128,
    "channel_mult": (2, 2, 2),
}
_DDPMPP = {"embedding_type": "positional", "channel_mult_noise": 1, "resample_filter": (1, 1)}
_NCSNPP = {
    "embedding_type": "fourier",
    "channel_mult_noise": 2,
    "encoder_type": "residual",
    "resample_filter": (1, 3, 3, 1),
}
# train.py: --arch=ddpmpp|ncsnpp set model_channels=128, channel_mult=[2,2,2]; the CIFAR-10
# runs use --dropout=0.13 --augment=0.12 (augment_dim=9). Table 7 of the paper.
SONG_UNET_PRESETS: dict[str, dict] = {
    "edm-cifar10-ddpmpp": {**_CIFAR10, **_DDPMPP, "dropout": 0.13, "augment_dim": 9},
    "edm-cifar10-ncsnpp": {**_CIFAR10, **_NCSNPP, "dropout": 0.13, "augment_dim": 9},
}


_TYPES = {
    (m, e, d)
    for m in ("positional", "fourier")
    for e in ("standard", "skip", "residual")
    for d in ("standard", "skip")
}


@dataclass(frozen=True)
class _SongLayout:
    """What the encoder and decoder builders share (sizes, block and init kwargs)."""

    img_resolution: int
    model_channels: int
    channel_mult: tuple[int, ...]
    num_blocks: int
    attn_resolutions: tuple[int, ...]
    emb_ch: int
    resample_filter: tuple[int, ...]
    block: dict
    init: dict
    init_zero: dict
    conv: dict


def _song_encoder(lay: _SongLayout, in_channels: int, encoder_type: str) -> dict[str, nnx.Module]:
    """``enc``: input conv, per level a down block (+ aux skip / residual path) and blocks."""
    enc: dict[str, nnx.Module] = {}
    cout = caux = in_channels
    aux = {"down": True, "resample_filter": lay.resample_filter, **lay.conv}
    for level, mult in enumerate(lay.channel_mult):
        res = lay.img_resolution >> level
        if level == 0:
            enc[f"{res}x{res}_conv"] = EDMConv(cout, lay.model_channels, 3, **lay.init, **lay.conv)
            cout = lay.model_channels
        else:
            enc[f"{res}x{res}_down"] = EDMUNetBlock(cout, cout, lay.emb_ch, down=True, **lay.block)
            if encoder_type == "skip":
                enc[f"{res}x{res}_aux_down"] = EDMConv(caux, caux, 0, **aux)
                enc[f"{res}x{res}_aux_skip"] = EDMConv(caux, cout, 1, **lay.init, **lay.conv)
            if encoder_type == "residual":
                enc[f"{res}x{res}_aux_residual"] = EDMConv(
                    caux, cout, 3, fused_resample=True, **aux, **lay.init
                )
                caux = cout
        for idx in range(lay.num_blocks):
            cin, cout = cout, lay.model_channels * mult
            attention = res in lay.attn_resolutions
            enc[f"{res}x{res}_block{idx}"] = EDMUNetBlock(
                cin, cout, lay.emb_ch, attention=attention, **lay.block
            )
    return enc


def _song_decoder(
    lay: _SongLayout, skips: list[int], out_channels: int, decoder_type: str
) -> dict[str, nnx.Module]:
    """``dec``: per level (coarsest first) in/up blocks, skip-concatenating blocks, aux head."""
    dec: dict[str, nnx.Module] = {}
    cout, top = skips[-1], len(lay.channel_mult) - 1
    emb, block = lay.emb_ch, lay.block
    for level, mult in reversed(list(enumerate(lay.channel_mult))):
        res = lay.img_resolution >> level
        if level == top:
            dec[f"{res}x{res}_in0"] = EDMUNetBlock(cout, cout, emb, attention=True, **block)
            dec[f"{res}x{res}_in1"] = EDMUNetBlock(cout, cout, emb, **block)
        else:
            dec[f"{res}x{res}_up"] = EDMUNetBlock(cout, cout, emb, up=True, **block)
        for idx in range(lay.num_blocks + 1):
            cin, cout = cout + skips.pop(), lay.model_channels * mult
            attn = idx == lay.num_blocks and res in lay.attn_resolutions
            dec[f"{res}x{res}_block{idx}"] = EDMUNetBlock(cin, cout, emb, attention=attn, **block)
        if decoder_type == "skip" or level == 0:
            if decoder_type == "skip" and level < top:
                dec[f"{res}x{res}_aux_up"] = EDMConv(
                    out_channels, out_channels, 0, up=True,
                    resample_filter=lay.resample_filter, **lay.conv,
                )  # fmt: skip
            dec[f"{res}x{res}_aux_norm"] = edm_group_norm(cout, eps=1e-6, rngs=lay.conv["rngs"])
            dec[f"{res}x{res}_aux_conv"] = EDMConv(
                cout, out_channels, 3, **lay.init_zero, **lay.conv
            )
    return dec


class SongUNet(nnx.Module):
    """DDPM++ / NCSN++ (upstream ``SongUNet``), ``F(x, c_noise, y)``.

    Args:
      img_resolution: input side.
      in_channels: input channels.
      out_channels: output channels.
      num_classes: label classes (0: unconditional); ``num_classes`` is the null label.
      augment_dim: augmentation-label width (0: none; 9 for EDM's augment pipeline).
      model_channels: base width (128).
      channel_mult: per-resolution width multipliers (CIFAR-10: ``(2, 2, 2)``).
      channel_mult_emb: embedding width as a multiple of ``model_channels`` (4).
      num_blocks: residual blocks per resolution (4).
      attn_resolutions: sides with self-attention (``(16,)``).
      dropout: dropout in the blocks (training only).
      embedding_type: ``"positional"`` (DDPM++) or ``"fourier"`` (NCSN++).
      channel_mult_noise: noise-embedding width multiple (1 DDPM++, 2 NCSN++).
      encoder_type: ``"standard"``, ``"skip"`` or ``"residual"`` (NCSN++).
      decoder_type: ``"standard"`` or ``"skip"``.
      resample_filter: FIR taps (``(1, 1)`` DDPM++, ``(1, 3, 3, 1)`` NCSN++).
      dtype: compute dtype.
      precision: conv / attention precision.
      remat: rematerialise each block in the backward pass.
      rngs: parameters, the Fourier table and the dropout stream.
    """

    def __init__(
        self,
        *,
        img_resolution: int,
        in_channels: int,
        out_channels: int,
        num_classes: int = 0,
        augment_dim: int = 0,
        model_channels: int = 128,
        channel_mult: Sequence[int] = (1, 2, 2, 2),
        channel_mult_emb: int = 4,
        num_blocks: int = 4,
        attn_resolutions: Sequence[int] = (16,),
        dropout: float = 0.10,
        embedding_type: str = "positional",
        channel_mult_noise: int = 1,
        encoder_type: str = "standard",
        decoder_type: str = "standard",
        resample_filter: Sequence[int] = (1, 1),
        dtype: jnp.dtype = jnp.float32,
        precision: PrecisionLike = None,
        remat: bool = False,
        rngs: nnx.Rngs,
    ):
        if (embedding_type, encoder_type, decoder_type) not in _TYPES:
            raise ValueError(
                "embedding_type must be positional/fourier, encoder_type standard/skip/residual "
                f"and decoder_type standard/skip; got {embedding_type!r}, {encoder_type!r}, "
                f"{decoder_type!r}"
            )
        emb_ch, noise_ch = model_channels * channel_mult_emb, model_channels * channel_mult_noise
        init = {"init_mode": "xavier_uniform"}
        init_zero = {"init_mode": "xavier_uniform", "init_weight": 1e-5}
        init_attn = {"init_mode": "xavier_uniform", "init_weight": float(np.sqrt(0.2))}
        conv = {"dtype": dtype, "precision": precision, "rngs": rngs}
        block = dict(
            num_heads=1, dropout=dropout, skip_scale=float(np.sqrt(0.5)), eps=1e-6,
            resample_filter=resample_filter, resample_proj=True, adaptive_scale=False,
            init=init, init_zero=init_zero, init_attn=init_attn, **conv,
        )  # fmt: skip
        self.num_classes, self.dtype, self.remat = num_classes, dtype, remat
        if embedding_type == "positional":
            self.map_noise = PositionalEmbedding(noise_ch, endpoint=True)
        else:
            self.map_noise = FourierEmbedding(noise_ch, rngs=rngs)
        lin = lambda i, o, **kw: edm_linear(i, o, **init, **kw, rngs=rngs)  # noqa: E731
        self.map_label = lin(num_classes, noise_ch) if num_classes else None
        self.map_augment = lin(augment_dim, noise_ch, bias=False) if augment_dim else None
        self.map_layer0 = lin(noise_ch, emb_ch)
        self.map_layer1 = lin(emb_ch, emb_ch)
        layout = _SongLayout(
            img_resolution, model_channels, tuple(channel_mult), num_blocks,
            tuple(attn_resolutions), emb_ch, tuple(resample_filter), block, init, init_zero, conv,
        )  # fmt: skip
        enc = _song_encoder(layout, in_channels, encoder_type)
        skips = [m.out_channels for n, m in enc.items() if "aux" not in n]
        dec = _song_decoder(layout, skips, out_channels, decoder_type)
        self.enc_names, self.dec_names = tuple(enc), tuple(dec)
        self.enc, self.dec = nnx.Dict(enc), nnx.Dict(dec)

    def embed(self, noise_labels, y, augment_labels, batch: int) -> jax.Array:
        """The mapping network: ``(B,)`` noise labels (and labels) -> ``(B, C_emb)``."""
        emb = self.map_noise(noise_labels)
        half = emb.shape[1] // 2
        emb = jnp.concatenate([emb[:, half:], emb[:, :half]], axis=1)  # swap sin/cos
        if self.map_label is not None:
            if y is None:
                raise ValueError(
                    "this SongUNet is class-conditional: pass labels y (num_classes = null)"
                )
            vectors = class_vectors(y, self.num_classes, batch)
            emb = emb + self.map_label(vectors * np.sqrt(self.num_classes))
        if self.map_augment is not None and augment_labels is not None:
            emb = emb + self.map_augment(augment_labels.astype(jnp.float32))
        emb = jax.nn.silu(self.map_layer0(emb))
        return jax.nn.silu(self.map_layer1(emb))

    def __call__(self, x, noise_labels, y=None, *, augment_labels=None) -> jax.Array:
        """Raw output ``F``.

        Args:
          x: ``(B, R, R, C_in)`` preconditioned input ``c_in * x``.
          noise_labels: ``(B,)`` ``c_noise`` of the preconditioner.
          y: ``(B,)`` int labels in ``[0, num_classes]`` (``num_classes``: null).
          augment_labels: ``(B, augment_dim)`` or None (no augmentation).

        Returns:
          ``(B, R, R, C_out)`` float32.
        """
        emb = self.embed(noise_labels, y, augment_labels, x.shape[0])
        x = x.astype(self.dtype)
        skips, aux = [], x
        for name in self.enc_names:
            block = self.enc[name]
            if "aux_down" in name:
                aux = block(aux)
            elif "aux_skip" in name:
                x = skips[-1] = x + block(aux)
            elif "aux_residual" in name:
                x = skips[-1] = aux = (x + block(aux)) / np.sqrt(2)
            else:
                x = (
                    block(x)
                    if name.endswith("_conv")
                    else call_block(block, x, emb, remat=self.remat)
                )
                skips.append(x)
        aux = tmp = None
        for name in self.dec_names:
            block = self.dec[name]
            if "aux_up" in name:
                aux = block(aux)
            elif "aux_norm" in name:
                tmp = block(x)
            elif "aux_conv" in name:
                tmp = block(jax.nn.silu(tmp))
                aux = tmp if aux is None else tmp + aux
            else:
                if "_block" in name:
                    x = jnp.concatenate([x, skips.pop().astype(x.dtype)], axis=-1)
                x = call_block(block, x, emb, remat=self.remat)
        return aux.astype(jnp.float32)


def song_unet_from_preset(name: str, **kwargs) -> SongUNet:
    """A SongUNet from :data:`SONG_UNET_PRESETS`; kwargs (with ``rngs``) override."""
    if name not in SONG_UNET_PRESETS:
        raise ValueError(
            f"unknown SongUNet preset {name!r}; choose one of {sorted(SONG_UNET_PRESETS)}"
        )
    return SongUNet(**{**SONG_UNET_PRESETS[name], **kwargs})
