"""Training and sampling cases of ``gpu.py``: ours (JAX) and the official DiT in PyTorch.

Ours is the library's own path: `nnx_train.step.make_train_step` (AdamW, one EMA, gradient
norm, non-finite guard; state donated, the update fused into the jitted step) on a DiT under a
`nnx_nets.Precision` policy with a remat policy and scanned blocks; sampling is one ``jax.jit``
over `nnx_samplers.sample` with `ClassifierFreeGuidance`. PyTorch runs ``tools/bench/torch_dit.py``
(the official architecture) with fused AdamW, bfloat16 ``torch.autocast`` and, for the
compiled contender, ``torch.compile`` and the flash-attention SDPA kernel.
"""

from __future__ import annotations

import contextlib
import time

import dit_steps
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from nnx_nets import DiT

NUM_STEPS = 50
SCALE = 1.5
INTERVAL = (0.0, 0.7)  # guide for t in [0, 0.7] (REPA's guidance_high 0.7; t = 1 is noise)


def _timed(fn, steps: int, sync) -> tuple[float, float]:
    """(first call seconds incl. compilation, median-free mean seconds of ``steps`` calls)."""
    tic = time.perf_counter()
    sync(fn())
    first = time.perf_counter() - tic
    sync(fn())
    start = time.perf_counter()
    out = None
    for _ in range(steps):
        out = fn()
    sync(out)
    return first, (time.perf_counter() - start) / steps


def jax_train(
    model_kwargs: dict, batch: int, steps: int, *, remat: str, scan: bool = True, profile=None
) -> dict:
    """Seconds per step of the library's train step; ``profile(fn)`` traces a few steps."""
    from nnx_train.memory_model import flow_loss
    from nnx_train.state import TrainState
    from nnx_train.step import make_train_step

    model = dit_steps._perturbed(
        DiT(**model_kwargs, precision="bfloat16", remat=remat, scan_blocks=scan, rngs=nnx.Rngs(0))
    )
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.adamw(1e-4, weight_decay=0.0)
    holder = {
        "state": TrainState(
            step=jnp.int32(0),
            params=params,
            rest=rest,
            opt_state=tx.init(params),
            ema={"ema_0.9999": jax.tree.map(jnp.copy, params)},
            key=jax.random.key_data(jax.random.key(0)),
            num_nonfinite=jnp.int32(0),
        )
    }
    del model, params
    step = make_train_step(
        graphdef=graphdef,
        frozen_graphdef=None,
        loss_fn=flow_loss,
        optimizer=tx,
        schedule=optax.constant_schedule(1e-4),
        ema_decays=(0.9999,),
    )
    step = jax.jit(step, donate_argnums=(0,))
    size, channels, classes = (
        model_kwargs[k] for k in ("input_size", "in_channels", "num_classes")
    )
    x0, y = dit_steps.batch_arrays(batch, size, channels, classes)
    data = {"x0": jnp.asarray(x0), "y": jnp.asarray(y)}

    def run():
        holder["state"], metrics = step(holder["state"], None, data)
        return metrics["loss"]

    first, seconds = _timed(run, steps, jax.block_until_ready)
    extra = {"profile": profile(run)} if profile else {}
    loss = float(run())
    return dict(seconds=seconds, first_call_s=first, loss=loss, remat=remat, **extra)


def _torch_model(model_kwargs: dict, device: str, compiled: bool):
    import torch
    from torch_dit import DiT as TorchDiT

    torch.manual_seed(0)
    model = TorchDiT(**model_kwargs).to(device)
    with torch.no_grad():  # non-zero weights everywhere, as ours (adaLN-Zero starts at 0)
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model, (torch.compile(model) if compiled else model)


def _flash(device: str):
    """The flash-attention SDPA kernel on CUDA; the default choice elsewhere (CPU --quick)."""
    if device != "cuda":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.FLASH_ATTENTION)


