"""Memory model of a training step, read from XLA's compiled program without a GPU.

``jax.jit(step).lower(abstract inputs).compile().memory_analysis()`` is XLA's buffer
assignment for the whole step: the bytes of its arguments (parameters, AdamW moments, EMA,
batch), its outputs (the new state, aliased to the donated arguments) and its temporaries
(activations kept for the backward pass, gradients, workspace). Nothing is allocated: the
inputs are ``jax.ShapeDtypeStruct``s and the program is compiled for the host CPU, whose
buffer assignment is a stand-in for the GPU's (XLA:CPU fuses less and computes bfloat16 dots
in float32, so its temporaries are an upper bound in practice; measured figures in
``docs/precision.md``).

The step is `nnx_train.step.make_train_step` with AdamW and one EMA, on the linear
flow-matching loss ``mean((model(x_t, t, y) - (eps - x0))^2)``, ``x_t = (1 - t) x0 + t eps``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from nnx_train.state import TrainState
from nnx_train.step import make_train_step

__all__ = ["StepMemory", "flow_loss", "train_step_memory"]

GIB = 2**30


@dataclasses.dataclass(frozen=True)
class StepMemory:
    """Bytes of one compiled train step (``Compiled.memory_analysis()``) and its compile time.

    Attributes:
      argument_bytes: inputs (state, batch).
      output_bytes: outputs (new state, metrics).
      alias_bytes: outputs written in place into donated arguments.
      temp_bytes: temporaries (saved activations, gradients, workspace).
      compile_seconds: wall time of ``lower(...).compile()``.
    """

    argument_bytes: int
    output_bytes: int
    alias_bytes: int
    temp_bytes: int
    compile_seconds: float

    @property
    def total_bytes(self) -> int:
        """``temp + argument + output``: an upper bound of the step's device memory."""
        return self.temp_bytes + self.argument_bytes + self.output_bytes

    @property
    def peak_bytes(self) -> int:
        """``temp + argument + output - alias``: donated outputs reuse their inputs' memory."""
        return self.total_bytes - self.alias_bytes

    def gib(self) -> dict[str, float]:
        """Every figure in GiB (2^30 bytes), for reports."""
        names = ("argument_bytes", "output_bytes", "alias_bytes", "temp_bytes")
        figures = {n.replace("_bytes", ""): getattr(self, n) / GIB for n in names}
        return figures | {"total": self.total_bytes / GIB, "peak": self.peak_bytes / GIB}


def flow_loss(model: nnx.Module, frozen, batch: dict, key: jax.Array) -> tuple[jax.Array, dict]:
    """Linear-path velocity loss per example, ``(B,)`` float32 (a `nnx_train.step.LossFn`)."""
    del frozen
    x0, y = batch["x0"], batch["y"]
    key_t, key_eps = jax.random.split(key)
    t = jax.random.uniform(key_t, (x0.shape[0],))
    eps = jax.random.normal(key_eps, x0.shape)
    x_t = (1 - t)[:, None, None, None] * x0 + t[:, None, None, None] * eps
    err = (model(x_t, t, y).astype(jnp.float32) - (eps - x0)) ** 2
    return jnp.mean(err, axis=(1, 2, 3)), {}


def abstract_train_state(
    ctor: Callable[[], nnx.Module], optimizer: optax.GradientTransformation, ema_decays
) -> tuple[nnx.GraphDef, TrainState]:
    """The graph definition and a `TrainState` of ``jax.ShapeDtypeStruct``s (nothing allocated)."""
    graphdef, params, rest = nnx.split(nnx.eval_shape(ctor), nnx.Param, ...)
    state = TrainState(
        step=jax.ShapeDtypeStruct((), jnp.int32),
        params=params,
        rest=rest,
        opt_state=jax.eval_shape(optimizer.init, params),
        ema={f"ema_{d}": params for d in ema_decays},
        key=jax.ShapeDtypeStruct((2,), jnp.uint32),
        num_nonfinite=jax.ShapeDtypeStruct((), jnp.int32),
    )
    return graphdef, state


def lower_train_step(
    ctor: Callable[[], nnx.Module],
    *,
    batch_size: int,
    input_shape: tuple[int, int, int],
    ema_decays: tuple[float, ...] = (0.9999,),
) -> jax.stages.Lowered:
    """``jax.jit(step, donate_argnums=0).lower(...)`` of the train step of ``ctor()``'s network.

    Args:
      ctor: builds the network (only traced).
      batch_size: ``B``.
      input_shape: ``(H, W, C)`` of one latent.
      ema_decays: one EMA copy of the parameters per decay.
    """
    optimizer = optax.adamw(1e-4, weight_decay=0.0)
    graphdef, state = abstract_train_state(ctor, optimizer, ema_decays)
    step = make_train_step(
        graphdef=graphdef,
        frozen_graphdef=None,
        loss_fn=flow_loss,
        optimizer=optimizer,
        schedule=optax.constant_schedule(1e-4),
        ema_decays=ema_decays,
    )
    batch = {
        "x0": jax.ShapeDtypeStruct((batch_size, *input_shape), jnp.float32),
        "y": jax.ShapeDtypeStruct((batch_size,), jnp.int32),
    }
    return jax.jit(step, donate_argnums=(0,)).lower(state, None, batch)


def train_step_memory(
    ctor: Callable[[], nnx.Module],
    *,
    batch_size: int,
    input_shape: tuple[int, int, int],
    ema_decays: tuple[float, ...] = (0.9999,),
) -> StepMemory:
    """Compile the train step of ``ctor()``'s network for abstract inputs; its `StepMemory`."""
    start = time.perf_counter()
    lowered = lower_train_step(
        ctor, batch_size=batch_size, input_shape=input_shape, ema_decays=ema_decays
    )
    analysis = lowered.compile().memory_analysis()
    return StepMemory(
        argument_bytes=int(analysis.argument_size_in_bytes),
        output_bytes=int(analysis.output_size_in_bytes),
        alias_bytes=int(analysis.alias_size_in_bytes),
        temp_bytes=int(analysis.temp_size_in_bytes),
        compile_seconds=time.perf_counter() - start,
    )
