"""LightningDiT and DiT-DH layouts: parity, round trip, fixed tables, bad checkpoints.

Neither hustvl/LightningDiT nor RAE (``DiTwDDTHead``) is a PyPI package, so the torch
references below are rebuilt from their published architecture with their key names
(``models/lightningdit.py`` and ``src/stage2/models/DDT.py``): RMSNorm (float32 inside),
fused-qkv attention with optional q/k RMSNorms, EVA-02 2-D RoPE buffers
(``freqs_cos``/``freqs_sin``, interleaved rotate-half), fused ``w12`` SwiGLU, adaLN with or
without shifts, and the DDT head conditioned per token. A mistake shared by a reference
written from the same reading and the NNX code would not be caught; the RoPE and
sin-cos conventions are therefore also pinned by closed-form tests in nnx-nets.
Every parameter is drawn at random (zero-initialised adaLN / final layers included).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from flax import nnx
from torch import nn

from nnx_nets import DiTDH, LightningDiT, axial_rope_tables, sincos_pos_embed_2d
from nnx_weightconv import ConversionError, export_state_dict, load_into
from nnx_weightconv.specs.dit_dh import dit_dh_buffer_keys, dit_dh_rules
from nnx_weightconv.specs.lightning_dit import lightning_dit_buffer_keys, lightning_dit_rules

torch.set_num_threads(1)
NUM_CLASSES = 5


# ----------------------------------------------------------------------------- torch side
class TRMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.eps, self.weight = eps, nn.Parameter(torch.ones(dim))

    def forward(self, x):
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(
            x
        ) * self.weight


class TRope(nn.Module):
    """EVA-02 ``VisionRotaryEmbeddingFast``: buffers (grid*grid, head_dim), rows then columns."""

    def __init__(self, half_head_dim, grid, theta=10000.0):
        super().__init__()
        freqs = 1.0 / (
            theta
            ** (torch.arange(0, half_head_dim, 2)[: half_head_dim // 2].float() / half_head_dim)
        )
        pos = torch.arange(grid) / grid * grid
        f = torch.repeat_interleave(torch.outer(pos, freqs), 2, dim=-1)  # (grid, half)
        both = torch.cat(
            [f[:, None, :].expand(grid, grid, -1), f[None, :, :].expand(grid, grid, -1)], -1
        )
        self.register_buffer("freqs_cos", both.cos().reshape(grid * grid, -1))
        self.register_buffer("freqs_sin", both.sin().reshape(grid * grid, -1))

    def forward(self, t):  # t: (B, heads, N, head_dim)
        pairs = t.reshape(*t.shape[:-1], -1, 2)
        rotated = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).reshape(t.shape)
        return t * self.freqs_cos + rotated * self.freqs_sin


class TAttention(nn.Module):
    def __init__(self, dim, heads, qk_norm):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = TRMSNorm(dim // heads) if qk_norm else nn.Identity()
        self.k_norm = TRMSNorm(dim // heads) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, rope):
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k = rope(self.q_norm(q)), rope(self.k_norm(k))
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d))


class TSwiGLU(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.w12, self.w3 = nn.Linear(dim, 2 * hidden), nn.Linear(hidden, dim)

    def forward(self, x):
        gate, up = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(gate) * up)


def t_modulate(x, shift, scale):
    return x * (1 + scale) if shift is None else x * (1 + scale) + shift


class TBlock(nn.Module):
    def __init__(self, dim, heads, qk_norm=False, wo_shift=False):
        super().__init__()
        self.wo_shift = wo_shift
        self.norm1, self.norm2 = TRMSNorm(dim), TRMSNorm(dim)
        self.attn = TAttention(dim, heads, qk_norm)
        self.mlp = TSwiGLU(dim, int(2 / 3 * int(dim * 4.0)))
        self.adaLN_modulation = nn.Sequential(
            nn.SiLU(), nn.Linear(dim, (4 if wo_shift else 6) * dim)
        )

    def forward(self, x, c, rope):
        c = c.unsqueeze(1) if c.dim() == 2 else c
        if self.wo_shift:
            sc1, g1, sc2, g2 = self.adaLN_modulation(c).chunk(4, dim=-1)
            sh1 = sh2 = None
        else:
            sh1, sc1, g1, sh2, sc2, g2 = self.adaLN_modulation(c).chunk(6, dim=-1)
        x = x + g1 * self.attn(t_modulate(self.norm1(x), sh1, sc1), rope)
        return x + g2 * self.mlp(t_modulate(self.norm2(x), sh2, sc2))


class TFinal(nn.Module):
    def __init__(self, dim, out):
        super().__init__()
        self.norm_final, self.linear = TRMSNorm(dim), nn.Linear(dim, out)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x, c):
        c = c.unsqueeze(1) if c.dim() == 2 else c
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
        return self.linear(t_modulate(self.norm_final(x), shift, scale))


class TTimestep(nn.Module):
    def __init__(self, dim, fourier):
        super().__init__()
        self.fourier = fourier
        if fourier:
            self.W = nn.Parameter(torch.randn(256), requires_grad=False)
        self.mlp = nn.Sequential(
            nn.Linear(512 if fourier else 256, dim), nn.SiLU(), nn.Linear(dim, dim)
        )

    def forward(self, t):
        if self.fourier:
            args = t[:, None] * self.W[None] * 2 * torch.pi
            return self.mlp(torch.cat([torch.sin(args), torch.cos(args)], -1))
        freqs = torch.exp(-math.log(10000) * torch.arange(128, dtype=torch.float32) / 128)
        args = t[:, None].float() * freqs[None]
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], -1))


def t_patch(cin, dim, p):
    module = nn.Module()
    module.proj = nn.Conv2d(cin, dim, p, p)
    return module


def t_labels(dim):
    module = nn.Module()
    module.embedding_table = nn.Embedding(NUM_CLASSES + 1, dim)
    return module


def t_unpatchify(x, p, c):
    h = w = int(x.shape[1] ** 0.5)
    x = torch.einsum("nhwpqc->nchpwq", x.reshape(x.shape[0], h, w, p, p, c))
    return x.reshape(x.shape[0], c, h * p, w * p)


def t_sincos(dim, grid):
    """MAE's fixed table, written independently of nnx_nets (first half: column)."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))
    hh, ww = torch.meshgrid(
        torch.arange(grid, dtype=torch.float64),
        torch.arange(grid, dtype=torch.float64),
        indexing="ij",
    )

    def axis(pos):
        out = pos.reshape(-1, 1) * omega[None]
        return torch.cat([torch.sin(out), torch.cos(out)], dim=1)

    return torch.cat([axis(ww), axis(hh)], dim=1).float()[None]


