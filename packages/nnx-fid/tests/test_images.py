"""The uint8 conversion: rounding, exact inverse on the 256 levels."""

from __future__ import annotations

import numpy as np
import pytest

import nnx_fid


def test_rounding_rule():
    x = np.array([-1.5, -1.0, -1.0 + 0.4 / 127.5, -1.0 + 0.6 / 127.5, 0.0, 1.0, 2.0], np.float32)
    np.testing.assert_array_equal(np.asarray(nnx_fid.to_uint8(x)), [0, 0, 0, 1, 128, 255, 255])
    assert nnx_fid.QUANTISATION == "round"


def test_levels_round_trip():
    levels = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(np.asarray(nnx_fid.to_uint8(nnx_fid.from_uint8(levels))), levels)
    with pytest.raises(TypeError, match="uint8"):
        nnx_fid.from_uint8(levels.astype(np.float32))
