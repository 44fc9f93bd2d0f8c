"""EDM (Karras et al. 2022) ``DhariwalUNet``, NHWC: the ADM network (Dhariwal & Nichol 2021).

Architecture as in NVlabs/edm ``training/networks.py`` (``DhariwalUNet``, a reimplementation
of openai/guided-diffusion's ``UNetModel``), configured as NVlabs/edm ``train.py
--arch=adm`` (``model_channels=192``, ``channel_mult=[1, 2, 3, 4]``) and the paper's Table 7:
3 blocks per level (4 on the decoder side), self-attention at 32, 16 and 8 with 64 channels
per head (every decoder block of those sides attends), adaptive GroupNorm (the embedding
gives a scale and a shift after ``norm1``), box resampling without skip projection, and a
label embedding (no bias) added after the two-layer mapping MLP.

The network returns the raw ``F(c_in x, c_noise, y)``; preconditioning (iDDPM, EDM) lives in
nnx-objectives. Labels are integers in ``[0, num_classes]``, ``num_classes`` being the null
label (the all-zero label vector). Module names are upstream's (``enc['64x64_block0']``,
``dec['8x8_in0']``, ``out_norm``, ``out_conv``).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nnx_nets.block_stack import call_block
from nnx_nets.edm_layers import (
    EDMConv,
    EDMUNetBlock,
    PositionalEmbedding,
    class_vectors,
    edm_group_norm,
    edm_linear,
)
from nnx_nets.vision_attention import PrecisionLike

# train.py --arch=adm with ImageNet-64's --dropout=0.10 --augment=0 (paper, Table 7).
DHARIWAL_UNET_PRESETS: dict[str, dict] = {
    "edm-imagenet64-adm": {
        "img_resolution": 64,
        "in_channels": 3,
        "out_channels": 3,
        "num_classes": 1000,
        "model_channels": 192,
        "channel_mult": (1, 2, 3, 4),
        "dropout": 0.10,
    },
}


def _adm_encoder(
    res0, model_channels, channel_mult, num_blocks, emb_ch, attn_res, in_channels, block, init
) -> dict[str, nnx.Module]:
    """``enc``: input conv, then per level a down block (not at the first) and the blocks."""
    enc: dict[str, nnx.Module] = {}
    cout = in_channels
    for level, mult in enumerate(channel_mult):
        res = res0 >> level
        if level == 0:
            conv = {k: block[k] for k in ("dtype", "precision", "rngs")}
            enc[f"{res}x{res}_conv"] = EDMConv(cout, model_channels * mult, 3, **init, **conv)
            cout = model_channels * mult
        else:
            enc[f"{res}x{res}_down"] = EDMUNetBlock(cout, cout, emb_ch, down=True, **block)
        for idx in range(num_blocks):
            cin, cout = cout, model_channels * mult
            enc[f"{res}x{res}_block{idx}"] = EDMUNetBlock(
                cin, cout, emb_ch, attention=res in attn_res, **block
            )
    return enc


def _adm_decoder(
    res0, model_channels, channel_mult, num_blocks, emb_ch, attn_res, skips, block
) -> dict[str, nnx.Module]:
    """``dec``: in0 / in1 (coarsest) or up, then ``num_blocks + 1`` skip-concatenating blocks."""
    dec: dict[str, nnx.Module] = {}
    cout = skips[-1]
    for level, mult in reversed(list(enumerate(channel_mult))):
        res = res0 >> level
        if level == len(channel_mult) - 1:
            dec[f"{res}x{res}_in0"] = EDMUNetBlock(cout, cout, emb_ch, attention=True, **block)
            dec[f"{res}x{res}_in1"] = EDMUNetBlock(cout, cout, emb_ch, **block)
        else:
            dec[f"{res}x{res}_up"] = EDMUNetBlock(cout, cout, emb_ch, up=True, **block)
        for idx in range(num_blocks + 1):
            cin, cout = cout + skips.pop(), model_channels * mult
            dec[f"{res}x{res}_block{idx}"] = EDMUNetBlock(
                cin, cout, emb_ch, attention=res in attn_res, **block
            )
    return dec


class DhariwalUNet(nnx.Module):
    """ADM (upstream ``DhariwalUNet``), ``F(x, c_noise, y)``.

    Args:
      img_resolution: input side.
      in_channels: input channels.
      out_channels: output channels (iDDPM preconditioning: twice the image channels).
      num_classes: label classes (0: unconditional); ``num_classes`` is the null label.
      augment_dim: augmentation-label width (0: none).
      model_channels: base width (192).
      channel_mult: per-resolution width multipliers (``(1, 2, 3, 4)``).
      channel_mult_emb: embedding width as a multiple of ``model_channels`` (4).
      num_blocks: residual blocks per resolution (3).
      attn_resolutions: sides with self-attention (``(32, 16, 8)``).
      channels_per_head: attention head width (64).
      dropout: dropout in the blocks (training only).
      dtype: compute dtype.
      precision: conv / attention precision.
      remat: rematerialise each block in the backward pass.
      rngs: parameters and the dropout stream.
    """

    def __init__(
        self,
        *,
        img_resolution: int,
        in_channels: int,
        out_channels: int,
        num_classes: int = 0,
        augment_dim: int = 0,
        model_channels: int = 192,
        channel_mult: Sequence[int] = (1, 2, 3, 4),
        channel_mult_emb: int = 4,
        num_blocks: int = 3,
        attn_resolutions: Sequence[int] = (32, 16, 8),
        channels_per_head: int = 64,
        dropout: float = 0.10,
        dtype: jnp.dtype = jnp.float32,
        precision: PrecisionLike = None,
        remat: bool = False,
        rngs: nnx.Rngs,
    ):
        emb_ch = model_channels * channel_mult_emb
        gain = float(np.sqrt(1 / 3))
        init = {"init_mode": "kaiming_uniform", "init_weight": gain, "init_bias": gain}
        init_zero = {"init_mode": "kaiming_uniform", "init_weight": 0.0, "init_bias": 0.0}
        conv = {"dtype": dtype, "precision": precision, "rngs": rngs}
        block = dict(
            channels_per_head=channels_per_head,
            dropout=dropout,
            init=init,
            init_zero=init_zero,
            **conv,
        )
        self.num_classes, self.dtype, self.remat = num_classes, dtype, remat
        self.map_noise = PositionalEmbedding(model_channels)
        self.map_augment = (
            edm_linear(augment_dim, model_channels, bias=False, **init_zero, rngs=rngs)
            if augment_dim
            else None
        )
        self.map_layer0 = edm_linear(model_channels, emb_ch, **init, rngs=rngs)
        self.map_layer1 = edm_linear(emb_ch, emb_ch, **init, rngs=rngs)
        self.map_label = (
            edm_linear(
                num_classes, emb_ch, bias=False, init_weight=float(np.sqrt(num_classes)), rngs=rngs
            )
            if num_classes
            else None
        )

        sizes = (img_resolution, model_channels, tuple(channel_mult), num_blocks, emb_ch)
        enc = _adm_encoder(*sizes, tuple(attn_resolutions), in_channels, block, init)
        skips = [m.out_channels for m in enc.values()]
        dec = _adm_decoder(*sizes, tuple(attn_resolutions), skips, block)
        self.enc_names, self.dec_names = tuple(enc), tuple(dec)
        self.enc, self.dec = nnx.Dict(enc), nnx.Dict(dec)
        cout = model_channels * channel_mult[0]
        self.out_norm = edm_group_norm(cout, rngs=rngs)
        self.out_conv = EDMConv(cout, out_channels, 3, **init_zero, **conv)

    def embed(self, noise_labels, y, augment_labels, batch: int) -> jax.Array:
        """The mapping network: ``(B,)`` noise labels (and labels) -> ``(B, C_emb)``."""
        emb = self.map_noise(noise_labels)
        if self.map_augment is not None and augment_labels is not None:
            emb = emb + self.map_augment(augment_labels.astype(jnp.float32))
        emb = self.map_layer1(jax.nn.silu(self.map_layer0(emb)))
        if self.map_label is not None:
            if y is None:
                raise ValueError(
                    "this DhariwalUNet is class-conditional: pass labels y (num_classes = null)"
                )
            emb = emb + self.map_label(class_vectors(y, self.num_classes, batch))
        return jax.nn.silu(emb)

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
        skips = []
        for name in self.enc_names:
            block = self.enc[name]
            x = block(x) if name.endswith("_conv") else call_block(block, x, emb, remat=self.remat)
            skips.append(x)
        for name in self.dec_names:
            if "_block" in name:
                x = jnp.concatenate([x, skips.pop().astype(x.dtype)], axis=-1)
            x = call_block(self.dec[name], x, emb, remat=self.remat)
        return self.out_conv(jax.nn.silu(self.out_norm(x))).astype(jnp.float32)


def dhariwal_unet_from_preset(name: str, **kwargs) -> DhariwalUNet:
    """A DhariwalUNet from :data:`DHARIWAL_UNET_PRESETS`; kwargs (with ``rngs``) override."""
    if name not in DHARIWAL_UNET_PRESETS:
        raise ValueError(
            f"unknown DhariwalUNet preset {name!r}; choose one of {sorted(DHARIWAL_UNET_PRESETS)}"
        )
    return DhariwalUNet(**{**DHARIWAL_UNET_PRESETS[name], **kwargs})
