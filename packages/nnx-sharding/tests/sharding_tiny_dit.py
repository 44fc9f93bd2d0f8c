"""A tiny DiT-like network and a flow-matching train step, shared by the tests.

The network mirrors DiT's parameter layout (patch embedding, timestep MLP, label table, adaLN
blocks with fused qkv attention and an MLP, adaLN final layer) and names every parameter
dimension with the logical axes of CONVENTIONS.md, so the sharding rules see what they would
see on nnx_nets.DiT. Kept independent of nnx_nets so that nnx-sharding's tests do not depend
on another package's progress.

Also used by the multi-process worker (loaded by file path there).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import nnx_sharding as ns
from nnx_sharding import logical_constraint

HIGHEST = jax.lax.Precision.HIGHEST

# XLA:CPU at optimisation level 0 compiles these tiny programs about twice as fast; the
# reference and the sharded steps use the same options, so the comparison stays fair.
FAST_COMPILE = {"xla_backend_optimization_level": 0}

# FSDP threshold of the tests: kernels (>= 2 KiB) are sharded; biases (<= 1.5 KiB), the
# RMSNorm scale and the 5 x 64 label table (1.25 KiB) are replicated: both branches run.
MIN_SHARD_BYTES = 2048

STRATEGIES: dict[str, tuple[ns.MeshConfig, ns.Rules]] = {
    "replicate": (ns.MeshConfig(data=8), ns.replicate_rules()),
    "fsdp": (ns.MeshConfig(data=1, fsdp=8), ns.fsdp_rules(min_shard_bytes=MIN_SHARD_BYTES)),
    "tensor": (ns.MeshConfig(data=2, tensor=4), ns.tensor_rules()),
    "fsdp_tensor": (
        ns.MeshConfig(data=1, fsdp=4, tensor=2),
        ns.fsdp_tensor_rules(min_shard_bytes=MIN_SHARD_BYTES),
    ),
    "sequence": (
        ns.MeshConfig(data=2, sequence=4),
        ns.sequence_rules(ns.fsdp_rules(min_shard_bytes=MIN_SHARD_BYTES)),
    ),
}


def _linear(d_in: int, d_out: int, axes: tuple, *, rngs: nnx.Rngs) -> nnx.Linear:
    # Non-zero biases so that bias gradients and shardings are exercised.
    return nnx.Linear(
        d_in,
        d_out,
        kernel_metadata={"logical_axes": axes},
        bias_metadata={"logical_axes": (axes[1],)},
        bias_init=nnx.initializers.normal(0.02),
        precision=HIGHEST,
        rngs=rngs,
    )


def _modulate(x: jax.Array, shift: jax.Array, scale: jax.Array) -> jax.Array:
    return x * (1 + scale[:, None]) + shift[:, None]


class Block(nnx.Module):
    """adaLN-Zero transformer block (DiT), with non-zero modulation so nothing is vacuous."""

    def __init__(self, hidden: int, num_heads: int, *, rngs: nnx.Rngs):
        self.num_heads = num_heads
        self.norm1 = nnx.LayerNorm(hidden, use_scale=False, use_bias=False, rngs=rngs)
        self.norm2 = nnx.LayerNorm(hidden, use_scale=False, use_bias=False, rngs=rngs)
        self.ada = _linear(hidden, 6 * hidden, ("embed", "mlp"), rngs=rngs)
        self.qkv = _linear(hidden, 3 * hidden, ("embed", "heads"), rngs=rngs)
        self.proj = _linear(hidden, hidden, ("heads", "embed"), rngs=rngs)
        self.fc1 = _linear(hidden, 4 * hidden, ("embed", "mlp"), rngs=rngs)
        self.fc2 = _linear(4 * hidden, hidden, ("mlp", "embed"), rngs=rngs)

    def __call__(self, x: jax.Array, c: jax.Array) -> jax.Array:
        batch, tokens, hidden = x.shape
        shift1, scale1, gate1, shift2, scale2, gate2 = jnp.split(self.ada(nnx.silu(c)), 6, -1)
        h = _modulate(self.norm1(x), shift1, scale1)
        q, k, v = jnp.split(self.qkv(h), 3, -1)
        head_dim = hidden // self.num_heads
        q, k, v = (a.reshape(batch, tokens, self.num_heads, head_dim) for a in (q, k, v))
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, precision=HIGHEST) / math.sqrt(head_dim)
        attn = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(logits, -1), v, precision=HIGHEST)
        x = x + gate1[:, None] * self.proj(attn.reshape(batch, tokens, hidden))
        x = logical_constraint(x, ("batch", "seq", None))
        h = _modulate(self.norm2(x), shift2, scale2)
        x = x + gate2[:, None] * self.fc2(nnx.gelu(self.fc1(h)))
        return logical_constraint(x, ("batch", "seq", None))


class TinyDiT(nnx.Module):
    """DiT on (B, H, W, C) inputs with time t: (B,) and labels y: (B,) int32."""

    def __init__(
        self,
        *,
        input_size: int = 8,
        patch_size: int = 2,
        in_channels: int = 2,
        hidden_size: int = 64,
        depth: int = 1,
        num_heads: int = 4,
        num_classes: int = 4,
        rngs: nnx.Rngs,
    ):
        self.patch_size = patch_size
        self.in_channels = in_channels
        grid = input_size // patch_size
        self.grid = grid
        patch_dim = patch_size * patch_size * in_channels
        self.x_embed = _linear(patch_dim, hidden_size, ("channels", "embed"), rngs=rngs)
        self.pos_embed = nnx.Variable(
            jnp.asarray(np.random.default_rng(0).normal(size=(1, grid * grid, hidden_size))).astype(
                jnp.float32
            )
        )
        self.t_fc1 = _linear(32, hidden_size, (None, "embed"), rngs=rngs)
        self.t_fc2 = _linear(hidden_size, hidden_size, ("embed", "embed"), rngs=rngs)
        self.y_embed = nnx.Embed(
            num_classes + 1,
            hidden_size,
            embedding_metadata={"logical_axes": ("classes", "embed")},
            rngs=rngs,
        )
        self.blocks = nnx.List([Block(hidden_size, num_heads, rngs=rngs) for _ in range(depth)])
        self.final_norm = nnx.RMSNorm(
            hidden_size, scale_metadata={"logical_axes": ("embed",)}, rngs=rngs
        )
        self.final_ada = _linear(hidden_size, 2 * hidden_size, ("embed", "mlp"), rngs=rngs)
        self.final = _linear(hidden_size, patch_dim, ("embed", "channels"), rngs=rngs)

    def __call__(self, x: jax.Array, t: jax.Array, y: jax.Array) -> jax.Array:
        batch, height, width, channels = x.shape
        p, g = self.patch_size, self.grid
        patches = x.reshape(batch, g, p, g, p, channels).transpose(0, 1, 3, 2, 4, 5)
        tokens = self.x_embed(patches.reshape(batch, g * g, p * p * channels))
        tokens = logical_constraint(tokens + self.pos_embed[...], ("batch", "seq", None))
        freqs = jnp.exp(-math.log(1e4) * jnp.arange(16, dtype=jnp.float32) / 16)
        t_feat = jnp.concatenate([jnp.cos(t[:, None] * freqs), jnp.sin(t[:, None] * freqs)], -1)
        c = self.t_fc2(nnx.silu(self.t_fc1(t_feat))) + self.y_embed(y)
        for block in self.blocks:
            tokens = block(tokens, c)
        shift, scale = jnp.split(self.final_ada(nnx.silu(c)), 2, -1)
        out = self.final(_modulate(self.final_norm(tokens), shift, scale))
        out = out.reshape(batch, g, g, p, p, channels).transpose(0, 1, 3, 2, 4, 5)
        return out.reshape(batch, height, width, channels)


def build(seed: int = 0, **kwargs: Any) -> tuple[TinyDiT, nnx.Optimizer]:
    """Model and AdamW optimiser (the zero-argument constructor wraps this in a lambda)."""
    model = TinyDiT(rngs=nnx.Rngs(seed), **kwargs)
    return model, nnx.Optimizer(model, optax.adamw(1e-3, eps=1e-3, weight_decay=0.1), wrt=nnx.Param)


def make_batch(batch_size: int = 8, input_size: int = 8, in_channels: int = 2, seed: int = 1):
    """x0, y, t, eps as numpy arrays: the same batch on every process (rows split later)."""
    rng = np.random.default_rng(seed)
    x0 = rng.normal(size=(batch_size, input_size, input_size, in_channels)).astype(np.float32)
    eps = rng.normal(size=x0.shape).astype(np.float32)
    t = rng.uniform(size=(batch_size,)).astype(np.float32)
    y = rng.integers(0, 4, size=(batch_size,)).astype(np.int32)
    return {"x0": x0, "eps": eps, "t": t, "y": y}


def flow_loss(model: TinyDiT, batch: dict) -> jax.Array:
    """Linear-path flow matching: x_t = (1 - t) x0 + t eps, target v = eps - x0 (t=0 data)."""
    t = batch["t"]
    x_t = (1 - t)[:, None, None, None] * batch["x0"] + t[:, None, None, None] * batch["eps"]
    v = model(x_t, t, batch["y"])
    # Per-example means first: one long fp32 sum over all B*H*W*C terms would carry a rounding
    # error of ~7e-7 relative (measured against float64), the size of the tolerance itself.
    per_example = jnp.mean((v - (batch["eps"] - batch["x0"])) ** 2, axis=(1, 2, 3))
    return jnp.mean(per_example)


def make_step(graphdef: nnx.GraphDef, *, state_shardings: Any = None):
    """Jitted pure step (state, batch) -> (new state, loss, grads); shardings pinned if given."""

    def step(state: nnx.State, batch: dict):
        model, optimizer = nnx.merge(graphdef, state)
        loss, grads = nnx.value_and_grad(flow_loss)(model, batch)
        optimizer.update(model, grads)
        return nnx.state((model, optimizer)), loss, grads

    if state_shardings is None:
        return jax.jit(step, compiler_options=FAST_COMPILE)
    return jax.jit(step, out_shardings=(state_shardings, None, None), compiler_options=FAST_COMPILE)


def to_host(tree: Any) -> Any:
    """The same tree with numpy leaves (device_put from numpy is a plain transfer, whereas
    device_put between two device layouts compiles a resharding program per shape)."""
    return jax.tree.map(np.asarray, tree)


def key_of(path: Any) -> str:
    """ "0.blocks.0.qkv.kernel" for a pytree path into a state (Variable ".value" dropped)."""
    key = jax.tree_util.keystr(path, simple=True, separator=".")
    return key.removesuffix(".value")


def flat(tree: Any) -> dict[str, np.ndarray]:
    """{"0.blocks.0.qkv.kernel": array} of a (host-gatherable) state, for comparisons."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {key_of(path): np.asarray(leaf) for path, leaf in leaves}


def max_relative_error(actual: dict, expected: dict) -> tuple[float, str]:
    """Largest max|a - e| / max|e| over the leaves (per-leaf scale), and where it occurs."""
    assert actual.keys() == expected.keys()
    worst, where = 0.0, ""
    for key, value in expected.items():
        scale = float(np.max(np.abs(value))) if value.size else 0.0
        error = float(np.max(np.abs(actual[key] - value))) if value.size else 0.0
        relative = error / scale if scale > 0 else error
        if relative > worst:
            worst, where = relative, key
    return worst, where


def state_errors(actual: dict, expected: dict) -> tuple[tuple[float, str], tuple[float, str]]:
    """`max_relative_error` of a flat train state, split into (everything but AdamW's second
    moment, the second moment ``nu``): nu = (1 - b2) g^2 doubles g's relative error."""
    second = {key for key in expected if ".nu." in key}
    rest = [key for key in expected if key not in second]
    return (
        max_relative_error({k: actual[k] for k in rest}, {k: expected[k] for k in rest}),
        max_relative_error({k: actual[k] for k in second}, {k: expected[k] for k in second}),
    )
