"""DiT and MeanFlowDiT: initialisation, dtype policy, scan/remat, features, inputs.

Parity with facebookresearch/DiT and diffusers is tested in nnx-weightconv (it needs the
conversion specs); these tests pin the NNX-side behaviour on tiny configurations.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nnx_nets import DiT, DiTBlock, MeanFlowDiT, sincos_pos_embed_2d
from nnx_nets.block_stack import run_blocks

CFG = dict(
    input_size=8,
    patch_size=2,
    in_channels=3,
    hidden_size=32,
    depth=2,
    num_heads=2,
    num_classes=5,
    learn_sigma=True,
)


def abstract(cls=DiT, **overrides):
    return nnx.eval_shape(lambda: cls(**(CFG | overrides), rngs=nnx.Rngs(0)))


def fill_random(model, seed=0, std=0.2):
    """Random non-zero parameters (numpy: no compiles); a fresh DiT would output zero."""
    rng = np.random.default_rng(seed)
    for _, var in nnx.state(model, nnx.Param).flat_state():
        var.set_value(jnp.asarray(std * rng.standard_normal(var.get_value().shape), jnp.float32))
    return model


def copy_params(source, target):
    flat = dict(nnx.state(source, nnx.Param).flat_state())
    for path, var in nnx.state(target, nnx.Param).flat_state():
        if path in flat:
            var.set_value(flat[path].get_value())
    return target


@nnx.jit
def forward(model, x, t, y):
    return model(x, t, y)


def inputs(batch=2, seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((batch, 8, 8, 3)), jnp.float32)
    t = jnp.asarray(rng.uniform(0, 1, batch), jnp.float32)
    return x, t, jnp.array([1, 5][:batch], jnp.int32)  # 5 = the null label


def test_fresh_dit_is_adaln_zero_with_logical_axes():
    # The "rbg" key only makes the init cheap to compile; the initialisers are DiT's.
    key = jax.random.key(0, impl="unsafe_rbg")
    model = nnx.jit(lambda k: DiT(**CFG, rngs=nnx.Rngs(k)))(key)
    x, t, y = inputs()
    out = forward(model, x, t, y)
    assert out.shape == (2, 8, 8, 6) and out.dtype == jnp.float32
    np.testing.assert_array_equal(out, 0.0)  # zero final layer and adaLN: exactly zero
    assert model.y_embedder.embedding_table.embedding.get_value().shape == (6, 32)  # + null row
    for path, var in nnx.state(model, nnx.Param).flat_state():
        value = var.get_value()
        assert value.dtype == jnp.float32, path
        axes = var.get_metadata()["logical_axes"]
        assert len(axes) == value.ndim, path
        name = ".".join(map(str, path))
        if "adaln" in name or name.startswith("final_layer.linear"):
            assert not np.any(value), name
        elif name.endswith("kernel") or name.endswith("embedding"):
            assert np.std(value) > 0.01, name  # random, non-zero
    # DiT's init: time-embedder weights N(0, 0.02).
    std = np.std(model.t_embedder.linear_1.kernel.get_value())
    assert 0.015 < std < 0.025


def test_scan_and_remat_match_the_loop_in_value_and_gradient():
    # Block level (run_blocks is what scan_blocks / remat switch; the DiT-level wiring is
    # covered by the scanned MeanFlowDiT below and the scanned parity tests in weightconv).
    blocks = nnx.eval_shape(lambda: nnx.List([DiTBlock(32, 2, rngs=nnx.Rngs(0)) for _ in range(2)]))
    fill_random(blocks)
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((2, 16, 32)), jnp.float32)
    c = jnp.asarray(rng.standard_normal((2, 32)), jnp.float32)

    def loss(blocks, scan):
        out, feats = run_blocks(blocks, x, c, scan=scan, remat=scan, return_features=True)
        return jnp.sum(out**2) + jnp.sum(feats[0]), (out, feats)

    grads_a, (out_a, feats_a) = nnx.jit(nnx.grad(lambda b: loss(b, False), has_aux=True))(blocks)
    grads_b, (out_b, feats_b) = nnx.jit(nnx.grad(lambda b: loss(b, True), has_aux=True))(blocks)
    assert np.abs(out_a - x).max() > 0.5  # the blocks are far from the identity
    # Same fp32 ops in a different loop structure: equal up to reassociation.
    np.testing.assert_allclose(out_b, out_a, rtol=1e-5, atol=1e-5 * np.abs(out_a).max())
    assert len(feats_a) == len(feats_b) == 2
    np.testing.assert_allclose(feats_b[0], feats_a[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(feats_b[1], out_a, rtol=1e-5, atol=1e-5 * np.abs(out_a).max())
    flat_a = dict(nnx.state(grads_a).flat_state())
    scale = max(np.abs(v.get_value()).max() for v in flat_a.values())
    for path, var in nnx.state(grads_b).flat_state():
        # Relative to the largest gradient: some gradients are zero analytically (the key
        # bias, by softmax shift invariance) and only round-off noise numerically.
        np.testing.assert_allclose(
            var.get_value(),
            flat_a[path].get_value(),
            rtol=1e-4,
            atol=1e-6 * scale,
            err_msg=str(path),
        )
    assert np.abs(flat_a[(1, "attn", "query", "kernel")].get_value()).max() > 0


def test_bfloat16_compute_keeps_float32_params_and_output():
    f32 = fill_random(abstract())
    bf16 = copy_params(f32, abstract(precision="bfloat16"))
    x, t, y = inputs()
    ref, out = forward(f32, x, t, y), forward(bf16, x, t, y)
    assert out.dtype == jnp.float32
    assert all(
        v.get_value().dtype == jnp.float32 for _, v in nnx.state(bf16, nnx.Param).flat_state()
    )
    # bfloat16 has an 8-bit mantissa (relative rounding 2^-8 ~ 0.4% per op); through two
    # blocks the output stays within a few percent of the fp32 one.
    rel = np.linalg.norm(out - ref) / np.linalg.norm(ref)
    assert rel < 0.05, rel


def test_time_scale_multiplies_t_before_the_embedder():
    model = fill_random(abstract(time_scale=1000.0))
    t = jnp.array([0.25, 0.999])
    np.testing.assert_allclose(model.embed_time(t), model.t_embedder(t * 1000.0), rtol=1e-6)


def test_sincos_table_closed_form():
    table = sincos_pos_embed_2d(8, 3, 4)  # D = 8: two quarter-blocks of 2 frequencies
    omega = 1.0 / 10000 ** (np.arange(2) / 2)
    row, col = 1, 2
    token = row * 4 + col  # row-major over (h, w)
    expected = np.concatenate(
        [
            np.sin(col * omega),
            np.cos(col * omega),  # first half: column
            np.sin(row * omega),
            np.cos(row * omega),
        ]
    )  # second half: row
    np.testing.assert_allclose(table[token], expected, rtol=1e-6)


def test_bad_inputs_are_explained():
    model = abstract()
    with pytest.raises(ValueError, match="NHWC"):
        model(jnp.zeros((2, 3, 8, 8)), jnp.zeros(2), jnp.zeros(2, jnp.int32))
    with pytest.raises(ValueError, match=r"shape \(B,\)"):
        model(jnp.zeros((2, 8, 8, 3)), jnp.zeros(()), jnp.zeros(2, jnp.int32))
    with pytest.raises(ValueError, match="not divisible by the patch size"):
        model(jnp.zeros((2, 7, 8, 3)), jnp.zeros(2), jnp.zeros(2, jnp.int32))


def test_meanflow_dit_adds_the_interval_embedding():
    # scan_blocks + remat here also cover DiT's wiring of those flags (same forward_tokens).
    mf = fill_random(abstract(MeanFlowDiT, scan_blocks=True, remat=True))
    dit = copy_params(mf, abstract(DiT))
    x, t, y = inputs()
    r, v = 0.5 * t, jnp.ones_like(x)
    graphdef, _ = nnx.split(mf)

    @jax.jit
    def jvp(state, x, r, t):
        """MeanFlow's du/dt along (dx, dt) = (v, 1), through attention (Geng et al. 2025)."""

        def u(xx, tt):
            return nnx.merge(graphdef, state)(xx, r, tt, y)

        return jax.jvp(u, (x, t), (v, jnp.ones_like(t)))

    # With the dt embedder's output layer at zero, MeanFlowDiT is the DiT with the same
    # weights for every r.
    mf.dt_embedder.linear_2.kernel.set_value(jnp.zeros((32, 32)))
    mf.dt_embedder.linear_2.bias.set_value(jnp.zeros(32))
    primal, _ = jvp(nnx.state(mf), x, r, t)
    ref = forward(dit, x, t, y)
    assert np.abs(ref).max() > 0.5
    np.testing.assert_allclose(primal, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    # Switched on, the output depends on t - r; the tangent matches a central difference.
    fill_random(mf, seed=1)
    state = nnx.state(mf)
    out_r, tangent = jvp(state, x, r, t)
    out_t, _ = jvp(state, x, t, t)
    assert np.abs(out_r - out_t).max() > 1e-3
    eps = 1e-2  # float32 central difference: truncation ~eps^2, round-off ~1e-7 / eps
    fd = (jvp(state, x + eps * v, r, t + eps)[0] - jvp(state, x - eps * v, r, t - eps)[0]) / (
        2 * eps
    )
    np.testing.assert_allclose(tangent, fd, rtol=0.05, atol=0.05 * np.abs(fd).max())
