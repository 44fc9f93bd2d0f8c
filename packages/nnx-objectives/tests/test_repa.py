"""REPA: -coefficient for identical features, the token-grid resize, and clear errors.

The zero gradient into the encoder is checked in ``test_compile_once.py``, which
differentiates the REPA objective once for the whole module tree (backbone, projector and
encoder).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nnx_objectives import (
    InterpolantObjective,
    REPAModel,
    REPAObjective,
    interpolate,
    negative_cosine_similarity,
    resize_token_grid,
)


@pytest.fixture(scope="module")
def repa_model(networks, build):
    backbone_class = networks["TinyBackbone"]
    return build(
        lambda: REPAModel(
            backbone_class(3, width=32, rngs=nnx.Rngs(0)),
            depth=1,
            backbone_width=32,
            encoder_width=24,
            projector_width=48,
            rngs=nnx.Rngs(1),
        )
    )


def _data(seed, batch=8):
    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal((batch, 8, 8, 3)).astype(np.float32)
    y = rng.integers(0, 4, batch).astype(np.int32)
    return x0, y


def test_identical_features_give_minus_the_coefficient(repa_model, jit):
    x0, y = _data(0)
    key = jax.random.key(0, impl="rbg")
    objective = REPAObjective(encoder=lambda tokens: tokens, coefficient=0.5)

    @jit
    def evaluate(x0, y, key):
        # The projected tokens of the very pass the objective makes, used as the target.
        t, eps = objective.flow.sample(key, x0)
        _, projected = repa_model.project(interpolate(objective.flow.path, x0, eps, t), t, y)
        loss, aux = objective(repa_model, x0, y, key, images=2.5 * projected)
        flow_only, _ = InterpolantObjective()(repa_model.backbone, x0, y, key)
        return loss, aux["alignment"], aux["flow_loss"], flow_only

    loss, alignment, flow_loss, flow_only = (np.asarray(a) for a in evaluate(x0, y, key))
    # cos = 1 for parallel vectors (scale 2.5 does not matter): -1 per token, exactly up to
    # float32 rounding of the normalisation.
    np.testing.assert_allclose(alignment, -1.0, atol=1e-6)
    np.testing.assert_allclose(loss, flow_loss - 0.5, rtol=1e-6, atol=1e-6)
    # The flow part is plain SiT flow matching on the backbone, same draws.
    np.testing.assert_allclose(flow_loss, flow_only, rtol=1e-6)


def test_negative_cosine_and_grid_resize(jit):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((2, 16, 5)).astype(np.float32)
    b = rng.standard_normal((2, 16, 5)).astype(np.float32)
    ramp = np.broadcast_to(np.arange(8, dtype=np.float32)[None, :], (8, 8)).reshape(1, 64, 1)

    @jit
    def evaluate(a, b, ramp):
        return (
            negative_cosine_similarity(a, -3.0 * a),
            negative_cosine_similarity(a, b),
            resize_token_grid(jnp.full((2, 64, 3), 1.7), 16),
            resize_token_grid(ramp, 16),
            resize_token_grid(a, 16),
        )

    opposite, mixed, constant, ramp_small, same = (np.asarray(v) for v in evaluate(a, b, ramp))
    np.testing.assert_allclose(opposite, 1.0, atol=1e-6)
    expected = -np.mean(
        np.sum(a * b, -1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)), -1
    )
    np.testing.assert_allclose(mixed, expected, rtol=1e-5, atol=1e-6)
    # An 8x8 grid resized to 4x4: constants stay constant; a ramp along w stays constant
    # along h, increasing along w, and exact (2.5, 4.5) where the antialiasing triangle fits
    # inside the grid (it is renormalised, hence shifted, at the two borders).
    np.testing.assert_allclose(constant, 1.7, rtol=1e-6)
    ramp_small = ramp_small.reshape(4, 4)
    np.testing.assert_allclose(ramp_small, np.broadcast_to(ramp_small[:1], (4, 4)), atol=1e-6)
    assert np.all(np.diff(ramp_small[0]) > 0)
    np.testing.assert_allclose(ramp_small[0, 1:3], [2.5, 4.5], atol=1e-5)
    np.testing.assert_array_equal(same, a)
    with pytest.raises(ValueError, match="square"):
        resize_token_grid(jnp.zeros((1, 12, 3)), 16)


def test_errors_name_the_problem(repa_model, build):
    x0, y = _data(2)
    t = np.full((8,), 0.5, np.float32)
    too_deep = build(
        lambda: REPAModel(
            repa_model.backbone,
            depth=5,
            backbone_width=32,
            encoder_width=24,
            projector_width=8,
            rngs=nnx.Rngs(0),
        )
    )
    with pytest.raises(KeyError, match="block_1"):
        jax.eval_shape(too_deep.project, x0, t, y)
    objective = REPAObjective(encoder=lambda images: images)
    with pytest.raises(TypeError, match="REPAModel"):
        objective(repa_model.backbone, x0, y, jax.random.key(0, impl="rbg"))
    with pytest.raises(ValueError, match="encoder_width=7"):
        jax.eval_shape(
            lambda x0, y: REPAObjective(encoder=lambda im: jnp.zeros((8, 16, 7)))(
                repa_model, x0, y, jax.random.key(0, impl="rbg")
            ),
            x0,
            y,
        )
