"""The two bilinear front ends against their reference formulas."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import nnx_fid
from nnx_fid.preprocess import inception_preprocess


def tf1_resize_reference(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """TF1 ``ResizeBilinear`` (align_corners=False, no half pixel) written pixel by pixel:
    source = out_index * in / out, lower index floored, upper index clamped to the last."""
    in_h, in_w = image.shape[:2]
    out = np.zeros((out_h, out_w, image.shape[2]))
    for y in range(out_h):
        sy = y * in_h / out_h
        y0 = math.floor(sy)
        y1, dy = min(y0 + 1, in_h - 1), sy - y0
        for x in range(out_w):
            sx = x * in_w / out_w
            x0 = math.floor(sx)
            x1, dx = min(x0 + 1, in_w - 1), sx - x0
            top = image[y0, x0] + (image[y0, x1] - image[y0, x0]) * dx
            bottom = image[y1, x0] + (image[y1, x1] - image[y1, x0]) * dx
            out[y, x] = top + (bottom - top) * dy
    return out


def test_documented_vector():
    signal = np.array([0.0, 10.0])
    np.testing.assert_allclose(nnx_fid.interpolation_matrix(2, 4, "tf1") @ signal, [0, 5, 10, 10])
    np.testing.assert_allclose(
        nnx_fid.interpolation_matrix(2, 4, "pytorch_fid") @ signal, [0, 2.5, 7.5, 10]
    )


@pytest.mark.parametrize("mode", nnx_fid.RESIZE_MODES)
@pytest.mark.parametrize("sizes", [(2, 4), (32, 299), (256, 299), (512, 299), (7, 3)])
def test_rows_are_convex_weights(mode, sizes):
    matrix = nnx_fid.interpolation_matrix(*sizes, mode)
    assert matrix.shape == (sizes[1], sizes[0])
    assert np.all(matrix >= 0)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, rtol=0, atol=1e-12)


@pytest.mark.parametrize("mode", nnx_fid.RESIZE_MODES)
def test_same_size_is_identity(mode):
    np.testing.assert_array_equal(nnx_fid.interpolation_matrix(299, 299, mode), np.eye(299))


# float32 application of float64 weights to values in [0, 255]: errors of a few ulp of 255
# (1.5e-5 each); 1e-3 grey levels is far below the 1-level changes a wrong index rule causes.
LEVEL_TOLERANCE = 1e-3


@pytest.mark.parametrize(
    "in_hw, out_hw", [((5, 7), (11, 13)), ((13, 9), (4, 5)), ((32, 40), (299, 299))]
)
def test_tf1_matches_index_rule(in_hw, out_hw):
    image = np.random.default_rng(1).uniform(0, 255, (*in_hw, 3))
    ours = nnx_fid.resize_bilinear(jnp.asarray(image[None], jnp.float32), out_hw, "tf1")[0]
    expected = tf1_resize_reference(image, *out_hw)
    np.testing.assert_allclose(np.asarray(ours), expected, rtol=0, atol=LEVEL_TOLERANCE)


@pytest.mark.parametrize(
    "in_hw, out_hw", [((5, 7), (11, 13)), ((32, 40), (299, 299)), ((512, 384), (299, 299))]
)
def test_pytorch_fid_matches_torch_bilinear(in_hw, out_hw):
    images = np.random.default_rng(2).uniform(0, 255, (2, *in_hw, 3)).astype(np.float32)
    expected = (
        F.interpolate(
            torch.from_numpy(images).permute(0, 3, 1, 2),
            size=out_hw,
            mode="bilinear",
            align_corners=False,
        )
        .permute(0, 2, 3, 1)
        .numpy()
    )
    ours = np.asarray(nnx_fid.resize_bilinear(jnp.asarray(images), out_hw, "pytorch_fid"))
    # torch computes source coordinates in float32: an error of up to in_size * 2^-23 pixels,
    # times a slope of up to 255 levels per pixel (0.016 levels at 512 px; measured 0.0077).
    coordinate_error = 255 * max(in_hw) * 2.0**-23
    np.testing.assert_allclose(ours, expected, rtol=0, atol=LEVEL_TOLERANCE + coordinate_error)


def test_modes_differ_on_upsampling():
    image = np.random.default_rng(3).uniform(0, 255, (1, 32, 32, 3)).astype(np.float32)
    tf1 = nnx_fid.resize_bilinear(jnp.asarray(image), (299, 299), "tf1")
    half = nnx_fid.resize_bilinear(jnp.asarray(image), (299, 299), "pytorch_fid")
    assert float(jnp.abs(tf1 - half).max()) > 10.0


def test_normalisation_per_front_end():
    levels = np.array([0, 128, 255], np.uint8)
    images = np.broadcast_to(levels[:, None, None, None], (3, 8, 8, 3))
    tf1 = np.asarray(inception_preprocess(jnp.asarray(images), "tf1"))[:, 0, 0, 0]
    torch_like = np.asarray(inception_preprocess(jnp.asarray(images), "pytorch_fid"))[:, 0, 0, 0]
    np.testing.assert_allclose(tf1, [-1.0, 0.0, 127 / 128], rtol=0, atol=1e-6)
    np.testing.assert_allclose(torch_like, [-1.0, 2 * 128 / 255 - 1, 1.0], rtol=0, atol=1e-6)


def test_bad_mode_is_named():
    with pytest.raises(ValueError, match="tf1"):
        nnx_fid.interpolation_matrix(4, 8, "bicubic")
    with pytest.raises(ValueError, match="front end"):
        inception_preprocess(jnp.zeros((1, 8, 8, 3)), "clean")
