"""LightningDiT pieces: 2-D RoPE closed forms, RMSNorm, SwiGLU / QK-norm / adaLN layout.

Parity with the published architecture (plain and scanned + remat blocks) is tested in
nnx-weightconv, which has the conversion specs."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nnx_nets import LightningDiT, RMSNorm, apply_rope, axial_rope_tables, swiglu_hidden_size

CFG = dict(
    input_size=8, patch_size=2, in_channels=3, hidden_size=32, depth=2, num_heads=2, num_classes=5
)


def abstract(**overrides):
    return nnx.eval_shape(lambda: LightningDiT(**(CFG | overrides), rngs=nnx.Rngs(0)))


def test_rope_is_identity_at_the_origin_and_relative_elsewhere():
    head_dim, grid = 8, 3
    cos, sin = axial_rope_tables(head_dim, grid, grid)
    np.testing.assert_array_equal(cos[0], 1.0)
    np.testing.assert_array_equal(sin[0], 0.0)
    rng = np.random.default_rng(0)
    q = jnp.asarray(np.broadcast_to(rng.standard_normal(head_dim), (1, grid * grid, 1, head_dim)))
    k = jnp.asarray(np.broadcast_to(rng.standard_normal(head_dim), (1, grid * grid, 1, head_dim)))
    q_rot, k_rot = apply_rope(q, cos, sin)[0, :, 0], apply_rope(k, cos, sin)[0, :, 0]
    scores = np.asarray(q_rot @ k_rot.T)  # (tokens, tokens)

    def s(a, b):
        return scores[a[0] * grid + a[1], b[0] * grid + b[1]]

    # Same vectors everywhere: the score depends only on the 2-D offset (eq. 34 per axis).
    for dh, dw in [(1, 0), (0, 1), (1, 1)]:
        np.testing.assert_allclose(s((dh, dw), (1 + dh, 1 + dw)), s((0, 0), (1, 1)), rtol=1e-5)
        np.testing.assert_allclose(s((1 + dh, dw), (dh, 1 + dw)), s((1, 0), (0, 1)), rtol=1e-5)
    # First half of the channels follows the row, second half the column; within a half,
    # pair (2i, 2i+1) rotates by angle pos * theta^(-2i / (head_dim / 2)).
    same_row = np.asarray(apply_rope(q, cos, sin))[0, [3, 4], 0]  # tokens (1, 0) and (1, 1)
    np.testing.assert_allclose(same_row[0, :4], same_row[1, :4], rtol=1e-6)
    assert np.abs(same_row[0, 4:] - same_row[1, 4:]).max() > 1e-3
    x = np.asarray(q[0, 4, 0])  # token (1, 1); channels 2, 3 use frequency 1e4^(-2/4)
    angle = 1.0 * 10000 ** (-2 / 4)
    expected = [
        x[2] * np.cos(angle) - x[3] * np.sin(angle),
        x[3] * np.cos(angle) + x[2] * np.sin(angle),
    ]
    np.testing.assert_allclose(
        np.asarray(apply_rope(q, cos, sin))[0, 4, 0, 2:4], expected, rtol=1e-6
    )


def test_rmsnorm_computes_in_float32():
    norm = RMSNorm(4, rngs=nnx.Rngs(0))
    norm.scale.set_value(jnp.array([1.0, 2.0, 0.5, -1.0]))
    x = jnp.array([[300.0, -200.0, 100.0, 50.0]], jnp.bfloat16)
    out = norm(x)
    assert out.dtype == jnp.bfloat16
    x32 = np.asarray(x, np.float32)
    ref = x32 / np.sqrt(np.mean(x32**2) + 1e-6) * np.array([1.0, 2.0, 0.5, -1.0])
    np.testing.assert_allclose(np.asarray(out, np.float32), ref, rtol=2**-7)  # one bf16 rounding


def test_block_layout_swiglu_qknorm_and_adaln_without_shift():
    assert swiglu_hidden_size(1152) == 3072 and swiglu_hidden_size(768) == 2048
    model = abstract(qk_norm=True, adaln_shift=False)
    shapes = {
        ".".join(map(str, p)): v.get_value().shape
        for p, v in nnx.state(model, nnx.Param).flat_state()
    }
    assert shapes["blocks.0.attn.q_norm.scale"] == shapes["blocks.0.attn.k_norm.scale"] == (16,)
    assert shapes["blocks.0.mlp.gate.kernel"] == shapes["blocks.0.mlp.up.kernel"] == (32, 85)
    assert shapes["blocks.0.mlp.down.kernel"] == (85, 32)
    assert shapes["blocks.0.adaln.linear.kernel"] == (32, 4 * 32)  # scale, gate x 2
    assert shapes["final_layer.norm.scale"] == (32,)
    assert shapes["t_embedder.linear_1.kernel"] == (256, 32)
    fourier = abstract(time_embedding="gaussian_fourier")
    assert fourier.t_embedder.frequencies.get_value().shape == (256,)
    assert fourier.t_embedder.linear_1.kernel.get_value().shape == (512, 32)


def test_configuration_errors_are_explained():
    with pytest.raises(ValueError, match="divisible by 4"):
        abstract(hidden_size=20)
    with pytest.raises(ValueError, match="valid: 'sinusoidal', 'gaussian_fourier'"):
        abstract(time_embedding="fourier")
