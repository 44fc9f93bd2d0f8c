# %% [markdown]
# # Tutorial 2: FSDP and tensor parallelism with NNX on a mesh
#
# The same `nnx_nets.DiT` and the same training step run replicated, fully sharded (FSDP),
# tensor-parallel, or both, by changing two objects only: the device mesh and the rule
# table that maps each parameter's `logical_axes` metadata to mesh axes. This script prints
# the memory that parameters and AdamW state take on each device under each strategy, trains
# two steps under FSDP and under tensor parallelism, and checks that both give the same
# numbers.
#
# It runs on a laptop: XLA can pretend that the CPU is 8 devices. The flag must be set
# before JAX is imported. On a TPU or a multi-GPU host, drop it; the code is unchanged.

# %%
import os

# The programs below are tiny, so compiling them costs far more than running them; XLA:CPU
# compiles about twice as fast at optimisation level 0. Drop both flags on real hardware.
os.environ["XLA_FLAGS"] = " ".join(
    [
        os.environ.get("XLA_FLAGS", ""),
        "--xla_force_host_platform_device_count=8",
        "--xla_backend_optimization_level=0",
    ]
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import functools  # noqa: E402
import math  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

import nnx_nets  # noqa: E402
import nnx_objectives  # noqa: E402
import nnx_sharding as ns  # noqa: E402

print(f"{jax.device_count()} devices ({jax.devices()[0].platform})")

# %% [markdown]
# ## The model and its logical axes
#
# Every `nnx.Param` of the nnx-nets networks carries a `logical_axes` tuple, one name per
# dimension: `embed` for the residual width, `mlp` for the MLP hidden width, `heads` for
# attention heads, and so on. `build` creates the model and its optimiser. It must create its
# own `nnx.Rngs`, so that `sharded_init` can trace it and create every array already sharded:
# the full model never sits on one device.


# %%
def build():
    model = nnx_nets.DiT(
        input_size=8,
        patch_size=2,
        in_channels=4,
        hidden_size=64,
        depth=2,
        num_heads=4,
        num_classes=10,
        rngs=nnx.Rngs(0),
    )
    return model, nnx.Optimizer(model, optax.adamw(1e-3), wrt=nnx.Param)


# %% [markdown]
# ## Four strategies on the same 8 devices
#
# The mesh always has the axes `("data", "fsdp", "sequence", "tensor")`; unused axes have
# size 1. FSDP splits `embed` dimensions over `fsdp`; tensor parallelism splits `mlp` and
# `heads` over `tensor`. By default `fsdp_rules` replicates tensors below 256 KiB, because
# sharding a bias costs more in communication than it saves. This model is tiny, so we set
# the threshold to 0 to make the effect visible.
#
# `abstract_state` gives every array's shape and sharding without allocating or compiling
# anything, so the memory per device of each strategy can be read off before choosing one.

# %%
STRATEGIES = {
    "replicate": (ns.MeshConfig(data=8), ns.replicate_rules()),
    "fsdp": (ns.MeshConfig(data=1, fsdp=8), ns.fsdp_rules(min_shard_bytes=0)),
    "tensor": (ns.MeshConfig(data=2, tensor=4), ns.tensor_rules()),
    "fsdp+tensor": (
        ns.MeshConfig(data=1, fsdp=2, tensor=4),
        ns.fsdp_tensor_rules(min_shard_bytes=0),
    ),
}


def planned_bytes_per_device(abstract) -> int:
    """Bytes of one device's shards (the largest, if shards differ)."""
    total = 0
    for leaf in jax.tree.leaves(abstract):
        shard_shape = leaf.sharding.shard_shape(leaf.shape)
        total += math.prod(shard_shape) * np.dtype(leaf.dtype).itemsize
    return total


planned = {}
for name, (mesh_config, rules) in STRATEGIES.items():
    mesh = ns.make_mesh(mesh_config)
    _, abstract = ns.abstract_state(build, mesh=mesh, rules=rules)
    planned[name] = planned_bytes_per_device(abstract)
    fc1 = abstract[0]["blocks"][0]["mlp"]["fc1"]["kernel"].get_value()
    axes = {k: v for k, v in mesh.shape.items() if v > 1}
    print(
        f"{name:12s} mesh {axes}: memory per device {planned[name] / 2**20:.3f} MiB "
        f"({planned[name] / planned['replicate']:.2f} of replicated); "
        f"MLP kernel {fc1.shape} split as {fc1.sharding.spec}"
    )

# %% [markdown]
# ## Training under FSDP and under tensor parallelism
#
# The step is an ordinary pure function of the state (split once, merged inside `jax.jit`).
# Its output shardings are pinned to those of the input state, so parameters and optimiser
# moments stay sharded after the update; the compiler inserts the all-gathers and
# reduce-scatters. `global_batch` places the host's batch on the devices of the batch axes.
# `bytes_per_device` then measures what each device really holds. The model is created once,
# born sharded by `sharded_init`; moving it to another strategy is one `jax.device_put`.

# %%
objective = nnx_objectives.InterpolantObjective()
rng = np.random.default_rng(0)
local_batch = {
    "x0": rng.standard_normal((16, 8, 8, 4)).astype(np.float32),
    "y": rng.integers(0, 10, 16).astype(np.int32),
}


def train_two_steps(name, graphdef, state):
    mesh_config, rules = STRATEGIES[name]
    mesh = ns.make_mesh(mesh_config)
    shardings = ns.named_shardings(state, mesh=mesh, rules=rules)
    state = jax.device_put(state, shardings)  # a no-op if the state is already laid out so

    @functools.partial(jax.jit, out_shardings=(shardings, None))
    def train_step(state, batch, key):
        model, optimizer = nnx.merge(graphdef, state)

        def loss_fn(model):
            return jnp.mean(objective(model, batch["x0"], batch["y"], key)[0])

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return nnx.state((model, optimizer)), loss

    batch = ns.global_batch(local_batch, mesh=mesh, rules=rules)
    losses = []
    with ns.activation_sharding(mesh, rules):
        for _ in range(2):
            state, loss = train_step(state, batch, jax.random.key(0))
            losses.append(float(loss))
    measured = max(ns.bytes_per_device(state).values())
    fc1 = state[0]["blocks"][0]["mlp"]["fc1"]["kernel"].get_value()
    print(
        f"{name}: losses {losses[0]:.6f} -> {losses[1]:.6f}; measured memory per device "
        f"{measured / 2**20:.3f} MiB (planned {planned[name] / 2**20:.3f}); "
        f"MLP kernel after the update: {fc1.sharding.spec}"
    )
    return losses, measured


# Born sharded under FSDP: no device ever holds the whole model.
fsdp_mesh_config, fsdp_rules = STRATEGIES["fsdp"]
model, optimizer = ns.sharded_init(build, mesh=ns.make_mesh(fsdp_mesh_config), rules=fsdp_rules)
graphdef, initial_state = nnx.split((model, optimizer))
fsdp_losses, fsdp_bytes = train_two_steps("fsdp", graphdef, initial_state)
# The same initial state, resharded for tensor parallelism by `jax.device_put`.
tensor_losses, tensor_bytes = train_two_steps("tensor", graphdef, initial_state)

# %% [markdown]
# ## The numbers agree
#
# Both steps use the same batch and noise, so the second loss is lower than the first. A
# freshly initialised DiT outputs zero (adaLN-Zero), so the first loss does not depend on the
# weights; the second does, through the first update. Sharding changes where arrays live and
# the order of some float32 sums, not the maths: the second losses agree to float32
# rounding.

# %%
difference = abs(fsdp_losses[1] - tensor_losses[1]) / abs(fsdp_losses[1])
print(f"relative difference of the second loss, FSDP vs tensor: {difference:.2e}")
print(f"FSDP memory per device / replicated: {fsdp_bytes / planned['replicate']:.3f}")
print(f"tensor memory per device / replicated: {tensor_bytes / planned['replicate']:.3f}")
