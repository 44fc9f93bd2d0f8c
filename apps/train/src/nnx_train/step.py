"""The train step: a pure function of ``(TrainState, frozen state, batch)``, jitted once.

The model is split once outside; inside the step it is merged from the state, the loss and
its gradient are computed, the optimiser and the EMAs advance, and the new state is returned.
The state argument is donated, so parameters, optimiser moments and EMAs are updated in place.

Non-finite guard: when the loss, the gradient norm or the learning rate is NaN/Inf, the step
keeps the previous parameters, optimiser state and EMAs (the step counter still advances, so
the data and the RNG move on) and counts the event in ``num_nonfinite``; the loop then skips or
stops according to ``train.nonfinite``. EDM2 zeroes non-finite gradients instead
(NVlabs/edm2 ``training/training_loop.py``).

The learning rate stands for the update: for AdamW with ``eps > 0`` (the app's optimiser, its
ranges checked by `nnx_train.validation`) the update ``-lr * (m_hat / (sqrt(v_hat) + eps) +
wd * p)`` is finite whenever the gradients, the parameters, the moments and ``lr`` are, and a
finite gradient norm bounds every ``g**2`` (Loshchilov & Hutter 2019, Algorithm 2). Checking
the update itself costs passes over it that XLA does not fuse into the update: 5 to 7% of a
DiT-S/2 step on one CPU thread (``tools/bench/bench_train.py``, batch 32, 2026-12-05), so the
scalar is checked instead. An optimiser that can turn finite inputs into a non-finite update
(Adam with ``eps=0`` on a parameter whose gradient is zero) is not caught on that step: the
parameters take the non-finite values, and every later step counts as non-finite until the
policy stops the run (at once under ``stop``, after ``train.max_nonfinite_steps`` under
``skip``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from nnx_train.ema import update_ema
from nnx_train.state import TrainState

__all__ = ["LossFn", "make_train_step"]

LossFn = Callable[[nnx.Module, Any, dict, jax.Array], tuple[jax.Array, dict]]
"""``loss_fn(model, frozen, batch, key) -> (loss (B,), aux)``: the task's objective, where
``frozen`` is the merged frozen module (encoders, VAE) or ``None``; ``batch["step"]`` is the
int32 step being taken (sCM's tangent warm-up reads it)."""


def _mean_metrics(aux: dict) -> dict:
    return {
        name: jnp.mean(jnp.asarray(value, jnp.float32))
        for name, value in aux.items()
        if name != "t" and jnp.issubdtype(jnp.asarray(value).dtype, jnp.number)
    }


def make_train_step(
    *,
    graphdef: nnx.GraphDef,
    frozen_graphdef: nnx.GraphDef | None,
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    schedule: optax.Schedule,
    ema_decays: Sequence[float],
    ema_sigma_rels: Sequence[float] = (),
) -> Callable[[TrainState, Any, dict], tuple[TrainState, dict]]:
    """Builds the pure step ``(state, frozen_state, batch) -> (state, metrics)``.

    Args:
      graphdef: graph definition of the trainable module (split as
        ``nnx.split(module, nnx.Param, ...)``).
      frozen_graphdef: graph definition of the frozen modules, or ``None``.
      loss_fn: the task objective (`LossFn`); its per-example loss is averaged.
      optimizer: optax transformation over ``state.params``.
      schedule: the optimiser's learning-rate schedule (logged, and checked by the guard).
      ema_decays: decays of the parameter averages.
      ema_sigma_rels: EMA lengths of EDM2's power-function averages (`nnx_train.ema`).

    Returns:
      The unjitted step; metrics are float32 scalars ``loss``, ``grad_norm`` (the norm, not
      its square, as in willisma/diffuse_nnx), ``learning_rate``, ``nonfinite`` and the means of the
      objective's auxiliary values.
    """
    decays = tuple(float(d) for d in ema_decays)
    sigma_rels = tuple(float(s) for s in ema_sigma_rels)

    def step(state: TrainState, frozen_state: Any, batch: dict) -> tuple[TrainState, dict]:
        key = jax.random.fold_in(state.rng, state.step)
        frozen = None if frozen_graphdef is None else nnx.merge(frozen_graphdef, frozen_state)

        def compute(params):
            model = nnx.merge(graphdef, params, state.rest)
            loss, aux = loss_fn(model, frozen, {**batch, "step": state.step}, key)
            _, _, rest = nnx.split(model, nnx.Param, ...)
            return jnp.mean(loss.astype(jnp.float32)), (aux, rest)

        (loss, (aux, rest)), grads = jax.value_and_grad(compute, has_aux=True)(state.params)
        grad_norm = optax.tree.norm(grads)
        learning_rate = jnp.asarray(schedule(state.step), jnp.float32)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & jnp.isfinite(learning_rate)
        ema_args = (decays, sigma_rels, state.step + 1)
        new_state = _apply(state, finite, grads, rest, optimizer, ema_args)
        metrics = {
            "loss": loss,
            "grad_norm": grad_norm,
            "learning_rate": learning_rate,
            "nonfinite": (~finite).astype(jnp.float32),
            **_mean_metrics(aux),
        }
        return new_state, metrics

    return step


def _apply(
    state: TrainState,
    finite: jax.Array,
    grads: Any,
    rest: Any,
    optimizer: optax.GradientTransformation,
    ema_args: tuple,
) -> TrainState:
    """The next state: the optimiser step and the EMAs when ``finite``, else the same
    parameters, optimiser state and EMAs; the step counter advances either way. ``ema_args``
    are `update_ema`'s ``(decays, sigma_rels, step)`` after the parameters."""

    def update(old: tuple) -> tuple:
        params, _, opt_state, ema = old
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return params, rest, opt_state, update_ema(ema, params, *ema_args)

    # A cond, not a select: the update runs in place on the donated buffers instead of
    # next to a kept copy (DiT-S/2: 650 MB of temporaries against 875 MB).
    old = (state.params, state.rest, state.opt_state, state.ema)
    params, rest, opt_state, ema = jax.lax.cond(finite, update, lambda old: old, old)
    return state.replace(
        step=state.step + 1,
        params=params,
        rest=rest,
        opt_state=opt_state,
        ema=ema,
        num_nonfinite=state.num_nonfinite + (~finite).astype(jnp.int32),
    )
