"""Every objective traces once: a jitted train-step gradient does not recompile on new data.

The step is the hot-path pattern of nnx (split once, ``jax.jit`` a pure function, merge
inside, return the updated non-parameter state). Each case also checks what only a full
gradient can show: REPA's encoder receives exactly zero gradient, MeanFlow's dropout RNG
advances inside ``jax.jvp``, EDM2's log-variance head is trained.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nnx_objectives import (
    ClassDropout,
    ConsistencyObjective,
    EDMObjective,
    EDMPrecond,
    InterpolantObjective,
    LogitNormalTime,
    LogVarHead,
    MeanFlowGuidance,
    MeanFlowObjective,
    REPAModel,
    REPAObjective,
    UncertaintyWeighted,
    WithLogVar,
)


class _REPAWithEncoder(nnx.Module):
    """REPA model and its encoder in one tree, so that the gradient covers the encoder too."""

    def __init__(self, model, encoder):
        self.model = model
        self.encoder = encoder


def _case(name, networks, build):
    tiny, backbone, encoder = networks["TinyNet"], networks["TinyBackbone"], networks["TinyEncoder"]
    shape = (4, 4, 1)
    if name == "interpolant":
        model = build(lambda: tiny(shape, rngs=nnx.Rngs(0)))
        objective = InterpolantObjective(time_distribution=LogitNormalTime(0.0, 1.0))
        return model, lambda m, x0, y, key, extra: objective(m, x0, y, key), shape
    if name == "class_dropout":
        model = build(lambda: tiny(shape, rngs=nnx.Rngs(0)))
        objective = ClassDropout(InterpolantObjective(), probability=0.1, null_label=4)
        return model, lambda m, x0, y, key, extra: objective(m, x0, y, key), shape
    if name == "edm":
        model = EDMPrecond(build(lambda: tiny(shape, rngs=nnx.Rngs(0))), sigma_data=0.5)
        objective = EDMObjective()
        return model, lambda m, x0, y, key, extra: objective(m, x0, y, key), shape
    if name == "edm2_uncertainty":
        net = EDMPrecond(build(lambda: tiny(shape, rngs=nnx.Rngs(0))), sigma_data=0.5)
        model = WithLogVar(net, build(lambda: LogVarHead(8, rngs=nnx.Rngs(1)), seed=1))
        objective = UncertaintyWeighted(EDMObjective(P_mean=-0.4, P_std=1.0))
        return model, lambda m, x0, y, key, extra: objective(m, x0, y, key), shape
    if name == "meanflow":
        model = build(lambda: tiny(shape, num_times=2, dropout=0.2, rngs=nnx.Rngs(0, dropout=1)))
        guidance = MeanFlowGuidance(null_label=4, omega=0.2, kappa=0.92, t_max=0.75)
        objective = MeanFlowObjective(guidance=guidance)
        return model, lambda m, x0, y, key, extra: objective(m, x0, y, key), shape
    if name == "repa":
        model = build(
            lambda: _REPAWithEncoder(
                REPAModel(
                    backbone(3, width=32, rngs=nnx.Rngs(0)),
                    depth=2,
                    backbone_width=32,
                    encoder_width=24,
                    projector_width=48,
                    rngs=nnx.Rngs(1),
                ),
                encoder(3, width=24, patch=1, rngs=nnx.Rngs(2)),  # 64 tokens -> resized to 16
            )
        )

        def run(m, x0, y, key, extra):
            return REPAObjective(encoder=m.encoder)(m.model, x0, y, key, images=x0)

        return model, run, (8, 8, 3)
    if name == "consistency":
        model = build(lambda: tiny(shape, rngs=nnx.Rngs(0)))
        objective = ConsistencyObjective(tangent_warmup_steps=10)
        return model, lambda m, x0, y, key, extra: objective(m, x0, y, key, step=extra), shape
    raise KeyError(name)


CASES = [
    "interpolant",
    "class_dropout",
    "edm",
    "edm2_uncertainty",
    "meanflow",
    "repa",
    "consistency",
]


@pytest.mark.parametrize("name", CASES)
def test_objective_compiles_once(name, networks, build, jit):
    model, run, shape = _case(name, networks, build)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    traces = []

    @jit
    def step(params, rest, x0, y, key, extra):
        traces.append(1)  # runs only while tracing

        def loss_fn(params):
            # Fresh Variables (tree.map copies them) may be mutated at this trace level.
            module = nnx.merge(graphdef, params, jax.tree.map(lambda a: a, rest))
            loss, aux = run(module, x0, y, key, extra)
            return jnp.mean(loss), (aux, nnx.state(module, nnx.Not(nnx.Param)))

        (value, (aux, new_rest)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        return value, aux, grads, new_rest

    rng = np.random.default_rng(0)

    def batch():
        x0 = rng.standard_normal((16, *shape)).astype(np.float32)
        return x0, rng.integers(0, 4, 16).astype(np.int32)

    first = step(params, rest, *batch(), jax.random.key(0, impl="rbg"), jnp.asarray(3))
    second = step(params, first[3], *batch(), jax.random.key(1, impl="rbg"), jnp.asarray(7))
    assert len(traces) == 1, f"{name} retraced on the second call"
    assert np.isfinite(float(first[0])) and float(first[0]) != float(second[0])
    grads = first[2]
    leaves = [np.asarray(g) for g in jax.tree.leaves(grads)]
    assert all(np.all(np.isfinite(g)) for g in leaves)
    assert max(np.abs(g).max() for g in leaves) > 0

    if name == "repa":
        encoder_grads = [np.asarray(g) for g in jax.tree.leaves(grads["encoder"])]
        assert encoder_grads and all(np.all(g == 0) for g in encoder_grads)
        projector = [np.asarray(g) for g in jax.tree.leaves(grads["model"]["projector"])]
        assert max(np.abs(g).max() for g in projector) > 0
        assert np.all(np.asarray(first[1]["alignment"]) >= -1.0)
    if name == "meanflow":
        count = lambda state: int(state["dropout"]["rngs"]["count"][...])  # noqa: E731
        assert count(first[3]) > count(rest) and count(second[3]) > count(first[3])
        assert "label_dropped" in first[1]
    if name == "edm2_uncertainty":
        assert np.abs(np.asarray(grads["head"]["weight"][...])).max() > 0
