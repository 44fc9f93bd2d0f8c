"""Sampling throughput: Euler-50 with classifier-free guidance, ours against PyTorch eager.

Ours: ``nnx_samplers.sample`` with ``Euler`` on a ``UniformGrid(50)`` and
``ClassifierFreeGuidance`` (conditional and null passes in one doubled batch), the whole
loop under one ``jax.jit``. PyTorch: the same loop in eager mode with the official DiT
architecture and the same doubled-batch guidance. Reported in images per second.
"""

from __future__ import annotations

import argparse

import dit_steps
import harness
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nnx_nets import DiT
from nnx_samplers import ClassifierFreeGuidance, Euler, UniformGrid, sample

NUM_STEPS = 50
SCALE = 1.5
CLASSES = 10


def jax_sampler(kwargs: dict, num_samples: int):
    model = dit_steps._perturbed(DiT(**kwargs, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(model)
    shape = (num_samples, kwargs["input_size"], kwargs["input_size"], kwargs["in_channels"])
    labels = jnp.arange(num_samples, dtype=jnp.int32) % CLASSES

    @jax.jit
    def generate(state, key):
        network = nnx.merge(graphdef, state)
        field = ClassifierFreeGuidance(network, labels, null_label=CLASSES, scale=SCALE)
        noise = jax.random.normal(key, shape)
        return sample(field, noise, Euler(), UniformGrid(NUM_STEPS)).sample

    counter = [0]

    def run():
        counter[0] += 1
        return jax.block_until_ready(generate(state, jax.random.key(counter[0])))

    return run


def torch_sampler(kwargs: dict, num_samples: int):
    import torch
    from torch_dit import DiT as TorchDiT

    torch.manual_seed(0)
    model = TorchDiT(**kwargs).eval()
    labels = torch.arange(num_samples) % CLASSES
    both_labels = torch.cat([labels, torch.full_like(labels, CLASSES)])
    shape = (num_samples, kwargs["in_channels"], kwargs["input_size"], kwargs["input_size"])
    times = np.linspace(1.0, 0.0, NUM_STEPS + 1)

    @torch.no_grad()
    def run():
        x = torch.randn(shape)
        for t, t_next in zip(times[:-1], times[1:]):
            t_batch = torch.full((2 * num_samples,), float(t))
            cond, uncond = model(torch.cat([x, x]), t_batch, both_labels).chunk(2)
            x = x + (t_next - t) * (uncond + SCALE * (cond - uncond))
        return x

    return run


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="runs/bench/sampling.json")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--samples", type=int, default=16)
    args = parser.parse_args(argv)
    kwargs = dit_steps.dit_kwargs("S", resolution=8, channels=1, patch=2, classes=CLASSES)
    case = f"DiT-S/2 8x8x1, {args.samples} samples, Euler-{NUM_STEPS}, CFG {SCALE}"
    fns = {"jax": jax_sampler(kwargs, args.samples), "torch": torch_sampler(kwargs, args.samples)}
    for fn in fns.values():
        fn()
    medians = harness.alternate(fns, rounds=args.rounds, calls=1)
    results = harness.throughput_rows(case, medians, args.samples, ours="jax", baseline="torch")
    return harness.write_report("sampling", results, args.out)


if __name__ == "__main__":
    for row in main()["results"]:
        print(row)
