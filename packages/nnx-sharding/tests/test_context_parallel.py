"""Context parallelism splits work: a DiT train step's per-device FLOPs under FSDP x sequence.

nnx_nets' DiT constrains its tokens, queries and MLP hidden states by logical name (through
Flax's logical-axis rules and JAX's mesh context, which `activation_sharding` enters), so under
`sequence_rules` each of the ``sequence`` devices computes its own slice of the tokens. The
per-device FLOPs are read from the compiled SPMD program (``cost_analysis()`` describes the
program one device runs).
"""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import nnx_sharding as ns
from nnx_nets import DiT, DiTDH, LightningDiT, constrain_tokens

BATCH = 8
# 16 x 16 x 4 input, patch 2 -> 64 tokens (divisible by sequence = 4); width 64, 4 heads.
SHAPE = (16, 16, 4)
MESHES = {
    "fsdp8": (ns.MeshConfig(data=1, fsdp=8), ns.fsdp_rules(min_shard_bytes=0)),
    "fsdp2_seq4": (
        ns.MeshConfig(data=1, fsdp=2, sequence=4),
        ns.sequence_rules(ns.fsdp_rules(min_shard_bytes=0)),
    ),
}


def build_dit() -> DiT:
    return DiT(
        input_size=SHAPE[0],
        patch_size=2,
        in_channels=SHAPE[2],
        hidden_size=64,
        depth=2,
        num_heads=4,
        num_classes=10,
        rngs=nnx.Rngs(0),
    )


def per_device_flops(compiled) -> float:
    """FLOPs of one device's program; ``cost_analysis()`` returned a one-element list of dicts
    in older jax versions and returns the dict itself in newer ones."""
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0]
    return float(cost["flops"])


@pytest.fixture(scope="module")
def dit_step():
    """(step, params, opt_state, batch): a flow-matching AdamW step of a small DiT."""
    graphdef, params = nnx.split(build_dit(), nnx.Param)
    # adaLN-Zero zeroes the modulation and output layers: the output would be 0 and the loss
    # independent of the network. Random offsets on every parameter make the loss depend on
    # every block.
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda x: x + 0.1 * rng.normal(size=x.shape).astype(x.dtype), params)
    optimizer = optax.adamw(1e-3)
    batch = {
        "x0": rng.normal(size=(BATCH, *SHAPE)).astype(np.float32),
        "eps": rng.normal(size=(BATCH, *SHAPE)).astype(np.float32),
        "t": rng.uniform(size=(BATCH,)).astype(np.float32),
        "y": rng.integers(0, 10, size=(BATCH,)).astype(np.int32),
    }

    def loss_fn(params, batch):
        t = batch["t"][:, None, None, None]
        x_t = (1 - t) * batch["x0"] + t * batch["eps"]  # linear path, t = 1 is noise
        v = nnx.merge(graphdef, params)(x_t, batch["t"], batch["y"])
        return jnp.mean((v - (batch["eps"] - batch["x0"])) ** 2)

    def step(params, opt_state, batch):
        loss, grads = jax.value_and_grad(loss_fn)(params, batch)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step, params, optimizer.init(params), batch


def compile_and_run(dit_step, name: str | None, *, constrain: bool = True):
    """Compiles the step for one mesh (``None``: one device) -> (flops per device, loss)."""
    step, params, opt_state, batch = dit_step
    context = contextlib.nullcontext()
    if name is not None:
        config, rules = MESHES[name]
        mesh = ns.make_mesh(config)
        params = jax.device_put(params, ns.named_shardings(params, mesh=mesh, rules=rules))
        opt_state = jax.device_put(opt_state, ns.named_shardings(opt_state, mesh=mesh, rules=rules))
        batch = ns.global_batch(batch, mesh=mesh, rules=rules)  # split along the batch only
        if constrain:
            context = ns.activation_sharding(mesh, rules)
    else:
        params, opt_state, batch = jax.device_put((params, opt_state, batch), jax.devices()[0])
    with context:
        compiled = jax.jit(step).lower(params, opt_state, batch).compile()
        _, _, loss = compiled(params, opt_state, batch)
    return per_device_flops(compiled), float(loss)


