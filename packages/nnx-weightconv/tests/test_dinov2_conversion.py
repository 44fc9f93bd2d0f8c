"""DINOv2 conversion: parity with transformers (both variants) and timm, layouts, round trip.

Reference models are tiny (width 32, 2 blocks, patch 4, 16-px training grid of 4 x 4) with every
parameter drawn N(0, 0.3^2), so that layerscale, biases and the mask/register tokens are all
non-trivial. Everything runs in float32; the NNX model runs at Precision.HIGHEST.
"""

import functools
import pathlib
import tempfile

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from transformers import (
    Dinov2Config,
    Dinov2Model,
    Dinov2WithRegistersConfig,
    Dinov2WithRegistersModel,
)
from weightconv_testlib import randomise_torch

from nnx_nets import DINOv2
from nnx_weightconv import ConversionError, export_state_dict, read_state_dict
from nnx_weightconv.specs.dinov2 import dinov2_layout, dinov2_rules, load_dinov2

torch.set_num_threads(1)

WIDTH, DEPTH, HEADS, PATCH, IMAGE = 32, 2, 2, 4, 16
# fp32 parity: both sides sum in float32 in different orders; measured max abs error is
# about 1e-6 on outputs of magnitude ~2, so 2e-5 leaves margin while a wrong layout, norm,
# activation or interpolation mode gives errors of order 1e-1.
ATOL = 2e-5


def _torch_dinov2(registers: bool, swiglu: bool) -> torch.nn.Module:
    kwargs = {
        "hidden_size": WIDTH,
        "num_hidden_layers": DEPTH,
        "num_attention_heads": HEADS,
        "image_size": IMAGE,
        "patch_size": PATCH,
        "use_swiglu_ffn": swiglu,
    }
    if registers:
        model = Dinov2WithRegistersModel(Dinov2WithRegistersConfig(num_register_tokens=4, **kwargs))
    else:
        model = Dinov2Model(Dinov2Config(**kwargs))
    randomise_torch(model, seed=1 + int(registers))
    return model.eval()


def _abstract_nnx(registers: bool, swiglu: bool, **kwargs) -> DINOv2:
    """A fresh abstract model; the constructor is traced once per configuration."""
    return nnx.clone(_abstract_model(registers, swiglu, tuple(sorted(kwargs.items()))))


@functools.cache
def _abstract_model(registers: bool, swiglu: bool, extra: tuple):
    kwargs = dict(extra)
    model = nnx.eval_shape(
        lambda: DINOv2(
            hidden_size=WIDTH,
            depth=DEPTH,
            num_heads=HEADS,
            patch_size=PATCH,
            image_size=IMAGE,
            ffn="swiglu" if swiglu else "mlp",
            num_register_tokens=4 if registers else 0,
            rngs=nnx.Rngs(0),
            **kwargs,
        )
    )
    return model


@functools.cache
def _case(registers: bool, swiglu: bool) -> dict:
    """A random transformers model, its hub-format file, and the NNX model loaded from it."""
    torch_model = _torch_dinov2(registers, swiglu)
    with tempfile.TemporaryDirectory() as directory:
        torch_model.save_pretrained(directory)
        file_dict = read_state_dict(pathlib.Path(directory) / "model.safetensors")
    model = _abstract_nnx(registers, swiglu)
    assert load_dinov2(model, file_dict) == "hf"
    return {
        "registers": registers,
        "swiglu": swiglu,
        "torch": torch_model,
        "file": file_dict,
        "model": model,
    }


VARIANTS = pytest.mark.parametrize(
    "variant", [(False, False), (True, True)], ids=["plain", "reg-swiglu"]
)


def _params(model) -> dict:
    return {
        ".".join(map(str, path)): np.asarray(var.get_value())
        for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param))
    }


@nnx.jit
def _jit_forward(model, images):
    return model(images, intermediate_layers=(1,))


def _forward(model, images: np.ndarray) -> dict:
    # One jitted function for the whole module: models of equal structure share compilations.
    return _jit_forward(model, jnp.asarray(images))


@VARIANTS
def test_file_keys_are_the_hub_layout(variant):
    case = _case(*variant)
    # save_pretrained of transformers 5 writes the hub layout, not the in-memory names.
    keys = set(case["file"])
    assert "encoder.layer.0.attention.attention.query.weight" in keys
    assert ("encoder.layer.0.mlp.weights_in.weight" in keys) == case["swiglu"]
    assert ("embeddings.register_tokens" in keys) == case["registers"]


