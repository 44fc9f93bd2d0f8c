"""A PyTorch reference of the EDM (Karras et al. 2022) networks, for parity tests only.

Written from the architecture description of NVlabs/edm ``training/networks.py`` (the
``Conv2d`` / ``GroupNorm`` / ``UNetBlock`` / embedding modules, ``SongUNet``, ``DhariwalUNet``
and the four preconditioners) and the paper (Table 1), NCHW, float32, with the same
state-dict key names (``enc.32x32_block0.conv0.weight``, ``map_noise.freqs``,
``...resample_filter`` buffers, ``model.`` under a preconditioner). Initialisation is left
to the tests (they draw random non-zero weights), and training-only parts (dropout, label
dropout) are absent.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class Conv(nn.Module):
    """Optional 2x FIR resampling and a ``k x k`` conv (``k = 0``: resampling only)."""

    def __init__(self, cin, cout, k, bias=True, up=False, down=False, taps=(1, 1), fused=False):
        super().__init__()
        self.cin, self.cout, self.up, self.down, self.fused = cin, cout, up, down, fused
        self.weight = nn.Parameter(torch.zeros(cout, cin, k, k)) if k else None
        self.bias = nn.Parameter(torch.zeros(cout)) if k and bias else None
        t = torch.tensor(taps, dtype=torch.float32)
        filt = torch.outer(t, t)[None, None] / t.sum() ** 2
        self.register_buffer("resample_filter", filt if up or down else None)

    def _up(self, x, pad):
        f = (4 * self.resample_filter).repeat(x.shape[1], 1, 1, 1)
        return F.conv_transpose2d(x, f, stride=2, padding=pad, groups=x.shape[1])

    def _down(self, x, pad):
        f = self.resample_filter.repeat(x.shape[1], 1, 1, 1)
        return F.conv2d(x, f, stride=2, padding=pad, groups=x.shape[1])

    def forward(self, x):
        wp = self.weight.shape[-1] // 2 if self.weight is not None else 0
        fp = (self.resample_filter.shape[-1] - 1) // 2 if self.resample_filter is not None else 0
        if self.fused and self.up and self.weight is not None:
            x = F.conv2d(self._up(x, max(fp - wp, 0)), self.weight, padding=max(wp - fp, 0))
        elif self.fused and self.down and self.weight is not None:
            x = self._down(F.conv2d(x, self.weight, padding=wp + fp), 0)
        else:
            x = self._up(x, fp) if self.up else x
            x = self._down(x, fp) if self.down else x
            x = F.conv2d(x, self.weight, padding=wp) if self.weight is not None else x
        return x + self.bias[None, :, None, None] if self.bias is not None else x


class GroupNorm(nn.GroupNorm):
    """``min(32, C // 4)`` groups."""

    def __init__(self, channels, eps=1e-5):
        super().__init__(min(32, channels // 4), channels, eps=eps)


class Block(nn.Module):
    """The unified residual block (DDPM++ / NCSN++ / ADM) with optional attention."""

    def __init__(self, cin, cout, emb, up=False, down=False, attention=False, num_heads=None,
                 channels_per_head=64, skip_scale=1.0, eps=1e-5, taps=(1, 1),
                 resample_proj=False, adaptive_scale=True):  # fmt: skip
        super().__init__()
        self.in_channels, self.out_channels = cin, cout
        heads = num_heads if num_heads is not None else cout // channels_per_head
        self.num_heads = heads if attention else 0
        self.skip_scale, self.adaptive_scale = skip_scale, adaptive_scale
        self.norm0 = GroupNorm(cin, eps)
        self.conv0 = Conv(cin, cout, 3, up=up, down=down, taps=taps)
        self.affine = nn.Linear(emb, cout * (2 if adaptive_scale else 1))
        self.norm1 = GroupNorm(cout, eps)
        self.conv1 = Conv(cout, cout, 3)
        self.skip = None
        if cout != cin or up or down:
            k = 1 if resample_proj or cout != cin else 0
            self.skip = Conv(cin, cout, k, up=up, down=down, taps=taps)
        if self.num_heads:
            self.norm2 = GroupNorm(cout, eps)
            self.qkv = Conv(cout, 3 * cout, 1)
            self.proj = Conv(cout, cout, 1)

    def forward(self, x, emb):
        h = self.conv0(F.silu(self.norm0(x)))
        p = self.affine(emb)[:, :, None, None]
        if self.adaptive_scale:
            scale, shift = p.chunk(2, dim=1)
            h = F.silu(shift + self.norm1(h) * (scale + 1))
        else:
            h = F.silu(self.norm1(h + p))
        h = self.conv1(h) + (self.skip(x) if self.skip is not None else x)
        h = h * self.skip_scale
        if self.num_heads:
            b, c, hh, ww = h.shape
            # 3C channels ordered (head, channel, q|k|v).
            q, k, v = (
                self.qkv(self.norm2(h))
                .reshape(b * self.num_heads, c // self.num_heads, 3, -1)
                .unbind(2)
            )
            w = torch.softmax(torch.einsum("ncq,nck->nqk", q, k) / math.sqrt(k.shape[1]), dim=2)
            a = torch.einsum("nqk,nck->ncq", w, v).reshape(b, c, hh, ww)
            h = (self.proj(a) + h) * self.skip_scale
        return h


class Positional(nn.Module):
    def __init__(self, channels, endpoint=False):
        super().__init__()
        self.channels, self.endpoint = channels, endpoint

    def forward(self, x):
        half = self.channels // 2
        freqs = (1 / 10000) ** (
            torch.arange(half, dtype=torch.float32) / (half - int(self.endpoint))
        )
        x = x[:, None] * freqs[None]
        return torch.cat([x.cos(), x.sin()], dim=1)


class Fourier(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.register_buffer("freqs", 16 * torch.randn(channels // 2))

    def forward(self, x):
        x = x[:, None] * (2 * np.pi * self.freqs)[None]
        return torch.cat([x.cos(), x.sin()], dim=1)


def _onehot(y, k):
    return F.one_hot(y, k + 1).float()[:, :k]


def _song_decoder(sizes, skips, emb, kw, decoder_type, out_channels, taps) -> nn.ModuleDict:
    """SongUNet's decoder: in/up blocks, skip-concatenating blocks, the aux output head."""
    img_resolution, model_channels, channel_mult, num_blocks, attn_resolutions = sizes
    dec, cout = nn.ModuleDict(), skips[-1]
    for level, mult in reversed(list(enumerate(channel_mult))):
        r = img_resolution >> level
        if level == len(channel_mult) - 1:
            dec[f"{r}x{r}_in0"] = Block(cout, cout, emb, attention=True, **kw)
            dec[f"{r}x{r}_in1"] = Block(cout, cout, emb, **kw)
        else:
            dec[f"{r}x{r}_up"] = Block(cout, cout, emb, up=True, **kw)
        for i in range(num_blocks + 1):
            cin, cout = cout + skips.pop(), model_channels * mult
            attn = i == num_blocks and r in attn_resolutions
            dec[f"{r}x{r}_block{i}"] = Block(cin, cout, emb, attention=attn, **kw)
        if decoder_type == "skip" or level == 0:
            if decoder_type == "skip" and level < len(channel_mult) - 1:
                dec[f"{r}x{r}_aux_up"] = Conv(out_channels, out_channels, 0, up=True, taps=taps)
            dec[f"{r}x{r}_aux_norm"] = GroupNorm(cout, eps=1e-6)
            dec[f"{r}x{r}_aux_conv"] = Conv(cout, out_channels, 3)
    return dec


class TorchSongUNet(nn.Module):
    """DDPM++ / NCSN++ (``SongUNet``): standard / skip / residual encoder, standard / skip decoder."""

    def __init__(self, img_resolution, in_channels, out_channels, num_classes=0, augment_dim=0,
                 model_channels=128, channel_mult=(1, 2, 2, 2), channel_mult_emb=4, num_blocks=4,
                 attn_resolutions=(16,), embedding_type="positional", channel_mult_noise=1,
                 encoder_type="standard", decoder_type="standard", resample_filter=(1, 1)):  # fmt: skip
        super().__init__()
        emb, noise = model_channels * channel_mult_emb, model_channels * channel_mult_noise
        kw = dict(num_heads=1, skip_scale=math.sqrt(0.5), eps=1e-6, taps=resample_filter,
                  resample_proj=True, adaptive_scale=False)  # fmt: skip
        self.num_classes = num_classes
        self.map_noise = (
            Positional(noise, endpoint=True) if embedding_type == "positional" else Fourier(noise)
        )
        self.map_label = nn.Linear(num_classes, noise) if num_classes else None
        self.map_augment = nn.Linear(augment_dim, noise, bias=False) if augment_dim else None
        self.map_layer0 = nn.Linear(noise, emb)
        self.map_layer1 = nn.Linear(emb, emb)
        self.enc = nn.ModuleDict()
        cout = caux = in_channels
        for level, mult in enumerate(channel_mult):
            r = img_resolution >> level
            if level == 0:
                self.enc[f"{r}x{r}_conv"] = Conv(cout, model_channels, 3)
                cout = model_channels
            else:
                self.enc[f"{r}x{r}_down"] = Block(cout, cout, emb, down=True, **kw)
                if encoder_type == "skip":
                    self.enc[f"{r}x{r}_aux_down"] = Conv(
                        caux, caux, 0, down=True, taps=resample_filter
                    )
                    self.enc[f"{r}x{r}_aux_skip"] = Conv(caux, cout, 1)
                if encoder_type == "residual":
                    self.enc[f"{r}x{r}_aux_residual"] = Conv(
                        caux, cout, 3, down=True, taps=resample_filter, fused=True
                    )
                    caux = cout
            for i in range(num_blocks):
                cin, cout = cout, model_channels * mult
                self.enc[f"{r}x{r}_block{i}"] = Block(
                    cin, cout, emb, attention=r in attn_resolutions, **kw
                )
        skips = [m.out_channels if isinstance(m, Block) else m.cout for m in self.enc.values()]
        skips = [c for c, n in zip(skips, self.enc) if "aux" not in n]
        sizes = (img_resolution, model_channels, channel_mult, num_blocks, attn_resolutions)
        self.dec = _song_decoder(sizes, skips, emb, kw, decoder_type, out_channels, resample_filter)

    def forward(self, x, noise_labels, y=None):
        emb = self.map_noise(noise_labels)
        emb = emb.reshape(emb.shape[0], 2, -1).flip(1).reshape(*emb.shape)  # [sin, cos]
        if self.map_label is not None:
            emb = emb + self.map_label(_onehot(y, self.num_classes) * math.sqrt(self.num_classes))
        emb = F.silu(self.map_layer1(F.silu(self.map_layer0(emb))))
        skips, aux = [], x
        for name, block in self.enc.items():
            if "aux_down" in name:
                aux = block(aux)
            elif "aux_skip" in name:
                x = skips[-1] = x + block(aux)
            elif "aux_residual" in name:
                x = skips[-1] = aux = (x + block(aux)) / math.sqrt(2)
            else:
                x = block(x, emb) if isinstance(block, Block) else block(x)
                skips.append(x)
        aux = tmp = None
        for name, block in self.dec.items():
            if "aux_up" in name:
                aux = block(aux)
            elif "aux_norm" in name:
                tmp = block(x)
            elif "aux_conv" in name:
                tmp = block(F.silu(tmp))
                aux = tmp if aux is None else tmp + aux
            else:
                if x.shape[1] != block.in_channels:
                    x = torch.cat([x, skips.pop()], dim=1)
                x = block(x, emb)
        return aux


class TorchDhariwalUNet(nn.Module):
    """ADM (``DhariwalUNet``)."""

    def __init__(self, img_resolution, in_channels, out_channels, num_classes=0, model_channels=192,
                 channel_mult=(1, 2, 3, 4), channel_mult_emb=4, num_blocks=3,
                 attn_resolutions=(32, 16, 8), channels_per_head=64):  # fmt: skip
        super().__init__()
        emb = model_channels * channel_mult_emb
        kw = dict(channels_per_head=channels_per_head)
        self.num_classes = num_classes
        self.map_noise = Positional(model_channels)
        self.map_layer0 = nn.Linear(model_channels, emb)
        self.map_layer1 = nn.Linear(emb, emb)
        self.map_label = nn.Linear(num_classes, emb, bias=False) if num_classes else None
        self.enc = nn.ModuleDict()
        cout = in_channels
        for level, mult in enumerate(channel_mult):
            r = img_resolution >> level
            if level == 0:
                self.enc[f"{r}x{r}_conv"] = Conv(cout, model_channels * mult, 3)
                cout = model_channels * mult
            else:
                self.enc[f"{r}x{r}_down"] = Block(cout, cout, emb, down=True, **kw)
            for i in range(num_blocks):
                cin, cout = cout, model_channels * mult
                self.enc[f"{r}x{r}_block{i}"] = Block(
                    cin, cout, emb, attention=r in attn_resolutions, **kw
                )
        skips = [m.out_channels if isinstance(m, Block) else m.cout for m in self.enc.values()]
        self.dec = nn.ModuleDict()
        for level, mult in reversed(list(enumerate(channel_mult))):
            r = img_resolution >> level
            if level == len(channel_mult) - 1:
                self.dec[f"{r}x{r}_in0"] = Block(cout, cout, emb, attention=True, **kw)
                self.dec[f"{r}x{r}_in1"] = Block(cout, cout, emb, **kw)
            else:
                self.dec[f"{r}x{r}_up"] = Block(cout, cout, emb, up=True, **kw)
            for i in range(num_blocks + 1):
                cin, cout = cout + skips.pop(), model_channels * mult
                self.dec[f"{r}x{r}_block{i}"] = Block(
                    cin, cout, emb, attention=r in attn_resolutions, **kw
                )
        self.out_norm = GroupNorm(cout)
        self.out_conv = Conv(cout, out_channels, 3)

    def forward(self, x, noise_labels, y=None):
        emb = self.map_layer1(F.silu(self.map_layer0(self.map_noise(noise_labels))))
        if self.map_label is not None:
            emb = emb + self.map_label(_onehot(y, self.num_classes))
        emb = F.silu(emb)
        skips = []
        for block in self.enc.values():
            x = block(x, emb) if isinstance(block, Block) else block(x)
            skips.append(x)
        for block in self.dec.values():
            if x.shape[1] != block.in_channels:
                x = torch.cat([x, skips.pop()], dim=1)
            x = block(x, emb)
        return self.out_conv(F.silu(self.out_norm(x)))


class TorchPrecond(nn.Module):
    """``D(x; sigma) = c_skip x + c_out F(c_in x; c_noise)`` for ``kind`` in vp / ve / iddpm / edm."""

    def __init__(
        self, model, kind, sigma_data=0.5, beta_d=19.9, beta_min=0.1, M=1000, C_1=0.001, C_2=0.008
    ):
        super().__init__()
        self.model, self.kind = model, kind
        self.sigma_data, self.beta_d, self.beta_min, self.M = sigma_data, beta_d, beta_min, M
        if kind == "iddpm":

            def abar(j):
                return math.sin(0.5 * math.pi * j / M / (C_2 + 1)) ** 2

            u = [0.0] * (M + 1)
            for j in range(M, 0, -1):
                u[j - 1] = math.sqrt((u[j] ** 2 + 1) / max(abar(j - 1) / abar(j), C_1) - 1)
            self.register_buffer("u", torch.tensor(u, dtype=torch.float32))

    def coefficients(self, s):
        one = torch.ones_like(s)
        if self.kind == "vp":
            t = (
                (self.beta_min**2 + 2 * self.beta_d * torch.log1p(s**2)).sqrt() - self.beta_min
            ) / self.beta_d
            return one, -s, 1 / (s**2 + 1).sqrt(), (self.M - 1) * t
        if self.kind == "ve":
            return one, s, one, (0.5 * s).log()
        if self.kind == "iddpm":
            index = (s[:, None] - self.u[None]).abs().argmin(1)
            return one, -s, 1 / (s**2 + 1).sqrt(), (self.M - 1 - index).float()
        total = s**2 + self.sigma_data**2
        return (
            self.sigma_data**2 / total,
            s * self.sigma_data / total.sqrt(),
            1 / total.sqrt(),
            s.log() / 4,
        )

    def forward(self, x, sigma, y=None):
        c_skip, c_out, c_in, c_noise = self.coefficients(sigma)
        f = self.model(c_in[:, None, None, None] * x, c_noise, y)[:, : x.shape[1]]
        return c_skip[:, None, None, None] * x + c_out[:, None, None, None] * f