class TLightningDiT(nn.Module):
    def __init__(self, size, p, cin, dim, depth, heads, qk_norm, wo_shift, fourier):
        super().__init__()
        self.p, self.c = p, cin
        self.x_embedder = t_patch(cin, dim, p)
        self.t_embedder = TTimestep(dim, fourier)
        self.y_embedder = t_labels(dim)
        self.pos_embed = nn.Parameter(t_sincos(dim, size // p), requires_grad=False)
        self.feat_rope = TRope(dim // heads // 2, size // p)
        self.blocks = nn.ModuleList([TBlock(dim, heads, qk_norm, wo_shift) for _ in range(depth)])
        self.final_layer = TFinal(dim, p * p * cin)

    def forward(self, x, t, y):
        x = self.x_embedder.proj(x).flatten(2).transpose(1, 2) + self.pos_embed
        c = self.t_embedder(t) + self.y_embedder.embedding_table(y)
        for block in self.blocks:
            x = block(x, c, self.feat_rope)
        return t_unpatchify(self.final_layer(x, c), self.p, self.c)


class TDiTDH(nn.Module):
    def __init__(self, size, cin, dims, depths, heads):
        super().__init__()
        self.c, self.trunk_depth = cin, depths[0]
        self.x_embedder = t_patch(cin, dims[1], 1)
        self.s_embedder = t_patch(cin, dims[0], 1)
        self.s_projector = nn.Linear(dims[0], dims[1]) if dims[0] != dims[1] else nn.Identity()
        self.t_embedder = TTimestep(dims[0], fourier=True)
        self.y_embedder = t_labels(dims[0])
        self.final_layer = TFinal(dims[1], cin)
        self.pos_embed = nn.Parameter(t_sincos(dims[0], size), requires_grad=False)
        self.enc_feat_rope = TRope(dims[0] // heads[0] // 2, size)
        self.dec_feat_rope = TRope(dims[1] // heads[1] // 2, size)
        self.blocks = nn.ModuleList(
            [TBlock(dims[0], heads[0]) for _ in range(depths[0])]
            + [TBlock(dims[1], heads[1]) for _ in range(depths[1])]
        )

    def forward(self, x, t, y):
        t = self.t_embedder(t)
        c = F.silu(t + self.y_embedder.embedding_table(y))
        s = self.s_embedder.proj(x).flatten(2).transpose(1, 2) + self.pos_embed
        for block in self.blocks[: self.trunk_depth]:
            s = block(s, c, self.enc_feat_rope)
        s = self.s_projector(F.silu(t.unsqueeze(1) + s))
        h = self.x_embedder.proj(x).flatten(2).transpose(1, 2)
        for block in self.blocks[self.trunk_depth :]:
            h = block(h, s, self.dec_feat_rope)
        return t_unpatchify(self.final_layer(h, s), 1, self.c)


def randomize(module, seed, std=0.2):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if name != "pos_embed":  # the fixed table stays fixed (it is not trained)
                param.copy_(torch.randn(param.shape, generator=gen) * std)
    return module.eval()


def numpy_state_dict(module):
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def torch_forward(module, x, t, y):
    with torch.no_grad():
        out = module(
            torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(t), torch.from_numpy(y).long()
        )
    return out.permute(0, 2, 3, 1).numpy()


# ------------------------------------------------------------------------------- NNX side
@nnx.jit
def forward(model, x, t, y):
    return model(x, t, y)


@nnx.jit
def forward_features(model, x, t, y):
    return model(x, t, y, return_features=True)


def abstract(cls, **kwargs):
    return nnx.eval_shape(lambda: cls(**kwargs, num_classes=NUM_CLASSES, rngs=nnx.Rngs(0)))


def inputs(size, channels=3, batch=3):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, size, size, channels)).astype(np.float32)
    return x, rng.uniform(0, 1, batch).astype(np.float32), np.array([0, 4, 5], np.int32)[:batch]


def assert_parity(model, module, x, t, y, ours=None):
    if ours is None:
        with jax.default_matmul_precision("highest"):
            ours = np.asarray(forward(model, x, t, y))
    ref = torch_forward(module, x, t, y)
    assert ours.shape == ref.shape
    assert np.abs(ref).max() > 0.5  # far from zero, so the comparison is not vacuous
    # fp32 both sides; only summation order (and RoPE tables computed in numpy vs torch,
    # equal to ~1 ulp) differ: a few ulp per op through three or four blocks.
    err = np.abs(ours - ref).max()
    assert err < 3e-5 * max(1.0, np.abs(ref).max()), err
    return err


LIGHTNING = [
    # (qk_norm, wo_shift, fourier, scan): the published setting, then the other options,
    # run with scanned + rematerialised blocks (RoPE tables closed over inside the scan).
    pytest.param(False, False, False, False, id="published"),
    pytest.param(True, True, True, True, id="qknorm-noshift-fourier-scan"),
]


@pytest.mark.parametrize("qk_norm, wo_shift, fourier, scan", LIGHTNING)
def test_lightning_dit_parity(qk_norm, wo_shift, fourier, scan):
    module = randomize(TLightningDiT(8, 2, 3, 32, 2, 2, qk_norm, wo_shift, fourier), seed=1)
    model = abstract(
        LightningDiT,
        input_size=8,
        patch_size=2,
        in_channels=3,
        hidden_size=32,
        depth=2,
        num_heads=2,
        qk_norm=qk_norm,
        adaln_shift=not wo_shift,
        time_embedding="gaussian_fourier" if fourier else "sinusoidal",
        scan_blocks=scan,
        remat=scan,
    )
    load_into(
        model,
        numpy_state_dict(module),
        lightning_dit_rules(model),
        ignore=lightning_dit_buffer_keys(model),
    )
    assert_parity(model, module, *inputs(8))


def test_fixed_tables_match_the_reference_buffers():
    np.testing.assert_allclose(sincos_pos_embed_2d(32, 4, 4), t_sincos(32, 4)[0].numpy(), atol=1e-7)


def test_rope_tables_match_eva_buffers():
    rope = TRope(16 // 2, 4)
    cos, sin = axial_rope_tables(16, 4, 4)
    # numpy vs torch float32 pow / cos / sin: ~1 ulp.
    np.testing.assert_allclose(cos, rope.freqs_cos.numpy(), atol=2e-7)
    np.testing.assert_allclose(sin, rope.freqs_sin.numpy(), atol=2e-7)


@pytest.mark.parametrize(
    "head_width, scan", [(48, False), (32, True)], ids=["wide-head", "equal-widths-scan"]
)
def test_dit_dh_parity(head_width, scan):
    module = randomize(TDiTDH(4, 3, (32, head_width), (2, 1), (2, 2)), seed=2)
    model = abstract(
        DiTDH,
        input_size=4,
        patch_size=1,
        in_channels=3,
        hidden_size=32,
        depth=2,
        num_heads=2,
        head_hidden_size=head_width,
        head_depth=1,
        head_num_heads=2,
        scan_blocks=scan,
        remat=scan,
    )
    sd = numpy_state_dict(module)
    assert ("s_projector.weight" in sd) == (head_width != 32)
    load_into(model, sd, dit_dh_rules(model), ignore=dit_dh_buffer_keys(model))
    x, t, y = inputs(4)
    with jax.default_matmul_precision("highest"):
        out, feats = forward_features(model, x, t, y)
    assert_parity(model, module, x, t, y, ours=np.asarray(out))
    assert sorted(feats) == ["block_1", "block_2", "head_block_1"]
    assert feats["block_2"].shape == (3, 16, 32)
    assert feats["head_block_1"].shape == (3, 16, head_width)


def test_round_trips_are_exact():
    for module, model, rules, buffers in [
        (
            TLightningDiT(8, 2, 3, 32, 2, 2, True, False, True),
            abstract(
                LightningDiT,
                input_size=8,
                patch_size=2,
                in_channels=3,
                hidden_size=32,
                depth=2,
                num_heads=2,
                qk_norm=True,
                time_embedding="gaussian_fourier",
            ),
            lightning_dit_rules,
            lightning_dit_buffer_keys,
        ),
        (
            TDiTDH(4, 3, (32, 48), (2, 1), (2, 2)),
            abstract(
                DiTDH,
                input_size=4,
                patch_size=1,
                in_channels=3,
                hidden_size=32,
                depth=2,
                num_heads=2,
                head_hidden_size=48,
                head_depth=1,
                head_num_heads=2,
            ),
            dit_dh_rules,
            dit_dh_buffer_keys,
        ),
    ]:
        rng = np.random.default_rng(4)
        for _, var in nnx.state(model, nnx.Param).flat_state():
            var.set_value(
                jnp.asarray(0.2 * rng.standard_normal(var.get_value().shape), jnp.float32)
            )
        exported = export_state_dict(model, rules(model))
        missing, unexpected = module.load_state_dict(
            {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in exported.items()},
            strict=False,
        )
        assert sorted(missing) == sorted(buffers(model)) and not unexpected
        again = abstract(type(model), **_ctor(model))
        load_into(again, numpy_state_dict(module), rules(again), ignore=buffers(again))
        flat_a = dict(nnx.state(model, nnx.Param).flat_state())
        flat_b = dict(nnx.state(again, nnx.Param).flat_state())
        assert flat_a.keys() == flat_b.keys()
        for path in flat_a:
            np.testing.assert_array_equal(flat_a[path].get_value(), flat_b[path].get_value())


def _ctor(model):
    if isinstance(model, DiTDH):
        return dict(
            input_size=4,
            patch_size=1,
            in_channels=3,
            hidden_size=32,
            depth=2,
            num_heads=2,
            head_hidden_size=48,
            head_depth=1,
            head_num_heads=2,
        )
    return dict(
        input_size=8,
        patch_size=2,
        in_channels=3,
        hidden_size=32,
        depth=2,
        num_heads=2,
        qk_norm=True,
        time_embedding="gaussian_fourier",
    )


def test_mismatched_checkpoints_name_keys():
    # A DiT-DH checkpoint whose head is 48 wide into a model with a 64-wide head.
    sd = numpy_state_dict(TDiTDH(4, 3, (32, 48), (2, 1), (2, 2)))
    model = abstract(
        DiTDH,
        input_size=4,
        patch_size=1,
        in_channels=3,
        hidden_size=32,
        depth=2,
        num_heads=2,
        head_hidden_size=64,
        head_depth=1,
        head_num_heads=2,
    )
    with pytest.raises(ConversionError) as info:
        load_into(model, sd, dit_dh_rules(model), ignore=dit_dh_buffer_keys(model))
    message = str(info.value)
    assert "s_projector.weight -> s_projector.kernel" in message
    assert "blocks.2.mlp.w12.weight -> head_blocks.0.mlp.gate.kernel" in message
    # A LightningDiT checkpoint without QK-norm into a model with it: the norms are missing,
    # and the Gaussian-Fourier W is unexpected for a sinusoidal embedder.
    sd = numpy_state_dict(TLightningDiT(8, 2, 3, 32, 2, 2, False, False, True))
    model = abstract(
        LightningDiT,
        input_size=8,
        patch_size=2,
        in_channels=3,
        hidden_size=32,
        depth=2,
        num_heads=2,
        qk_norm=True,
    )
    with pytest.raises(ConversionError) as info:
        load_into(model, sd, lightning_dit_rules(model), ignore=lightning_dit_buffer_keys(model))
    message = str(info.value)
    assert "blocks.0.attn.q_norm.weight" in message and "blocks.1.attn.k_norm.weight" in message
    assert "unexpected in checkpoint (1): t_embedder.W" in message
