"""EDM2 U-Net and magnitude-preserving layers: closed forms, parameter counts, structure.

No PyTorch EDM2 is installed, so the layers are checked against their defining equations and
the network against an independent count of its parameters and its magnitude behaviour.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nnx_nets import EDM2_PRESETS, EDM2Block, EDM2UNet, edm2_unet_from_preset
from nnx_nets.mp_layers import (
    FixedBuffer,
    MPConv,
    MPFourier,
    force_weight_normalization,
    mp_cat,
    mp_silu,
    mp_sum,
    normalize,
)
from nnx_nets.testing import random_model


def _count(module) -> int:
    return sum(x.size for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


def _random_model(ctor, seed: int = 0):
    return random_model(ctor, seed, scale=1.0)


def test_mp_silu_sum_cat_preserve_magnitude():
    # E[silu(x)^2] for x ~ N(0, 1) by quadrature: mp_silu keeps unit second moment (the
    # constant 0.596 is rounded to 3 digits, hence 0.5%).
    grid = np.linspace(-12, 12, 24_001)
    density = np.exp(-(grid**2) / 2) / np.sqrt(2 * np.pi)
    second_moment = np.trapezoid(np.asarray(mp_silu(jnp.asarray(grid))) ** 2 * density, grid)
    assert abs(second_moment - 1) < 5e-3
    # mp_sum of two orthogonal unit-RMS signals has unit RMS for any t (Eq. 88).
    a = jnp.asarray([1.0, 0.0, 1.0, 0.0]) * np.sqrt(2)
    b = jnp.asarray([0.0, 1.0, 0.0, 1.0]) * np.sqrt(2)
    for t in (0.3, 0.5, 0.8):
        np.testing.assert_allclose(float(jnp.mean(mp_sum(a, b, t) ** 2)), 1.0, rtol=1e-6)
    # mp_cat: unit RMS overall, part energies in ratio (1 - t)^2 : t^2 (Eq. 103).
    left, right = jnp.ones((2, 3)), -jnp.ones((2, 5))
    t = 0.3
    out = mp_cat(left, right, t=t)
    np.testing.assert_allclose(float(jnp.mean(out**2)), 1.0, rtol=1e-6)
    energy_left = float(jnp.sum(out[0, :3] ** 2))
    energy_right = float(jnp.sum(out[0, 3:] ** 2))
    np.testing.assert_allclose(energy_left / energy_right, (1 - t) ** 2 / t**2, rtol=1e-6)
    # normalize: unit RMS over the chosen axis (pixel norm), up to eps = 1e-4.
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 3, 3, 16)) * 7, jnp.float32)
    np.testing.assert_allclose(
        np.sqrt(np.mean(np.asarray(normalize(x, axis=-1)) ** 2, -1)), 1, rtol=1e-3
    )


def test_mp_conv_matches_its_equation_and_forced_normalization():
    conv = _random_model(lambda: MPConv(8, 4, 3, rngs=nnx.Rngs(0)))
    conv.weight[...] = conv.weight[...] * 5.0  # arbitrary norms per output unit
    x = np.random.default_rng(1).standard_normal((2, 5, 5, 8)).astype(np.float32)
    gain = 0.7
    out = np.asarray(conv(jnp.asarray(x), gain=gain))
    # Eq. 47: w_hat = w / ||w||_out * sqrt(1 / fan_in) (fan_in = 3*3*8), conv with 'same' padding.
    w = np.asarray(conv.weight[...], np.float64)
    rms = np.sqrt(np.mean(w**2, axis=(0, 1, 2), keepdims=True))
    w_hat = w / (1e-4 + rms) * gain / np.sqrt(72)
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    patches = np.stack([padded[:, i : i + 5, j : j + 5] for i in range(3) for j in range(3)], 3)
    expected = np.einsum("bhwkc,kco->bhwo", patches, w_hat.reshape(9, 8, 4))
    np.testing.assert_allclose(out, expected, atol=1e-5)
    # Unit-variance input through a unit-gain MPConv keeps unit variance (per output channel).
    linear = _random_model(lambda: MPConv(256, 64, 0, rngs=nnx.Rngs(0)))
    noise = jax.random.normal(jax.random.key(2), (4096, 256))
    variance = np.var(np.asarray(linear(noise)), axis=0)
    assert np.all(np.abs(variance - 1) < 0.1)  # 4096 samples: std error of a variance ~0.022
    # Forced weight normalisation stores unit-RMS weights and does not change the output
    # beyond the eps of normalize (1e-4 relative to the stored RMS, which drops from ~5 to 1).
    force_weight_normalization(conv)
    stored = np.asarray(conv.weight[...])
    np.testing.assert_allclose(np.sqrt(np.mean(stored**2, axis=(0, 1, 2))), 1, atol=1e-3)
    np.testing.assert_allclose(
        np.asarray(conv(jnp.asarray(x), gain=gain)), out, rtol=2e-4, atol=1e-6
    )


def test_mp_fourier_has_unit_magnitude():
    fourier = MPFourier(4096, rngs=nnx.Rngs(0))
    assert not jax.tree.leaves(nnx.state(fourier, nnx.Param))
    assert len(jax.tree.leaves(nnx.state(fourier, FixedBuffer))) == 2
    features = np.asarray(fourier(jnp.asarray([-1.3, 0.0, 0.8])))
    # sqrt(2) cos(2 pi (f x + phi)) with uniform phases: mean square 1 over channels.
    assert features.shape == (3, 4096)
    assert np.all(np.abs(np.mean(features**2, axis=1) - 1) < 0.06)


def _edm2_count(mc, mult=(1, 2, 3, 4), blocks=3, attn=(16, 8), res=64, ch=4, classes=1000) -> int:
    """Parameters of EDM2's U-Net from its layer list (Fig. 21), written independently."""
    widths = [mc * m for m in mult]
    emb = max(widths)
    total = 1 + widths[0] * emb + classes * emb  # out_gain, emb_noise, emb_label

    def block(cin, cout, flavor, attention):
        params = 1 + (cout if flavor == "enc" else cin) * cout * 9 + emb * cout + cout * cout * 9
        params += cin * cout if cin != cout else 0
        return params + (4 * cout * cout if attention else 0)

    width, skips = ch + 1, []
    for level, level_width in enumerate(widths):
        if level == 0:
            total += width * level_width * 9
            width = level_width
        else:
            total += block(width, width, "enc", False)
        skips.append(width)
        for _ in range(blocks):
            total += block(width, level_width, "enc", (res >> level) in attn)
            width = level_width
            skips.append(width)
    for level, level_width in reversed(list(enumerate(widths))):
        if level == len(widths) - 1:
            total += block(width, width, "dec", True) + block(width, width, "dec", False)
        else:
            total += block(width, width, "dec", False)
        for _ in range(blocks + 1):
            total += block(width + skips.pop(), level_width, "dec", (res >> level) in attn)
            width = level_width
    return total + width * ch * 9


