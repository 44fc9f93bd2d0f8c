"""Training throughput, ours (JAX, the library's step) against PyTorch eager, and cost growth.

Same DiT architecture, batch, loss and optimiser on both sides; both pinned to the same
thread count by ``run_all.py`` (environment set before either framework is imported).
Runs alternate between frameworks. Reported in images per second, and the ratio
ours / torch (> 1 means we are faster). Ours runs the DiT blocks under ``jax.lax.scan``, the
fast configuration on XLA:CPU; the first case also times the unrolled blocks, which XLA:CPU
compiles into a slower backward pass (``packages/nnx-nets/README.md``). Our step also
computes the gradient norm and the non-finite guard, which the PyTorch step does not.
Cost growth: step time of ours against batch size (fixed model) and against model size
(fixed batch).
"""

from __future__ import annotations

import argparse

import dit_steps
import harness

THROUGHPUT_CASES = [  # size, resolution, channels, batch
    ("S", 8, 1, 32),
    ("B", 8, 1, 32),
    ("S", 16, 4, 16),
]
GROWTH_BATCHES = [8, 16, 32, 64]
GROWTH_SIZES = ["tiny", "S", "B"]


def _case(size, resolution, channels, batch) -> tuple[str, dict, tuple]:
    kwargs = dit_steps.dit_kwargs(
        size, resolution=resolution, channels=channels, patch=2, classes=10
    )
    arrays = dit_steps.batch_arrays(batch, resolution, channels, 10)
    return f"DiT-{size}/2 {resolution}x{resolution}x{channels} batch {batch}", kwargs, arrays


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="runs/bench/train.json")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="first case only, no growth")
    args = parser.parse_args(argv)
    results = []
    cases = THROUGHPUT_CASES[:1] if args.quick else THROUGHPUT_CASES
    for size, resolution, channels, batch in cases:
        case, kwargs, (x0, y) = _case(size, resolution, channels, batch)
        fns = {
            "jax (library)": dit_steps.library_step(kwargs, x0, y, scan_blocks=True),
            "torch": dit_steps.torch_step(kwargs, x0, y),
        }
        if (size, resolution, channels, batch) == THROUGHPUT_CASES[0]:
            fns["jax (library, unrolled blocks)"] = dit_steps.library_step(kwargs, x0, y)
        for fn in fns.values():
            fn()
        medians = harness.alternate(fns, rounds=args.rounds, calls=args.calls)
        results += harness.throughput_rows(
            case, medians, batch, ours="jax (library)", baseline="torch"
        )
    if not args.quick:
        for batch in GROWTH_BATCHES:
            case, kwargs, (x0, y) = _case("S", 8, 1, batch)
            run = dit_steps.library_step(kwargs, x0, y, scan_blocks=True)
            seconds = harness.alternate({"jax": run}, rounds=1, calls=args.calls + 1)["jax"]
            results.append(dict(case=case, framework="jax (library)", metric="growth_batch",
                                value=seconds, unit="s/step", batch=batch))  # fmt: skip
        for size in GROWTH_SIZES:
            case, kwargs, (x0, y) = _case(size, 8, 1, 16)
            run = dit_steps.library_step(kwargs, x0, y, scan_blocks=True)
            seconds = harness.alternate({"jax": run}, rounds=1, calls=args.calls + 1)["jax"]
            results.append(dict(case=case, framework="jax (library)", metric="growth_model",
                                value=seconds, unit="s/step", size=size))  # fmt: skip
    return harness.write_report("train", results, args.out)


if __name__ == "__main__":
    for row in main()["results"]:
        print(row)