def test_sequence_sharding_splits_dit_train_step_flops(dit_step, eight_devices):
    single_flops, single_loss = compile_and_run(dit_step, None)
    fsdp8_flops, _ = compile_and_run(dit_step, "fsdp8")
    seq_flops, seq_loss = compile_and_run(dit_step, "fsdp2_seq4")
    print(
        f"per-device FLOPs: 1 device {single_flops:.3g}, fsdp8 {fsdp8_flops:.3g}, "
        f"fsdp2 x seq4 {seq_flops:.3g} ({seq_flops / fsdp8_flops:.3f} x fsdp8); loss "
        f"{single_loss:.7g}, relative difference {abs(seq_loss / single_loss - 1):.2g}"
    )
    # Measured (XLA:CPU, jax 0.10.2 / 0.12.0.1): 3.94e8 / 3.96e8 on one device, 4.96e7 / 4.98e7
    # fsdp8, 5.18e7 / 5.20e7 fsdp2 x seq4 (1.044x fsdp8 on both). What remains unsplit by sequence: the adaLN modulation of the condition
    # (B, D), the optimiser update of parameters sharded 2 ways instead of 8.
    assert seq_flops <= 1.25 * fsdp8_flops
    assert fsdp8_flops <= 1.25 * single_flops / 8  # sanity: FSDP splits the batch 8 ways
    # Sharding reorders fp32 sums (over the batch, over the tokens of each sequence shard, in
    # the all-gathered attention): a few ulps of the loss. Measured on XLA:CPU: equal to the
    # bit (jax 0.10.2), 9.4e-8 relative (jax 0.12.0.1); the bar, 1e-6, is ~8 float32 ulps.
    assert abs(seq_loss - single_loss) <= 1e-6 * abs(single_loss)
    # Not vacuous: the network's output moves the loss far from its value at a zero output.
    batch = dit_step[3]
    zero_output_loss = float(np.mean((batch["eps"] - batch["x0"]) ** 2))
    assert abs(single_loss - zero_output_loss) > 1e-2 * zero_output_loss


def test_sequence_sharding_without_the_context_repeats_work(dit_step, eight_devices):
    # Negative control: the same mesh and rules traced outside `activation_sharding` (the
    # network's constraints are identities) only split the batch 2 ways: each of the 4
    # sequence devices repeats the same work (measured 1.72e8 = 3.5 x fsdp8).
    fsdp8_flops, _ = compile_and_run(dit_step, "fsdp8")
    unconstrained_flops, _ = compile_and_run(dit_step, "fsdp2_seq4", constrain=False)
    print(f"unconstrained fsdp2 x seq4: {unconstrained_flops:.3g} per device")
    assert unconstrained_flops >= 3 * fsdp8_flops


def test_nnx_nets_tokens_follow_the_activation_rules(eight_devices):
    mesh = ns.make_mesh(ns.MeshConfig(data=2, sequence=4))
    tokens = jnp.arange(4 * 16 * 8, dtype=jnp.float32).reshape(4, 16, 8)
    odd = jnp.ones((4, 17, 8))  # 1 + 16 tokens (a CLS token): 17 does not divide by 4

    assert constrain_tokens(tokens) is tokens  # identity outside a context

    def f(tokens, odd):
        return constrain_tokens(tokens * 2), constrain_tokens(odd * 2)

    def g(tokens, odd):  # a separate function: jax.jit caches traces per function
        return constrain_tokens(tokens * 2), constrain_tokens(odd * 2)

    with ns.activation_sharding(mesh, ns.sequence_rules()):
        split, odd_split = jax.jit(f)(tokens, odd)
    with ns.activation_sharding(mesh, ns.replicate_rules()):
        whole, _ = jax.jit(g)(tokens, odd)
    tokens_split = NamedSharding(mesh, P(("data", "fsdp"), "sequence", None))
    batch_split = NamedSharding(mesh, P(("data", "fsdp"), None, None))
    assert split.sharding.is_equivalent_to(tokens_split, 3)
    assert odd_split.sharding.is_equivalent_to(batch_split, 3)  # indivisible: replicated
    assert whole.sharding.is_equivalent_to(batch_split, 3)
    assert not whole.sharding.is_equivalent_to(tokens_split, 3)
    np.testing.assert_array_equal(np.asarray(split), 2 * np.asarray(tokens))


