"""VideoDiT: shapes, adaLN-Zero start, the causal temporal mask and per-frame conditioning."""

import jax
import numpy as np
import pytest
from flax import nnx

from nnx_nets import VideoDiT
from nnx_nets.testing import random_model

KW = dict(
    input_size=8, patch_size=4, in_channels=1, num_frames=4, hidden_size=32, depth=2, num_heads=2
)


def _inputs(seed=0, frames=4):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, frames, 8, 8, 1)).astype(np.float32)
    t = rng.uniform(size=(2, frames)).astype(np.float32)
    return x, t, np.array([3, 7], np.int32)


def test_fresh_network_outputs_zero_with_the_clip_shape():
    model = VideoDiT(**KW, rngs=nnx.Rngs(0))
    out = model(*_inputs())
    assert out.shape == (2, 4, 8, 8, 1) and out.dtype == np.float32
    assert float(np.abs(out).max()) == 0.0  # adaLN-Zero and a zero final layer


@pytest.mark.parametrize("causal", [True, False])
def test_later_frames_reach_earlier_ones_only_without_the_causal_mask(causal):
    model = random_model(lambda: VideoDiT(**KW, causal=causal, rngs=nnx.Rngs(0)), seed=1)
    x, t, y = _inputs()
    changed = x.copy()
    changed[:, 2:] += 1.0  # frames 2 and 3 only
    before, after = model(x, t, y), model(changed, t, y)
    early = float(np.abs(np.asarray(before[:, :2] - after[:, :2])).max())
    late = float(np.abs(np.asarray(before[:, 2:] - after[:, 2:])).max())
    assert late > 1e-3  # the changed frames' outputs move
    if causal:
        # Float32 attention: masked keys get exactly zero weight, so frames 0-1 are unchanged
        # up to reassociation in the matmuls (measured 0.0 on XLA:CPU); 1e-6 leaves room.
        assert early < 1e-6
    else:
        assert early > 1e-3


def test_each_frame_has_its_own_time():
    model = random_model(lambda: VideoDiT(**KW, causal=True, rngs=nnx.Rngs(0)), seed=2)
    x, t, y = _inputs()
    t2 = t.copy()
    t2[:, 3] = 1.0 - t2[:, 3]  # only the last frame's time; causal: frames 0-2 cannot see it
    diff = np.abs(np.asarray(model(x, t, y) - model(x, t2, y))).max(axis=(2, 3, 4))
    assert diff[:, 3].min() > 1e-3 and diff[:, :3].max() < 1e-6


def test_shorter_clips_use_the_first_frame_positions_and_bad_shapes_are_named():
    model = random_model(lambda: VideoDiT(**KW, rngs=nnx.Rngs(0)), seed=3)
    x, t, y = _inputs(frames=2)
    assert model(x, t, y).shape == (2, 2, 8, 8, 1)
    with pytest.raises(ValueError, match="longer than num_frames=4"):
        model(*_inputs(frames=5))
    with pytest.raises(ValueError, match="one time per frame"):
        model(x, t[:, 0], y)
    with pytest.raises(ValueError, match="stack frames on axis 1"):
        model(x[:, 0], t, y)


def test_parameter_count_of_the_digits_preset_is_the_sum_of_its_parts():
    abstract = nnx.eval_shape(lambda: VideoDiT(**KW, rngs=nnx.Rngs(0)))
    count = sum(v.size for v in jax.tree.leaves(nnx.state(abstract, nnx.Param)))
    d, p = 32, 4
    attention = 4 * (d * d + d)
    block = 2 * attention + (d * 4 * d + 4 * d) + (4 * d * d + d) + (d * 9 * d + 9 * d)
    embed = (p * p * 1 * d + d) + (256 * d + d) + (d * d + d) + (11 * d)
    final = (d * 2 * d + 2 * d) + (d * p * p * 1 + p * p * 1)
    assert count == embed + 2 * block + final


@pytest.mark.parametrize("scan, remat", [(True, "full"), (True, "none"), (False, "dots_saveable")])
def test_scanned_and_rematerialised_blocks_compute_the_same_function_and_gradient(scan, remat):
    def build(**kw):
        return random_model(lambda: VideoDiT(**KW, **kw, rngs=nnx.Rngs(0)), seed=4)

    plain, other = build(), build(scan_blocks=scan, remat=remat)
    x, t, y = _inputs()

    def loss(model):
        return (model(x, t, y) ** 2).mean()

    # Same parameters, same layout (blocks.{i}); only how the blocks run differs. Float32 on
    # XLA:CPU: the scanned program fuses differently, so results agree to float32 rounding of
    # the largest values. Outputs span 1e-3 .. 40 and small ones carry the large ones'
    # rounding (measured 3.6e-5 absolute with jax 0.12.0.1, < 1e-6 with 0.10.2): bar 1e-5
    # of the largest output. Gradient entries span 1e-6 .. 50 (the key bias's gradient is 0
    # in exact arithmetic: softmax ignores a constant added to every logit), measured 1.1e-5
    # absolute: bar 1e-5 of the largest gradient entry.
    expected = np.asarray(plain(x, t, y))
    np.testing.assert_allclose(
        other(x, t, y), expected, rtol=0, atol=1e-5 * float(np.abs(expected).max())
    )
    g_plain = nnx.state(nnx.grad(loss)(plain), nnx.Param)
    g_other = nnx.state(nnx.grad(loss)(other), nnx.Param)
    scale = max(float(np.abs(b).max()) for b in jax.tree.leaves(g_plain))
    for a, b in zip(jax.tree.leaves(g_other), jax.tree.leaves(g_plain), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * scale)


def test_spatial_rope_makes_attention_relative_and_keeps_the_parameters():
    plain = nnx.eval_shape(lambda: VideoDiT(**KW, rngs=nnx.Rngs(0)))
    roped = nnx.eval_shape(lambda: VideoDiT(**KW, spatial_rope=True, rngs=nnx.Rngs(0)))
    shapes = [v.shape for v in jax.tree.leaves(nnx.state(plain, nnx.Param))]
    assert shapes == [v.shape for v in jax.tree.leaves(nnx.state(roped, nnx.Param))]
    a = random_model(lambda: VideoDiT(**KW, rngs=nnx.Rngs(0)), seed=5)
    b = random_model(lambda: VideoDiT(**KW, spatial_rope=True, rngs=nnx.Rngs(0)), seed=5)
    x, t, y = _inputs()
    # Same weights, the rotation changes the spatial attention's logits: outputs differ.
    assert float(np.abs(np.asarray(a(x, t, y) - b(x, t, y))).max()) > 1e-3
    with pytest.raises(ValueError, match="divisible by 4"):
        VideoDiT(**{**KW, "hidden_size": 36, "num_heads": 6}, spatial_rope=True, rngs=nnx.Rngs(0))
