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


def _growth(*, rounds: int) -> list[dict]:
    """Seconds per step of ours against batch (DiT-S/2) and against model size (batch 16).

    Every configuration is compiled and warmed up first, then all are timed in alternating
    rounds, so that drift of the machine does not bend the curve.
    """
    configs = {("growth_batch", "batch", b): ("S", b) for b in GROWTH_BATCHES}
    configs |= {("growth_model", "size", size): (size, 16) for size in GROWTH_SIZES}
    runs, cases = {}, {}
    for key, (size, batch) in configs.items():
        cases[key], kwargs, (x0, y) = _case(size, 8, 1, batch)
        runs[key] = dit_steps.library_step(kwargs, x0, y, scan_blocks=True)
        runs[key]()
    medians = harness.alternate(runs, rounds=rounds, calls=1)
    return [
        {"case": cases[key], "framework": "jax (library)", "metric": key[0],
         "value": seconds, "unit": "s/step", key[1]: key[2]}
        for key, seconds in medians.items()
    ]  # fmt: skip


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
        results += _growth(rounds=args.rounds)
    return harness.write_report("train", results, args.out)


if __name__ == "__main__":
    for row in main()["results"]:
        print(row)
