"""One GPU run (prepared for a lent H200): DiT-XL/2 bf16 training, sampling and Inception
features, in the JSON schema of the CPU benchmarks.

    python tools/bench/gpu.py --out $OUT/gpu.json        # a few minutes on one H200

Model FLOP utilisation counts 3 x the forward FLOPs of DiT-XL/2 at 256 px (118.64 GFLOPs
per image, DiT paper) per trained image, against the H200's dense bf16 peak of 989 TFLOP/s.
"""

from __future__ import annotations

import argparse
import time

import dit_steps
import harness
import jax
import jax.numpy as jnp
import optax
from flax import nnx

from nnx_nets import DiT

FORWARD_GFLOPS_XL2_256 = 118.64
PEAK_BF16_TFLOPS = 989.0


def train_case(batch: int, steps: int) -> dict:
    kwargs = dict(input_size=32, patch_size=2, in_channels=4, hidden_size=1152, depth=28,
                  num_heads=16, num_classes=1000, learn_sigma=False, dtype=jnp.bfloat16)  # fmt: skip
    model = DiT(**kwargs, rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.adamw(1e-4, weight_decay=0.0)
    opt_state = tx.init(params)
    x0, y = dit_steps.batch_arrays(batch, 32, 4, 1000)
    x0, y = jnp.asarray(x0), jnp.asarray(y)

    def loss(p, key):
        return dit_steps.flow_loss(nnx.merge(graphdef, p, rest), x0, y, key)

    @jax.jit
    def step(params, opt_state, key):
        value, grads = jax.value_and_grad(loss)(params, key)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    params, opt_state, value = step(params, opt_state, jax.random.key(0))
    jax.block_until_ready(value)
    start = time.perf_counter()
    for i in range(steps):
        params, opt_state, value = step(params, opt_state, jax.random.key(i + 1))
    jax.block_until_ready(value)
    seconds = (time.perf_counter() - start) / steps
    images_per_s = batch / seconds
    mfu = images_per_s * 3 * FORWARD_GFLOPS_XL2_256 / (PEAK_BF16_TFLOPS * 1e3)
    return dict(case=f"DiT-XL/2 256px bf16 batch {batch}", framework="jax", metric="throughput",
                value=images_per_s, unit="img/s", step_time_s=seconds, mfu=mfu)  # fmt: skip


def sampling_case(batch: int) -> dict:
    from nnx_samplers import ClassifierFreeGuidance, Euler, UniformGrid, sample

    model = DiT(input_size=32, patch_size=2, in_channels=4, hidden_size=1152, depth=28,
                num_heads=16, num_classes=1000, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))  # fmt: skip
    graphdef, state = nnx.split(model)
    labels = jnp.arange(batch, dtype=jnp.int32) % 1000

    @jax.jit
    def generate(state, key):
        field = ClassifierFreeGuidance(
            nnx.merge(graphdef, state), labels, null_label=1000, scale=1.5
        )
        return sample(
            field, jax.random.normal(key, (batch, 32, 32, 4)), Euler(), UniformGrid(50)
        ).sample

    jax.block_until_ready(generate(state, jax.random.key(0)))
    start = time.perf_counter()
    jax.block_until_ready(generate(state, jax.random.key(1)))
    seconds = time.perf_counter() - start
    return dict(case=f"DiT-XL/2 256px bf16 Euler-50 CFG, {batch} samples", framework="jax",
                metric="throughput", value=batch / seconds, unit="img/s", seconds=seconds)  # fmt: skip


def inception_case(batch: int, repeats: int) -> dict:
    import bench_inception

    run = bench_inception.jax_features(batch)
    run()
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    seconds = (time.perf_counter() - start) / repeats
    return dict(case=f"InceptionV3 pool3, 256px uint8 -> 299, batch {batch}", framework="jax",
                metric="throughput", value=batch / seconds, unit="img/s")  # fmt: skip


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="runs/bench/gpu.json")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args(argv)
    results = [train_case(args.batch, args.steps), sampling_case(args.batch),
               inception_case(500, 5)]  # fmt: skip
    for row in results:
        print(row, flush=True)
    return harness.write_report("gpu", results, args.out)


if __name__ == "__main__":
    main()