def test_preset_parameter_counts():
    # nnx.eval_shape of the full XS network equals the independent layer count ...
    xs = nnx.eval_shape(lambda: edm2_unet_from_preset("edm2-img512-xs", rngs=nnx.Rngs(0)))
    assert _count(xs) == _edm2_count(128) == 124_713_125
    # ... and the presets give the model sizes of the EDM2 paper's ImageNet-512 table
    # (Mparams 125 / 280 / 498 / 777 / 1119 / 1523, recalled, not re-read at the source).
    paper = {"xs": 125, "s": 280, "m": 498, "l": 777, "xl": 1119, "xxl": 1523}
    for size, mparams in paper.items():
        preset = EDM2_PRESETS[f"edm2-img512-{size}"]
        assert round(_edm2_count(preset["model_channels"]) / 1e6) == mparams
    assert EDM2_PRESETS["edm2-img512-s"]["dropout"] == 0.0
    assert EDM2_PRESETS["edm2-img512-m"]["dropout"] == 0.1


def _tiny_unet(**kwargs) -> EDM2UNet:
    return EDM2UNet(
        img_resolution=16,
        img_channels=3,
        num_classes=10,
        model_channels=16,
        channel_mult=(1, 2),
        num_blocks=1,
        attn_resolutions=(8,),
        channels_per_head=8,
        rngs=nnx.Rngs(0),
        **kwargs,
    )


@nnx.jit
def _forward(model, x, noise_labels, labels):
    return model(x, noise_labels, labels)


@nnx.jit
def _embeddings(model, noise_labels, labels):
    unconditional = mp_silu(mp_sum(model.emb_noise(model.emb_fourier(noise_labels)), 0.0, t=0.5))
    return model.embed(noise_labels, labels), unconditional


def test_unet_structure_magnitudes_and_labels():
    model = _random_model(_tiny_unet)
    assert model.enc_names == ("16x16_conv", "16x16_block0", "8x8_down", "8x8_block0")
    assert model.dec_names == (
        "8x8_in0",
        "8x8_in1",
        "8x8_block0",
        "8x8_block1",
        "16x16_up",
        "16x16_block0",
        "16x16_block1",
    )
    assert _count(model) == _edm2_count(
        16, mult=(1, 2), blocks=1, attn=(8,), res=16, ch=3, classes=10
    )
    x = jnp.asarray(np.random.default_rng(0).standard_normal((4, 16, 16, 3)), jnp.float32)
    noise = jnp.asarray([-1.0, 0.0, 0.5, 1.0])
    labels = jnp.asarray([0, 3, 9, 10])  # 10 = the null label
    out = np.asarray(_forward(model, x, noise, labels))
    assert out.shape == (4, 16, 16, 3) and out.dtype == np.float32
    # With unit gains the magnitude-preserving network keeps O(1) activations end to end.
    assert 0.2 < out.std() / abs(float(model.out_gain[...])) < 5.0
    # out_gain = 0 (its initial value) gives exactly zero output.
    model.out_gain[...] = jnp.zeros(())
    assert not np.asarray(_forward(model, x, noise, labels)).any()
    # The null label contributes a zero label embedding, as EDM2's all-zero class vector.
    emb, unconditional = _embeddings(model, noise, labels)
    np.testing.assert_allclose(np.asarray(emb[3]), np.asarray(unconditional[3]), atol=1e-6)
    assert np.abs(np.asarray(emb[0] - unconditional[0])).max() > 1e-2
    with pytest.raises(ValueError, match="class-conditional"):
        model.embed(noise, None)


def test_block_dropout_train_and_eval():
    block = EDM2Block(8, 8, 4, dropout=0.5, rngs=nnx.Rngs(0))
    block.emb_gain[...] = jnp.ones(())
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((2, 4, 4, 8)), jnp.float32)
    emb = jnp.asarray(rng.standard_normal((2, 4)), jnp.float32)
    apply = nnx.jit(lambda b, x, e: b(x, e))
    block.eval()
    first, second = apply(block, x, emb), apply(block, x, emb)
    np.testing.assert_array_equal(np.asarray(first), np.asarray(second))
    block.train()
    dropped, dropped_again = apply(block, x, emb), apply(block, x, emb)
    assert not np.allclose(np.asarray(dropped), np.asarray(first))
    # The stream advances inside nnx.jit: two training calls drop different units.
    assert not np.allclose(np.asarray(dropped), np.asarray(dropped_again))
    with pytest.raises(ValueError, match="flavor"):
        EDM2Block(8, 8, 4, flavor="mid", rngs=nnx.Rngs(0))
