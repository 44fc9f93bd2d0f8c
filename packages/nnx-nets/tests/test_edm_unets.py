"""EDM (Karras et al. 2022) U-Nets: the paper's parameter counts, closed forms of the
resampling and embedding layers, and the label / shape contracts. Parity with a PyTorch
reference of the published architecture is in nnx-weightconv (``test_edm_conversion.py``)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nnx_nets import (
    DHARIWAL_UNET_PRESETS,
    SONG_UNET_PRESETS,
    EDMConv,
    PositionalEmbedding,
    dhariwal_unet_from_preset,
    song_unet_from_preset,
)
from nnx_nets.testing import tiny_model


def _count(ctor) -> int:
    return sum(x.size for x in jax.tree.leaves(nnx.state(nnx.eval_shape(ctor), nnx.Param)))


def test_paper_parameter_counts():
    ddpmpp = _count(lambda: song_unet_from_preset("edm-cifar10-ddpmpp", rngs=nnx.Rngs(0)))
    ncsnpp = _count(lambda: song_unet_from_preset("edm-cifar10-ncsnpp", rngs=nnx.Rngs(0)))
    adm = _count(lambda: dhariwal_unet_from_preset("edm-imagenet64-adm", rngs=nnx.Rngs(0)))
    # EDM paper, Table 7 ("Number of parameters", 0.01M precision): CIFAR-10 DDPM++ 55.73M,
    # ImageNet-64 ADM 295.90M; within one unit of the last printed digit.
    assert abs(ddpmpp - 55.73e6) < 0.01e6, ddpmpp
    assert abs(adm - 295.90e6) < 0.01e6, adm
    # NCSN++ differs from DDPM++ only by parts the architecture description sizes exactly:
    # a 256-wide Fourier embedding (map_layer0 256 -> 512 instead of 128 -> 512: +128 * 512;
    # map_label 10 -> 256: +10 * 128 + 128; map_augment 9 -> 256: +9 * 128) and the residual
    # encoder's strided 3x3 convs 3 -> 256 and 256 -> 256 (with biases).
    extra = 128 * 512 + (10 * 128 + 128) + 9 * 128 + (3 * 256 * 9 + 256) + (256 * 256 * 9 + 256)
    assert ncsnpp - ddpmpp == extra
    # The exact counts of this implementation (55.74M / 56.40M / 295.90M), so a change shows.
    assert (ddpmpp, ncsnpp, adm) == (55_735_299, 56_400_643, 295_899_267)


def test_unknown_presets_list_the_valid_ones():
    with pytest.raises(ValueError, match="edm-cifar10-ddpmpp"):
        song_unet_from_preset("ddpm", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="edm-imagenet64-adm"):
        dhariwal_unet_from_preset("adm", rngs=nnx.Rngs(0))
    assert set(SONG_UNET_PRESETS) and set(DHARIWAL_UNET_PRESETS)


def test_resampling_closed_forms():
    x = jnp.asarray(np.random.default_rng(0).standard_normal((1, 8, 8, 2)), jnp.float32)
    box_down = EDMConv(2, 2, 0, down=True, rngs=nnx.Rngs(0))(x)
    # [1, 1]: 2x2 mean pooling.
    np.testing.assert_allclose(box_down, x.reshape(1, 4, 2, 4, 2, 2).mean((2, 4)), atol=1e-6)
    box_up = EDMConv(2, 2, 0, up=True, rngs=nnx.Rngs(0))(x)
    # [1, 1] up: nearest-neighbour repeat (the transposed conv of 4 * box / 4).
    np.testing.assert_allclose(box_up, jnp.repeat(jnp.repeat(x, 2, 1), 2, 2), atol=1e-6)
    const = jnp.ones((1, 8, 8, 1))
    fir_up = EDMConv(1, 1, 0, up=True, resample_filter=(1, 3, 3, 1), rngs=nnx.Rngs(0))(const)
    fir_down = EDMConv(1, 1, 0, down=True, resample_filter=(1, 3, 3, 1), rngs=nnx.Rngs(0))(const)
    # A normalised FIR keeps a constant away from the zero-padded border (1e-6: float32).
    assert fir_up.shape == (1, 16, 16, 1) and fir_down.shape == (1, 4, 4, 1)
    np.testing.assert_allclose(fir_up[0, 2:-2, 2:-2], 1.0, atol=1e-6)
    np.testing.assert_allclose(fir_down[0, 1:-1, 1:-1], 1.0, atol=1e-6)
    assert float(fir_down[0, 0, 0, 0]) < 0.99  # the border sees the zero padding


def test_positional_embedding_closed_form():
    x = jnp.asarray([0.5, 3.0])
    out = PositionalEmbedding(4, endpoint=True)(x)  # frequencies 1 and 1 / 10000
    expected = np.stack([np.cos(x), np.cos(x / 1e4), np.sin(x), np.sin(x / 1e4)], axis=1)
    np.testing.assert_allclose(out, expected, rtol=1e-6)


@pytest.mark.parametrize("name", ["song_unet", "dhariwal_unet"])
def test_labels_shape_and_null_label(name):
    model = tiny_model(name)
    x = jnp.asarray(np.random.default_rng(1).standard_normal((3, 8, 8, 3)), jnp.float32)
    noise = jnp.asarray([-1.0, 0.0, 1.0])
    forward = nnx.jit(lambda m, x, n, y: m(x, n, y))
    out = forward(model, x, noise, jnp.asarray([0, 1, 4]))
    assert out.shape == (3, 8, 8, 3) and out.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(out)))
    other = forward(model, x, noise, jnp.asarray([2, 1, 4]))
    assert float(jnp.abs(other[0] - out[0]).max()) > 1e-4  # the label matters
    np.testing.assert_array_equal(other[1:], out[1:])  # per-sample labels
    with pytest.raises(ValueError, match="class-conditional"):
        model(x, noise, None)
