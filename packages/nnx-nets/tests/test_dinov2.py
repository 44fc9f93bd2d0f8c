"""DINOv2: position-table resizing against torch, preset parameter counts, structure and errors.

Parity of the whole network with transformers lives in nnx-weightconv's tests (it needs the
conversion spec).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from flax import nnx

from nnx_nets.dinov2 import DINOV2_PRESETS, DINOv2, DINOv2Block, dinov2_from_preset
from nnx_nets.dinov2_pos_embed import resize_matrix, resize_pos_grid
from nnx_nets.testing import random_model

torch.set_num_threads(1)


def _torch_resize(table: np.ndarray, out: int, mode: str) -> np.ndarray:
    """Reference: the three ways the published implementations call F.interpolate."""
    x = torch.from_numpy(table)
    match mode:
        case "bicubic":
            y = F.interpolate(x, size=(out, out), mode="bicubic", align_corners=False)
        case "bicubic_antialias":
            y = F.interpolate(
                x, size=(out, out), mode="bicubic", align_corners=False, antialias=True
            )
        case "bicubic_offset":
            factor = (out + 0.1) / table.shape[-1]
            y = F.interpolate(x, scale_factor=(factor, factor), mode="bicubic", align_corners=False)
    return y.numpy()


@pytest.mark.parametrize("mode", ["bicubic", "bicubic_antialias", "bicubic_offset"])
def test_resize_matches_torch_interpolate(mode):
    # Down- and up-sampling of a random 37x37 table (the released grid) and a small one.
    # Tolerance 5e-5: torch computes the bicubic weights in float32, and the cancellation in
    # Keys' outer taps leaves ~4e-6 error per weight (measured max 2e-5 on N(0,1) tables);
    # a wrong kernel, antialias or offset choice gives errors of order 1e-1.
    rng = np.random.default_rng(0)
    worst = 0.0
    for side, outs in [(37, [6, 16, 32, 40]), (4, [3, 6])]:
        table = rng.standard_normal((1, 3, side, side)).astype(np.float32)
        for out in outs:
            ref = _torch_resize(table, out, mode)
            matrix = resize_matrix(side, out, mode)
            ours = np.einsum("hi,wj,bcij->bchw", matrix, matrix, table.astype(np.float64))
            assert ours.shape == ref.shape
            worst = max(worst, float(np.abs(ours - ref).max()))
    assert worst < 5e-5, worst


def test_resize_modes_differ_and_identity_at_native_grid():
    rng = np.random.default_rng(1)
    table = jnp.asarray(rng.standard_normal((37, 37, 8)), jnp.float32)
    assert resize_pos_grid(table, (37, 37), "bicubic") is table
    plain = resize_pos_grid(table, (16, 16), "bicubic")
    antialias = resize_pos_grid(table, (16, 16), "bicubic_antialias")
    offset = resize_pos_grid(table, (16, 16), "bicubic_offset")
    # Measured on this project's CPU: the modes differ by tens of percent on a random table.
    assert float(jnp.abs(plain - antialias).max()) > 0.1
    assert float(jnp.abs(plain - offset).max()) > 0.1
    with pytest.raises(ValueError, match="bicubic_antialias"):
        resize_matrix(37, 16, "bilinear")


def _count(module) -> int:
    return sum(x.size for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


# Measured with transformers 5.24 on torch's meta device, for the record:
# S 22,056,576 / B 86,580,480 / L 304,368,640 / g 1,136,480,768; registers add 4 * D.
def _transformers_count(preset: dict) -> int:
    """Parameters of transformers' Dinov2(WithRegisters)Model at 518 px, on the meta device."""
    from transformers import (
        Dinov2Config,
        Dinov2Model,
        Dinov2WithRegistersConfig,
        Dinov2WithRegistersModel,
    )

    kwargs = {
        "hidden_size": preset["hidden_size"],
        "num_hidden_layers": preset["depth"],
        "num_attention_heads": preset["num_heads"],
        "image_size": 518,
        "patch_size": 14,
        "use_swiglu_ffn": preset["ffn"] == "swiglu",
    }
    registers = preset.get("num_register_tokens", 0)
    with torch.device("meta"):
        if registers:
            config = Dinov2WithRegistersConfig(num_register_tokens=registers, **kwargs)
            model = Dinov2WithRegistersModel(config)
        else:
            model = Dinov2Model(Dinov2Config(**kwargs))
    return sum(p.numel() for p in model.parameters())


def _arithmetic_count(preset: dict) -> int:
    d, depth = preset["hidden_size"], preset["depth"]
    embed = 3 * 14 * 14 * d + d + d + d + (37 * 37 + 1) * d  # patch conv, cls, mask, pos
    embed += preset.get("num_register_tokens", 0) * d
    if preset["ffn"] == "swiglu":
        hidden = (int(4 * d * 2 / 3) + 7) // 8 * 8
        ffn = 2 * (d * hidden + hidden) + hidden * d + d
    else:
        ffn = d * 4 * d + 4 * d + 4 * d * d + d
    block = 4 * d + 4 * (d * d + d) + 2 * d + ffn  # 2 norms, q/k/v/o, 2 layerscales
    return embed + depth * block + 2 * d