@VARIANTS
@pytest.mark.parametrize("size", [(16, 16), (12, 20)], ids=["native", "interpolated"])
def test_parity_with_transformers(variant, size):
    case = _case(*variant)
    # Native grid (no interpolation) and a non-square, smaller grid: bicubic size mode for
    # Dinov2Model, antialiased for Dinov2WithRegistersModel.
    rng = np.random.default_rng(3)
    images = rng.standard_normal((2, *size, 3)).astype(np.float32)
    out = _forward(case["model"], images)
    with torch.no_grad():
        ref = case["torch"](
            torch.from_numpy(images.transpose(0, 3, 1, 2)), output_hidden_states=True
        )
    last = ref.last_hidden_state.numpy()
    first_patch = 5 if case["registers"] else 1
    assert np.abs(last).max() > 0.5  # the comparison is not between near-zero tensors
    np.testing.assert_allclose(np.asarray(out["cls"]), last[:, 0], atol=ATOL)
    np.testing.assert_allclose(np.asarray(out["patch_tokens"]), last[:, first_patch:], atol=ATOL)
    np.testing.assert_allclose(
        np.asarray(out["register_tokens"]), last[:, 1:first_patch], atol=ATOL
    )
    np.testing.assert_allclose(np.asarray(out["block_1"]), ref.hidden_states[1].numpy(), atol=ATOL)


def test_final_norm_without_affine():
    # RAE's encoder (DINOv2 with registers): the checkpoint's final LayerNorm weight/bias are
    # skipped, and the affine output is exactly scale * plain + bias.
    case = _case(True, True)
    plain = _abstract_nnx(case["registers"], case["swiglu"], final_norm_affine=False)
    load_dinov2(plain, case["file"])
    images = np.random.default_rng(4).standard_normal((2, 16, 16, 3)).astype(np.float32)
    affine_out = _forward(case["model"], images)["patch_tokens"]
    plain_out = _forward(plain, images)["patch_tokens"]
    weight, bias = case["file"]["layernorm.weight"], case["file"]["layernorm.bias"]
    np.testing.assert_allclose(
        np.asarray(plain_out) * weight + bias, np.asarray(affine_out), atol=1e-5
    )
    assert np.abs(np.asarray(plain_out) - np.asarray(affine_out)).max() > 0.1


def _hub_dict(file_dict: dict, depth: int) -> dict:
    """The torch-hub layout of the same weights, from facebookresearch/dinov2 / timm's filter."""
    out = {
        "cls_token": file_dict["embeddings.cls_token"],
        "mask_token": file_dict["embeddings.mask_token"],
        "pos_embed": file_dict["embeddings.position_embeddings"],
        "patch_embed.proj.weight": file_dict["embeddings.patch_embeddings.projection.weight"],
        "patch_embed.proj.bias": file_dict["embeddings.patch_embeddings.projection.bias"],
        "norm.weight": file_dict["layernorm.weight"],
        "norm.bias": file_dict["layernorm.bias"],
    }
    if "embeddings.register_tokens" in file_dict:
        out["register_tokens"] = file_dict["embeddings.register_tokens"]
    for i in range(depth):
        src, dst = f"encoder.layer.{i}", f"blocks.{i}"
        for suffix in ("weight", "bias"):
            out[f"{dst}.attn.qkv.{suffix}"] = np.concatenate(
                [
                    file_dict[f"{src}.attention.attention.{n}.{suffix}"]
                    for n in ("query", "key", "value")
                ]
            )
            out[f"{dst}.attn.proj.{suffix}"] = file_dict[f"{src}.attention.output.dense.{suffix}"]
            out[f"{dst}.norm1.{suffix}"] = file_dict[f"{src}.norm1.{suffix}"]
            out[f"{dst}.norm2.{suffix}"] = file_dict[f"{src}.norm2.{suffix}"]
            if f"{src}.mlp.weights_in.{suffix}" in file_dict:
                out[f"{dst}.mlp.w12.{suffix}"] = file_dict[f"{src}.mlp.weights_in.{suffix}"]
                out[f"{dst}.mlp.w3.{suffix}"] = file_dict[f"{src}.mlp.weights_out.{suffix}"]
            else:
                out[f"{dst}.mlp.fc1.{suffix}"] = file_dict[f"{src}.mlp.fc1.{suffix}"]
                out[f"{dst}.mlp.fc2.{suffix}"] = file_dict[f"{src}.mlp.fc2.{suffix}"]
        out[f"{dst}.ls1.gamma"] = file_dict[f"{src}.layer_scale1.lambda1"]
        out[f"{dst}.ls2.gamma"] = file_dict[f"{src}.layer_scale2.lambda1"]
    return out


