"""`adm_center_crop` (one crop for data, reference statistics and rFID) and the provenance
helpers that every result file records."""

import pathlib

import numpy as np
from PIL import Image

import nnx_fid


def test_crop_halves_with_a_box_filter_then_takes_the_centre():
    # 64 wide x 32 tall, grey value constant over each pair of columns: one BOX halving
    # (short side 32 >= 2 * 16) gives 32 x 16 with column c = 4 c exactly, the bicubic
    # resize to short side 16 is then the identity, and the centre crop keeps columns 8..23.
    columns = (np.arange(64) // 2 * 4).astype(np.uint8)
    image = Image.fromarray(np.tile(columns, (32, 1)), mode="L")
    crop = nnx_fid.adm_center_crop(image, 16)
    assert crop.shape == (16, 16, 3) and crop.dtype == np.uint8
    assert crop.flags.c_contiguous
    expected = np.broadcast_to((np.arange(8, 24) * 4).astype(np.uint8)[None, :, None], crop.shape)
    np.testing.assert_array_equal(crop, expected)


def test_crop_of_a_square_at_the_target_size_is_the_image():
    pixels = np.random.default_rng(0).integers(0, 256, (12, 12, 3), dtype=np.uint8)
    np.testing.assert_array_equal(nnx_fid.adm_center_crop(Image.fromarray(pixels), 12), pixels)


def test_package_versions_and_git_commit(tmp_path):
    versions = nnx_fid.package_versions(["numpy", "no-such-distribution-nnx"])
    assert versions == {"numpy": np.__version__, "no-such-distribution-nnx": None}
    here = nnx_fid.git_commit(pathlib.Path(__file__).parent)
    assert len(here["commit"]) == 40 and isinstance(here["dirty"], bool)
    assert nnx_fid.git_commit(tmp_path) == {"commit": None, "dirty": None}
