"""The DiT training steps that the benchmarks time, in JAX (three NNX paths) and PyTorch.

All paths compute the linear flow-matching loss ``mean((model(x_t, t, y) - (eps - x0))^2)``
with ``x_t = (1 - t) x0 + t eps`` and one AdamW update (lr 1e-4, weight decay 0). The
library step also computes the gradient norm and keeps the old state when the loss or the
norm is not finite; the plain ``jax.jit`` baseline does the same work, so that their ratio
is the cost of the library's structure alone. The JAX paths draw step ``i``'s noise from
``fold_in(key(0), i)``, so from the same weights they reach the same parameters.

``scan_blocks=True`` runs the DiT blocks under ``jax.lax.scan``: on XLA:CPU this is the
fast configuration (unrolled, a DiT-S/2 train step took 1.9-2.1x longer; see
``packages/nnx-nets/README.md``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from nnx_nets import DiT

LEARNING_RATE = 1e-4

SIZES = {  # hidden, depth, heads
    "S": (384, 12, 6),
    "B": (768, 12, 12),
    "tiny": (64, 2, 2),
}


def dit_kwargs(size: str, *, resolution: int, channels: int, patch: int, classes: int) -> dict:
    hidden, depth, heads = SIZES[size]
    return dict(
        input_size=resolution,
        patch_size=patch,
        in_channels=channels,
        hidden_size=hidden,
        depth=depth,
        num_heads=heads,
        num_classes=classes,
    )


def batch_arrays(batch: int, resolution: int, channels: int, classes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal((batch, resolution, resolution, channels)).astype(np.float32)
    y = rng.integers(0, classes, batch).astype(np.int32)
    return x0, y


def flow_loss(model, x0, y, key):
    key_t, key_eps = jax.random.split(key)
    t = jax.random.uniform(key_t, (x0.shape[0],))
    eps = jax.random.normal(key_eps, x0.shape)
    x_t = (1 - t)[:, None, None, None] * x0 + t[:, None, None, None] * eps
    return jnp.mean((model(x_t, t, y) - (eps - x0)) ** 2)


def _perturbed(model: nnx.Module) -> nnx.Module:
    """Make every parameter non-zero (adaLN-Zero starts as identity; timing is unaffected,
    but a zero network would hide mistakes)."""
    params = nnx.state(model, nnx.Param)
    keys = iter(jax.random.split(jax.random.key(1), len(jax.tree.leaves(params))))
    nnx.update(
        model, jax.tree.map(lambda p: p + 0.02 * jax.random.normal(next(keys), p.shape), params)
    )
    return model


def build_model(kwargs: dict, scan_blocks: bool) -> DiT:
    """The DiT every benchmark path starts from (seed 0, every parameter perturbed)."""
    return _perturbed(DiT(**kwargs, scan_blocks=scan_blocks, rngs=nnx.Rngs(0)))


def jax_pure_step(kwargs: dict, x0, y, *, scan_blocks: bool = False):
    """Plain ``jax.jit`` over split state: the library step's mathematics written out by hand.

    Same as :func:`library_step` (step key ``fold_in(key(0), step)``, mean loss, gradient
    norm, AdamW under a ``lax.cond`` that keeps parameters and moments when the loss or the
    norm is not finite), but on bare pytrees: no ``TrainState``, no loss-function protocol,
    no metrics dict.
    """
    model = build_model(kwargs, scan_blocks)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.adamw(LEARNING_RATE, weight_decay=0.0)

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(params, opt_state, i, x0, y, base_key):
        key = jax.random.fold_in(base_key, i)
        loss, grads = jax.value_and_grad(
            lambda p: flow_loss(nnx.merge(graphdef, p, rest), x0, y, key)
        )(params)
        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)

        def advance(old):
            updates, opt_state = tx.update(grads, old[1], old[0])
            return optax.apply_updates(old[0], updates), opt_state

        params, opt_state = jax.lax.cond(finite, advance, lambda old: old, (params, opt_state))
        return params, opt_state, i + 1, loss

    holder = {"params": params, "opt": tx.init(params), "i": jnp.int32(0)}
    x0, y, base_key = jnp.asarray(x0), jnp.asarray(y), jax.random.key(0)

    def run():
        holder["params"], holder["opt"], holder["i"], loss = step(
            holder["params"], holder["opt"], holder["i"], x0, y, base_key
        )
        return jax.block_until_ready(loss)

    run.params = lambda: holder["params"]
    return run


def nnx_jit_step(kwargs: dict, x0, y, *, scan_blocks: bool = False):
    """The NNX idiom: ``nnx.jit`` over the module and an ``nnx.Optimizer`` (graph mode).

    Plain AdamW (no gradient norm or non-finite guard): the cost of the idiom itself.
    """
    model = build_model(kwargs, scan_blocks)
    optimizer = nnx.Optimizer(model, optax.adamw(LEARNING_RATE, weight_decay=0.0), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, x0, y, base_key, i):
        key = jax.random.fold_in(base_key, i)
        loss, grads = nnx.value_and_grad(lambda m: flow_loss(m, x0, y, key))(model)
        optimizer.update(model, grads)
        return loss

    x0, y, base_key = jnp.asarray(x0), jnp.asarray(y), jax.random.key(0)
    counter = [0]

    def run():
        loss = step(model, optimizer, x0, y, base_key, jnp.int32(counter[0]))
        counter[0] += 1
        return jax.block_until_ready(loss)

    run.params = lambda: nnx.state(model, nnx.Param)
    return run


def library_step(kwargs: dict, x0, y, *, scan_blocks: bool = False):
    """The library's path: ``nnx_train``'s pure step on a ``TrainState`` (no EMA here)."""
    from nnx_train.state import TrainState
    from nnx_train.step import make_train_step

    model = build_model(kwargs, scan_blocks)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.adamw(LEARNING_RATE, weight_decay=0.0)
    state = TrainState(
        step=jnp.int32(0),
        params=params,
        rest=rest,
        opt_state=tx.init(params),
        ema={},
        key=jax.random.key_data(jax.random.key(0)),
        num_nonfinite=jnp.int32(0),
    )

    def loss_fn(model, frozen, batch, key):
        return flow_loss(model, batch["x0"], batch["y"], key)[None], {}

    step = jax.jit(
        make_train_step(
            graphdef=graphdef,
            frozen_graphdef=None,
            loss_fn=loss_fn,
            optimizer=tx,
            schedule=optax.constant_schedule(LEARNING_RATE),
            ema_decays=(),
        ),
        donate_argnums=(0,),
    )
    batch = {"x0": jnp.asarray(x0), "y": jnp.asarray(y)}
    holder = {"state": state}

    def run():
        holder["state"], metrics = step(holder["state"], None, batch)
        return jax.block_until_ready(metrics["loss"])

    run.params = lambda: holder["state"].params
    return run


def torch_step(kwargs: dict, x0, y):
    """The same step in PyTorch eager with the official DiT architecture."""
    import torch
    from torch_dit import DiT as TorchDiT

    torch.manual_seed(0)
    model = TorchDiT(**kwargs)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.02 * torch.randn_like(p))
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.0)
    x0 = torch.from_numpy(x0).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(y).long()

    def run():
        t = torch.rand(x0.shape[0])
        eps = torch.randn_like(x0)
        x_t = (1 - t)[:, None, None, None] * x0 + t[:, None, None, None] * eps
        loss = ((model(x_t, t, y) - (eps - x0)) ** 2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()

    return run