@VARIANTS
def test_other_layouts_load_the_same_parameters(variant):
    case = _case(*variant)
    # torch-hub (fused qkv and w12) and transformers' in-memory names give bit-identical params.
    reference = _params(case["model"])
    in_memory = {k: v.numpy() for k, v in case["torch"].state_dict().items()}
    hub = _hub_dict(case["file"], DEPTH)
    for state_dict, layout in [(in_memory, "transformers"), (hub, "hub")]:
        model = _abstract_nnx(case["registers"], case["swiglu"])
        assert load_dinov2(model, state_dict) == layout
        loaded = _params(model)
        assert loaded.keys() == reference.keys()
        for key, value in reference.items():
            np.testing.assert_array_equal(loaded[key], value, err_msg=f"{layout}: {key}")


@VARIANTS
def test_round_trip_is_exact(variant):
    case = _case(*variant)
    # NNX -> torch layout reproduces the file bit for bit; torch -> NNX gives the same params.
    for layout, source in [("hf", case["file"]), ("hub", _hub_dict(case["file"], DEPTH))]:
        exported = export_state_dict(case["model"], dinov2_rules(case["model"], layout=layout))
        assert exported.keys() == source.keys()
        for key, value in source.items():
            np.testing.assert_array_equal(exported[key], value, err_msg=f"{layout}: {key}")
        again = _abstract_nnx(case["registers"], case["swiglu"])
        load_dinov2(again, exported)
        reloaded = _params(again)
        for key, value in _params(case["model"]).items():
            np.testing.assert_array_equal(reloaded[key], value)


@VARIANTS
def test_wrong_checkpoint_fails_by_name(variant):
    case = _case(*variant)
    broken = dict(case["file"])
    del broken["encoder.layer.1.norm2.bias"]
    broken["encoder.layer.0.attention.attention.query.weight"] = np.zeros((WIDTH, WIDTH + 1))
    broken["encoder.layer.7.extra.weight"] = np.zeros(3)
    model = _abstract_nnx(case["registers"], case["swiglu"])
    with pytest.raises(ConversionError) as error:
        load_dinov2(model, broken)
    message = str(error.value)
    assert "encoder.layer.1.norm2.bias" in message
    assert "encoder.layer.0.attention.attention.query.weight" in message
    assert f"({WIDTH + 1}, {WIDTH})" in message  # shapes are reported in the NNX layout
    assert "encoder.layer.7.extra.weight" in message
    with pytest.raises(ConversionError, match="not a DINOv2 checkpoint"):
        dinov2_layout({"model.weight": np.zeros(1)})
    # A register checkpoint into a model without registers (or vice versa) is caught.
    other = _abstract_nnx(not case["registers"], case["swiglu"])
    with pytest.raises(ConversionError, match="register_tokens"):
        load_dinov2(other, case["file"])


def test_hub_layout_matches_timm():
    # timm's DINOv2 ViT uses the torch-hub key names (timm only renames w12/w3 and registers),
    # so a non-register GELU model is an independent reference for the "hub" layout.
    from timm.models.vision_transformer import VisionTransformer

    reference = VisionTransformer(
        img_size=IMAGE,
        patch_size=PATCH,
        embed_dim=WIDTH,
        depth=DEPTH,
        num_heads=HEADS,
        init_values=0.5,
        num_classes=0,
    )
    randomise_torch(reference, seed=5)
    reference.eval()
    state_dict = {k: v.numpy() for k, v in reference.state_dict().items()}
    state_dict["mask_token"] = np.zeros((1, WIDTH), np.float32)
    model = _abstract_nnx(False, False)
    assert load_dinov2(model, state_dict) == "hub"
    images = np.random.default_rng(6).standard_normal((2, IMAGE, IMAGE, 3)).astype(np.float32)
    out = _forward(model, images)
    with torch.no_grad():
        tokens = reference.forward_features(torch.from_numpy(images.transpose(0, 3, 1, 2))).numpy()
    np.testing.assert_allclose(np.asarray(out["cls"]), tokens[:, 0], atol=ATOL)
    np.testing.assert_allclose(np.asarray(out["patch_tokens"]), tokens[:, 1:], atol=ATOL)