def build_lightning_dit():
    # Scanned blocks, QK-norm and RoPE: the constraints inside lax.scan, RoPE tables sliced
    # along the split token axis.
    return LightningDiT(
        input_size=SHAPE[0],
        patch_size=2,
        in_channels=SHAPE[2],
        hidden_size=64,
        depth=2,
        num_heads=4,
        num_classes=10,
        qk_norm=True,
        scan_blocks=True,
        rngs=nnx.Rngs(0),
    )


def build_dit_dh():
    # Per-token condition of the head, (B, N, D), split like the tokens.
    return DiTDH(
        input_size=SHAPE[0],
        patch_size=2,
        in_channels=SHAPE[2],
        hidden_size=64,
        depth=1,
        num_heads=4,
        head_hidden_size=128,
        head_depth=1,
        head_num_heads=4,
        num_classes=10,
        rngs=nnx.Rngs(0),
    )


# Sharding reorders fp32 sums (split contractions, gathered attention): relative to the largest
# output, LightningDiT measures 2.7e-7 (bar 1e-6, ~8 float32 ulps). DiT-DH amplifies rounding
# through its per-token head condition: 4.9e-6 under sequence sharding, and already 3.4e-6
# under plain fsdp8 (batch split only), so its bar is 2e-5.
FORWARD_TOLERANCE = {"build_lightning_dit": 1e-6, "build_dit_dh": 2e-5}


@pytest.mark.parametrize("build", [build_lightning_dit, build_dit_dh], ids=lambda b: b.__name__)
def test_sequence_sharded_forward_of_the_dit_family(build, eight_devices):
    graphdef, params = nnx.split(build(), nnx.Param)
    rng = np.random.default_rng(1)
    params = jax.tree.map(lambda x: x + 0.1 * rng.normal(size=x.shape).astype(x.dtype), params)
    inputs = (
        rng.normal(size=(BATCH, *SHAPE)).astype(np.float32),
        rng.uniform(size=(BATCH,)).astype(np.float32),
        rng.integers(0, 10, size=(BATCH,)).astype(np.int32),
    )

    def forward(params, x, t, y):
        return nnx.merge(graphdef, params)(x, t, y)

    def run(name):
        config, rules = MESHES[name]
        mesh = ns.make_mesh(config)
        sharded = jax.device_put(params, ns.named_shardings(params, mesh=mesh, rules=rules))
        with ns.activation_sharding(mesh, rules):
            args = ns.global_batch(inputs, mesh=mesh, rules=rules)
            compiled = jax.jit(forward).lower(sharded, *args).compile()
            return per_device_flops(compiled), np.asarray(compiled(sharded, *args))

    fsdp8_flops, _ = run("fsdp8")
    seq_flops, out = run("fsdp2_seq4")
    single = np.asarray(jax.jit(forward)(params, *inputs))
    print(
        f"{build.__name__}: forward FLOPs per device fsdp8 {fsdp8_flops:.3g}, fsdp2 x seq4 {seq_flops:.3g}"
    )
    assert seq_flops <= 1.25 * fsdp8_flops, (seq_flops, fsdp8_flops)
    assert np.max(np.abs(single)) > 0.1  # not vacuous
    error = np.max(np.abs(out - single)) / np.max(np.abs(single))
    assert error <= FORWARD_TOLERANCE[build.__name__], error
