"""facebookresearch/DiT layout: parity, round trip and bad checkpoints.

``TorchDiT`` below is a from-scratch torch module with the architecture and the key names
of facebookresearch/DiT ``models.py`` (the repository is not a PyPI package, so it is
rebuilt here; the key names are the ones of the released ``DiT-XL-2-256x256.pt``). Every
parameter, including the zero-initialised adaLN and final layers, is drawn at random
before comparing, since a freshly initialised DiT outputs exactly zero.
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

from nnx_nets import DiT, MeanFlowDiT
from nnx_weightconv import ConversionError, export_state_dict, load_into
from nnx_weightconv.specs.dit import dit_buffer_keys, dit_rules, meanflow_dit_rules

torch.set_num_threads(1)

CFG = dict(input_size=8, patch_size=2, in_channels=3, hidden_size=32, depth=2, num_heads=2)
NUM_CLASSES = 5


def mae_sincos_2d(dim: int, grid: int) -> np.ndarray:
    """MAE's 2-D table, written independently of nnx_nets: the first half encodes w."""

    def one_axis(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.outer(pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    ww, hh = np.meshgrid(np.arange(grid, dtype=np.float32), np.arange(grid, dtype=np.float32))
    return np.concatenate([one_axis(dim // 2, ww), one_axis(dim // 2, hh)], axis=1)


class TorchDiTBlock(nn.Module):
    def __init__(self, dim, heads, mlp_ratio):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = nn.Module()
        self.attn.qkv = nn.Linear(dim, 3 * dim)
        self.attn.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Module()
        self.mlp.fc1 = nn.Linear(dim, int(dim * mlp_ratio))
        self.mlp.fc2 = nn.Linear(int(dim * mlp_ratio), dim)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def attention(self, x):
        b, n, d = x.shape
        qkv = self.attn.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.attn.proj(out.transpose(1, 2).reshape(b, n, d))

    def forward(self, x, c):
        sh1, sc1, g1, sh2, sc2, g2 = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + g1[:, None] * self.attention(self.norm1(x) * (1 + sc1[:, None]) + sh1[:, None])
        h = self.norm2(x) * (1 + sc2[:, None]) + sh2[:, None]
        return x + g2[:, None] * self.mlp.fc2(F.gelu(self.mlp.fc1(h), approximate="tanh"))


class TorchDiT(nn.Module):
    """facebookresearch/DiT with its key names; NCHW input, integer-step time."""

    def __init__(
        self,
        input_size,
        patch_size,
        in_channels,
        hidden_size,
        depth,
        num_heads,
        num_classes,
        learn_sigma=True,
        mlp_ratio=4.0,
    ):
        super().__init__()
        self.p, self.out_ch = patch_size, in_channels * (2 if learn_sigma else 1)
        self.x_embedder = nn.Module()
        self.x_embedder.proj = nn.Conv2d(in_channels, hidden_size, patch_size, patch_size)
        self.t_embedder = nn.Module()
        self.t_embedder.mlp = nn.Sequential(
            nn.Linear(256, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size)
        )
        self.y_embedder = nn.Module()
        self.y_embedder.embedding_table = nn.Embedding(num_classes + 1, hidden_size)
        grid = input_size // patch_size
        table = torch.from_numpy(mae_sincos_2d(hidden_size, grid)).float()[None]
        self.pos_embed = nn.Parameter(table, requires_grad=False)
        self.blocks = nn.ModuleList(
            [TorchDiTBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth)]
        )
        self.final_layer = nn.Module()
        self.final_layer.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.final_layer.linear = nn.Linear(hidden_size, patch_size**2 * self.out_ch)
        self.final_layer.adaLN_modulation = nn.Sequential(
            nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size)
        )

    @staticmethod
    def timestep_embedding(t, dim=256, max_period=10000):
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
        args = t[:, None].float() * freqs[None]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)

    def forward(self, x, t, y):
        x = self.x_embedder.proj(x).flatten(2).transpose(1, 2) + self.pos_embed
        c = self.t_embedder.mlp(self.timestep_embedding(t)) + self.y_embedder.embedding_table(y)
        for block in self.blocks:
            x = block(x, c)
        shift, scale = self.final_layer.adaLN_modulation(c).chunk(2, dim=1)
        x = self.final_layer.norm_final(x) * (1 + scale[:, None]) + shift[:, None]
        x = self.final_layer.linear(x)
        h = w = int(x.shape[1] ** 0.5)
        x = x.reshape(x.shape[0], h, w, self.p, self.p, self.out_ch)
        x = torch.einsum("nhwpqc->nchpwq", x)
        return x.reshape(x.shape[0], self.out_ch, h * self.p, w * self.p)


def randomize(module: nn.Module, seed: int, std: float = 0.2) -> None:
    """Draw every trainable parameter (zero-initialised ones included) from N(0, std^2)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            if param.requires_grad:
                param.copy_(torch.randn(param.shape, generator=gen) * std)


def numpy_state_dict(module: nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def inputs(seed: int = 0, batch: int = 3):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, CFG["input_size"], CFG["input_size"], CFG["in_channels"]))
    t = rng.uniform(0.0, 1.0, batch).astype(np.float32)
    y = np.array([0, NUM_CLASSES - 1, NUM_CLASSES])[:batch].astype(np.int32)  # incl. null
    return x.astype(np.float32), t, y


def torch_forward(module, x, t, y):
    steps = torch.from_numpy(t * np.float32(1000.0))  # same float32 product as time_scale
    with torch.no_grad():
        out = module(torch.from_numpy(x).permute(0, 3, 1, 2), steps, torch.from_numpy(y).long())
    return out.permute(0, 2, 3, 1).numpy()


@pytest.fixture(scope="module")
def torch_dit():
    module = TorchDiT(**CFG, num_classes=NUM_CLASSES).eval()
    randomize(module, seed=0)
    return module


def new_dit(cls=DiT, **overrides) -> DiT:
    """A shape-only model (``nnx.eval_shape``): no random-init compiles; every parameter
    is then written by ``load_into`` (strict) or :func:`fill_random`."""
    kwargs = dict(CFG, num_classes=NUM_CLASSES, learn_sigma=True, time_scale=1000.0) | overrides
    return nnx.eval_shape(lambda: cls(**kwargs, rngs=nnx.Rngs(0)))


def fill_random(model: nnx.Module, seed: int, std: float = 0.2) -> None:
    """Give every parameter random non-zero values N(0, std^2) (numpy: nothing to compile)."""
    rng = np.random.default_rng(seed)
    for _, var in nnx.state(model, nnx.Param).flat_state():
        var.set_value(jnp.asarray(std * rng.standard_normal(var.get_value().shape), jnp.float32))


@nnx.jit
def forward(model, x, t, y):
    return model(x, t, y)


def test_parity_with_official_layout(torch_dit):
    model = new_dit()
    sd = numpy_state_dict(torch_dit)
    load_into(model, sd, dit_rules(model), ignore=dit_buffer_keys(model))
    x, t, y = inputs()
    with jax.default_matmul_precision("highest"):
        ours = np.asarray(forward(model, x, t, y))
    ref = torch_forward(torch_dit, x, t, y)
    assert ours.shape == ref.shape == (3, 8, 8, 6)
    # The output must be far from zero, or the comparison proves nothing (adaLN-Zero).
    assert np.abs(ref).max() > 0.5
    # fp32 on both sides; the ops differ only in summation order (conv vs patch matmul,
    # fused vs split qkv, SDPA vs XLA attention): a few ulp per op over two blocks.
    err = np.abs(ours - ref).max()
    assert err < 2e-5 * max(1.0, np.abs(ref).max()), err


def test_sincos_table_matches_checkpoint_pos_embed(torch_dit):
    from nnx_nets import sincos_pos_embed_2d

    ours = sincos_pos_embed_2d(CFG["hidden_size"], 4, 4)
    # float64 -> float32 rounding on both sides only.
    np.testing.assert_allclose(ours, torch_dit.pos_embed[0].numpy(), atol=1e-7)


def test_round_trip_nnx_torch_nnx_is_exact(torch_dit):
    source = new_dit()
    fill_random(source, seed=3)  # random non-zero values everywhere
    exported = export_state_dict(source, dit_rules(source))

    module = TorchDiT(**CFG, num_classes=NUM_CLASSES).eval()
    missing, unexpected = module.load_state_dict(
        {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in exported.items()}, strict=False
    )
    assert missing == ["pos_embed"] and not unexpected

    target = new_dit()
    load_into(target, numpy_state_dict(module), dit_rules(target), ignore=dit_buffer_keys(target))
    flat_a = dict(nnx.state(source, nnx.Param).flat_state())
    flat_b = dict(nnx.state(target, nnx.Param).flat_state())
    assert flat_a.keys() == flat_b.keys()
    for path in flat_a:
        np.testing.assert_array_equal(flat_a[path].get_value(), flat_b[path].get_value())

    # The exported torch module computes what the NNX model computes.
    x, t, y = inputs(seed=1)
    with jax.default_matmul_precision("highest"):
        ours = np.asarray(forward(source, x, t, y))
    ref = torch_forward(module, x, t, y)
    assert np.abs(ref).max() > 0.5
    assert np.abs(ours - ref).max() < 2e-5 * max(1.0, np.abs(ref).max())


def test_bad_checkpoint_names_every_offending_key(torch_dit):
    model = new_dit()
    sd = numpy_state_dict(torch_dit)
    del sd["blocks.1.mlp.fc2.weight"]
    sd["blocks.0.attn.qkv.weight"] = sd["blocks.0.attn.qkv.weight"][:, :16]
    sd["blocks.9.attn.proj.weight"] = np.zeros((32, 32), np.float32)
    fill_random(model, seed=5)
    before = np.asarray(model.blocks[0].mlp.fc1.kernel[...]).copy()
    with pytest.raises(ConversionError) as info:
        load_into(model, sd, dit_rules(model), ignore=dit_buffer_keys(model))
    message = str(info.value)
    assert "blocks.1.mlp.fc2.weight" in message
    # each q/k/v chunk of the fused weight is reported with both shapes
    assert "blocks.0.attn.qkv.weight -> blocks.0.attn.query.kernel" in message
    assert "checkpoint gives (16, 32), model expects (32, 32)" in message
    assert "blocks.9.attn.proj.weight" in message
    # Nothing is written when the checkpoint is refused.
    np.testing.assert_array_equal(before, model.blocks[0].mlp.fc1.kernel[...])


def test_wrong_preset_is_refused(torch_dit):
    deeper = new_dit(depth=3)
    with pytest.raises(ConversionError, match="blocks.2.attn.qkv.weight"):
        load_into(
            deeper, numpy_state_dict(torch_dit), dit_rules(deeper), ignore=dit_buffer_keys(deeper)
        )
    no_sigma = new_dit(learn_sigma=False)
    with pytest.raises(ConversionError, match="final_layer.linear.weight"):
        load_into(
            no_sigma,
            numpy_state_dict(torch_dit),
            dit_rules(no_sigma),
            ignore=dit_buffer_keys(no_sigma),
        )


def test_meanflow_rules_cover_dit_plus_dt_embedder(torch_dit):
    model = new_dit(cls=MeanFlowDiT)
    fill_random(model, seed=7)
    rules = meanflow_dit_rules(model)
    exported = export_state_dict(model, rules)
    assert {k for k in exported if k.startswith("dt_embedder")} == {
        "dt_embedder.mlp.0.weight",
        "dt_embedder.mlp.0.bias",
        "dt_embedder.mlp.2.weight",
        "dt_embedder.mlp.2.bias",
    }
    # DiT weights start a MeanFlowDiT (dt_embedder left as it was) with strict=False.
    dt_before = np.asarray(model.dt_embedder.linear_1.kernel[...]).copy()
    load_into(
        model,
        numpy_state_dict(torch_dit),
        dit_rules(model),
        strict=False,
        ignore=dit_buffer_keys(model),
    )
    np.testing.assert_array_equal(
        model.blocks[1].attn.out.kernel[...],
        numpy_state_dict(torch_dit)["blocks.1.attn.proj.weight"].T,
    )
    np.testing.assert_array_equal(dt_before, model.dt_embedder.linear_1.kernel[...])
