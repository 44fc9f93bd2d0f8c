"""Feature extraction plumbing and the FD-DINOv2 extractor (EDM2 front end, nnx-nets DINOv2)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from flax import nnx

import nnx_fid


class _MeanExtractor:
    """Per-image channel means; records the batch shapes it was called with."""

    front_end = "test"

    def __init__(self):
        self.shapes = []

    def __call__(self, images):
        self.shapes.append(images.shape)
        return {"mean": images.astype(np.float32).mean(axis=(1, 2))}


def test_last_batch_is_padded_then_dropped():
    images = np.random.default_rng(0).integers(0, 256, (7, 4, 4, 3), dtype=np.uint8)
    extractor = _MeanExtractor()
    features = nnx_fid.extract_features([extractor], images, batch_size=3, progress=False)
    assert extractor.shapes == [(3, 4, 4, 3)] * 3
    np.testing.assert_allclose(features["mean"], images.astype(np.float32).mean(axis=(1, 2)))
    streamed = nnx_fid.feature_statistics(
        [_MeanExtractor()],
        iter([images[:3], images[3:6], images[6:]]),
        names=("mean",),
        batch_size=3,
        progress=False,
    )["mean"]
    direct = nnx_fid.GaussianStats.from_features(features["mean"])
    np.testing.assert_allclose(streamed.mu, direct.mu, rtol=1e-12)
    np.testing.assert_allclose(streamed.sigma, direct.sigma, rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="exceeds batch_size"):
        nnx_fid.extract_features([extractor], iter([images]), batch_size=3, progress=False)
    with pytest.raises(TypeError, match="uint8"):
        nnx_fid.extract_features([extractor], images.astype(np.float32), progress=False)


# Torch's antialiased bicubic and JAX's ('cubic', antialias=True) compute the same weights in
# float32; measured differences up to 2.5e-3 grey levels = 4.4e-5 after /255 and /std (0.225).
NORMALISED_TOLERANCE = 1e-4


@pytest.mark.parametrize("hw", [(64, 64), (256, 256), (48, 80)])
def test_dinov2_front_end_matches_edm2_torch(hw):
    images = np.random.default_rng(1).integers(0, 256, (2, *hw, 3), dtype=np.uint8)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).to(torch.float32)
    x = F.interpolate(x, size=(224, 224), mode="bicubic", antialias=True) / 255
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    expected = ((x - mean) / std).permute(0, 2, 3, 1).numpy()
    ours = np.asarray(nnx_fid.dinov2_preprocess(jnp.asarray(images)))
    np.testing.assert_allclose(ours, expected, rtol=0, atol=NORMALISED_TOLERANCE)


def _hf_dinov2_state(width: int, grid: int, rng) -> dict[str, np.ndarray]:
    """Random tensors under the HF hub keys of a one-block DINOv2 (transformers' layout)."""
    shapes = {
        "embeddings.cls_token": (1, 1, width),
        "embeddings.mask_token": (1, width),
        "embeddings.position_embeddings": (1, 1 + grid * grid, width),
        "embeddings.patch_embeddings.projection.weight": (width, 3, 14, 14),
        "embeddings.patch_embeddings.projection.bias": (width,),
        "layernorm.weight": (width,),
        "layernorm.bias": (width,),
    }
    block = "encoder.layer.0."
    for name in ("norm1", "norm2"):
        shapes.update({f"{block}{name}.weight": (width,), f"{block}{name}.bias": (width,)})
    for name in (
        "attention.attention.query",
        "attention.attention.key",
        "attention.attention.value",
        "attention.output.dense",
    ):
        shapes.update({f"{block}{name}.weight": (width, width), f"{block}{name}.bias": (width,)})
    shapes.update(
        {
            f"{block}mlp.fc1.weight": (4 * width, width),
            f"{block}mlp.fc1.bias": (4 * width,),
            f"{block}mlp.fc2.weight": (width, 4 * width),
            f"{block}mlp.fc2.bias": (width,),
            f"{block}layer_scale1.lambda1": (width,),
            f"{block}layer_scale2.lambda1": (width,),
        }
    )
    return {k: (0.2 * rng.normal(size=v)).astype(np.float32) for k, v in shapes.items()}


@pytest.fixture(scope="module")
def hf_dinov2_file(tmp_path_factory):
    """A tiny DINOv2 checkpoint (random, non-trivial final norm) saved as ``model.safetensors``."""
    from safetensors.numpy import save_file

    state = _hf_dinov2_state(32, 4, np.random.default_rng(0))
    state["layernorm.weight"] = np.linspace(0.5, 1.5, 32, dtype=np.float32)
    path = tmp_path_factory.mktemp("dinov2") / "model.safetensors"
    save_file(state, str(path))
    return path, state


@pytest.fixture(scope="module")
def tiny_dinov2(hf_dinov2_file):
    path, _ = hf_dinov2_file
    return nnx_fid.load_fd_dinov2(path, hidden_size=32, depth=1, num_heads=2, image_size=56)


def test_load_fd_dinov2(tiny_dinov2, hf_dinov2_file):
    _, state = hf_dinov2_file
    assert tiny_dinov2.pos_embed_interpolation == "bicubic_offset"  # EDM2 / torch-hub mode
    for ours, key in (
        (tiny_dinov2.cls_token, "embeddings.cls_token"),
        (tiny_dinov2.norm.scale, "layernorm.weight"),
    ):
        np.testing.assert_array_equal(np.asarray(ours[...]).reshape(-1), state[key].reshape(-1))
    with pytest.raises(FileNotFoundError, match="dinov2_vitl14_pretrain.pth"):
        nnx_fid.load_fd_dinov2(None)


def test_dinov2_features_are_cls_after_norm(tiny_dinov2):
    images = np.random.default_rng(2).integers(0, 256, (3, 40, 40, 3), dtype=np.uint8)
    features = nnx_fid.DINOv2Features(tiny_dinov2)(images)["dinov2"]
    graphdef, state = nnx.split(tiny_dinov2)
    direct = jax.jit(lambda s, x: nnx.merge(graphdef, s)(nnx_fid.dinov2_preprocess(x))["cls"])
    expected = direct(state, jnp.asarray(images))
    assert features.shape == (3, 32)
    # The same computation compiled separately: float32 reassociation only.
    np.testing.assert_allclose(features, np.asarray(expected), rtol=1e-5, atol=1e-5)
    mesh = jax.make_mesh((8,), ("data",))
    sharded = nnx_fid.DINOv2Features(tiny_dinov2, mesh=mesh)(images)["dinov2"]  # 3 -> padded to 8
    np.testing.assert_allclose(sharded, features, rtol=1e-5, atol=1e-5)


class _OtherInterpolation(nnx.Module):
    pos_embed_interpolation = "bicubic"


def test_dinov2_interpolation_mode_is_checked():
    with pytest.warns(UserWarning, match="bicubic_offset"):
        nnx_fid.DINOv2Features(_OtherInterpolation())