def torch_train(model_kwargs: dict, batch: int, steps: int, *, compiled: bool, profile=None):
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, forward = _torch_model(model_kwargs, device, compiled)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=1e-4, weight_decay=0.0, fused=device == "cuda"
    )
    size, channels, classes = (
        model_kwargs[k] for k in ("input_size", "in_channels", "num_classes")
    )
    x0, y = dit_steps.batch_arrays(batch, size, channels, classes)
    x0 = torch.from_numpy(x0).permute(0, 3, 1, 2).contiguous().to(device)
    y = torch.from_numpy(y).long().to(device)

    def run():
        t = torch.rand(batch, device=device)
        eps = torch.randn_like(x0)
        x_t = (1 - t)[:, None, None, None] * x0 + t[:, None, None, None] * eps
        with torch.autocast(device, dtype=torch.bfloat16), _flash(device):
            out = forward(x_t, t, y)
        loss = ((out.float() - (eps - x0)) ** 2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    sync = (lambda _: torch.cuda.synchronize()) if device == "cuda" else (lambda _: None)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    first, seconds = _timed(run, steps, sync)
    extra = {"profile": profile(run)} if profile else {}
    if device == "cuda":
        extra["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return dict(seconds=seconds, first_call_s=first, loss=float(run().detach()), **extra)


def jax_sampling(model_kwargs: dict, batch: int, *, interval: bool) -> dict:
    from nnx_samplers import ClassifierFreeGuidance, Euler, GuidanceInterval, UniformGrid, sample

    model = dit_steps._perturbed(DiT(**model_kwargs, precision="bfloat16", rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(model)
    classes, size = model_kwargs["num_classes"], model_kwargs["input_size"]
    labels = jnp.arange(batch, dtype=jnp.int32) % classes
    window = GuidanceInterval(*INTERVAL) if interval else None

    @jax.jit
    def generate(state, key):
        field = ClassifierFreeGuidance(
            nnx.merge(graphdef, state), labels, null_label=classes, scale=SCALE, interval=window
        )
        noise = jax.random.normal(key, (batch, size, size, model_kwargs["in_channels"]))
        return sample(field, noise, Euler(), UniformGrid(NUM_STEPS)).sample

    keys = iter(jax.random.split(jax.random.key(0), 8))
    first, seconds = _timed(lambda: generate(state, next(keys)), 1, jax.block_until_ready)
    finite = bool(jnp.all(jnp.isfinite(generate(state, next(keys)))))
    return dict(seconds=seconds, first_call_s=first, finite=finite)


def torch_sampling(model_kwargs: dict, batch: int, *, interval: bool, compiled: bool) -> dict:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, forward = _torch_model(model_kwargs, device, compiled)
    model.eval()
    classes, size = model_kwargs["num_classes"], model_kwargs["input_size"]
    labels = torch.arange(batch, device=device) % classes
    both = torch.cat([labels, torch.full_like(labels, classes)])
    times = np.linspace(1.0, 0.0, NUM_STEPS + 1)  # ours: UniformGrid, t = 1 noise -> 0 data

    @torch.no_grad()
    def run():
        x = torch.randn(batch, model_kwargs["in_channels"], size, size, device=device)
        for t, t_next in zip(times[:-1], times[1:]):
            guided = not interval or INTERVAL[0] <= t <= INTERVAL[1]
            inputs = torch.cat([x, x]) if guided else x
            t_batch = torch.full((inputs.shape[0],), float(t), device=device)
            with torch.autocast(device, dtype=torch.bfloat16), _flash(device):
                out = forward(inputs, t_batch, both if guided else labels).float()
            if guided:
                cond, uncond = out.chunk(2)
                out = uncond + SCALE * (cond - uncond)
            x = x + (t_next - t) * out
        return x

    sync = (lambda _: torch.cuda.synchronize()) if device == "cuda" else (lambda _: None)
    first, seconds = _timed(run, 1, sync)
    return dict(seconds=seconds, first_call_s=first, finite=bool(torch.isfinite(run()).all()))