@pytest.mark.parametrize("name", sorted(DINOV2_PRESETS))
def test_preset_parameter_counts(name):
    # eval_shape of the full 40-block ViT-g takes over a minute on 2 shared cores (flax
    # inspects the sharding of every traced RNG counter update, quadratic in the trace
    # length), so the count is the stem (depth 0) plus depth times one block, each from
    # nnx.eval_shape; test_stem_plus_blocks_equals_full checks that decomposition.
    preset = DINOV2_PRESETS[name]
    stem = nnx.eval_shape(lambda: dinov2_from_preset(name, depth=0, rngs=nnx.Rngs(0)))
    block = nnx.eval_shape(
        lambda: DINOv2Block(
            preset["hidden_size"], preset["num_heads"], ffn=preset["ffn"], rngs=nnx.Rngs(0)
        )
    )
    ours = _count(stem) + preset["depth"] * _count(block)
    assert ours == _transformers_count(preset) == _arithmetic_count(preset)


def test_stem_plus_blocks_equals_full():
    # A 3-block ViT-S/14-reg traced whole equals the stem + 3 blocks decomposition.
    preset = {**DINOV2_PRESETS["dinov2-vits14-reg"], "depth": 3}
    full = nnx.eval_shape(lambda: DINOv2(**preset, rngs=nnx.Rngs(0)))
    stem = nnx.eval_shape(lambda: DINOv2(**{**preset, "depth": 0}, rngs=nnx.Rngs(0)))
    block = nnx.eval_shape(lambda: DINOv2Block(384, 6, rngs=nnx.Rngs(0)))
    assert _count(full) == _count(stem) + 3 * _count(block) == _arithmetic_count(preset)


def _tiny(**kwargs) -> DINOv2:
    base = {"hidden_size": 32, "depth": 2, "num_heads": 2, "patch_size": 4, "image_size": 16}
    return random_model(lambda: DINOv2(**{**base, **kwargs}, rngs=nnx.Rngs(0)))


def test_outputs_shapes_and_scan_remat_equivalence():
    model = _tiny(num_register_tokens=4)
    images = jnp.asarray(np.random.default_rng(0).standard_normal((2, 12, 20, 3)), jnp.float32)
    out = nnx.jit(lambda m, x: m(x, intermediate_layers=(1, 2)))(model, images)
    assert out["cls"].shape == (2, 32)
    assert out["register_tokens"].shape == (2, 4, 32)
    assert out["patch_tokens"].shape == (2, 3 * 5, 32)
    assert out["block_1"].shape == out["block_2"].shape == (2, 1 + 4 + 15, 32)
    assert out["cls"].dtype == jnp.float32
    assert float(jnp.abs(out["patch_tokens"]).mean()) > 0.1
    # The final norm is applied to the last block's tokens.
    np.testing.assert_allclose(
        np.asarray(model.norm(out["block_2"])[:, 5:]), np.asarray(out["patch_tokens"]), atol=1e-6
    )
    scanned = _tiny(num_register_tokens=4, scan=True, remat=True)
    nnx.update(scanned, nnx.state(model, nnx.Param))
    out_scan = nnx.jit(lambda m, x: m(x, intermediate_layers=(1,)))(scanned, images)
    # Same arithmetic in a different loop structure: fp32 reassociation only (1e-5).
    np.testing.assert_allclose(np.asarray(out_scan["cls"]), np.asarray(out["cls"]), atol=1e-5)
    np.testing.assert_allclose(
        np.asarray(out_scan["block_1"]), np.asarray(out["block_1"]), atol=1e-5
    )


def test_eager_construction_initialises_like_dinov2():
    # One real (eager) construction: layerscale at its init value, zero mask token,
    # truncated-normal(0.02) weights, unit LayerNorm scales.
    model = DINOv2(
        hidden_size=16,
        depth=1,
        num_heads=2,
        patch_size=4,
        image_size=8,
        layerscale_init=1e-5,
        rngs=nnx.Rngs(0),
    )
    block = model.blocks[0]
    np.testing.assert_array_equal(np.asarray(block.ls1[...]), np.full(16, 1e-5, np.float32))
    assert not np.asarray(model.mask_token[...]).any()
    kernel = np.asarray(block.attn.query.kernel[...])
    assert 0.01 < kernel.std() < 0.03 and np.abs(kernel).max() <= 0.04 + 1e-6
    np.testing.assert_array_equal(np.asarray(model.norm.scale[...]), np.ones(16, np.float32))
    assert block.attn.query.kernel.get_metadata()["logical_axes"] == ("embed", "heads")


def test_bad_inputs_raise_clear_errors():
    model = _tiny()
    with pytest.raises(ValueError, match="multiple of the patch size"):
        model(jnp.zeros((1, 15, 16, 3)))
    with pytest.raises(ValueError, match="numbered 1..2"):
        model(jnp.zeros((1, 16, 16, 3)), intermediate_layers=(3,))
    with pytest.raises(ValueError, match="unknown pos_embed_interpolation"):
        _tiny(pos_embed_interpolation="nearest")
    with pytest.raises(ValueError, match="unknown ffn"):
        _tiny(ffn="geglu")
    with pytest.raises(ValueError, match="unknown DINOv2 preset"):
        dinov2_from_preset("dinov2-vith14", rngs=nnx.Rngs(0))
    assert _tiny().pos_embed_interpolation == "bicubic"
    assert _tiny(num_register_tokens=4).pos_embed_interpolation == "bicubic_antialias"
    assert _tiny(final_norm_affine=False).norm.scale is None
