"""NNX overhead: the library's DiT train step against the same step as plain ``jax.jit``.

Reported: median seconds per step of (a) plain ``jax.jit`` over split state, (b) the
library's path (``nnx_train.step.make_train_step``), (c) ``nnx.jit`` with ``nnx.Optimizer``;
and the ratios b/a (goal <= 1.05) and c/a. (a) computes everything (b) computes (gradient
norm, non-finite guard), so b/a is the cost of the library's structure; (c) is plain AdamW.
Two sizes: a tiny DiT, where per-call overhead dominates, and DiT-S/2 at 8x8x1 with scanned
blocks (the fast configuration on XLA:CPU), where compute dominates.
"""

from __future__ import annotations

import argparse

import dit_steps
import harness


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="runs/bench/nnx_overhead.json")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    results = []
    for size, calls, batch, scan in (("tiny", 20, 8, False), ("S", 3, 32, True)):
        kwargs = dit_steps.dit_kwargs(size, resolution=8, channels=1, patch=2, classes=10)
        x0, y = dit_steps.batch_arrays(batch, 8, 1, 10)
        fns = {
            "jax.jit": dit_steps.jax_pure_step(kwargs, x0, y, scan_blocks=scan),
            "library": dit_steps.library_step(kwargs, x0, y, scan_blocks=scan),
            "nnx.jit": dit_steps.nnx_jit_step(kwargs, x0, y, scan_blocks=scan),
        }
        for fn in fns.values():  # compile and warm up outside the timing
            fn()
            fn()
        medians = harness.alternate(fns, rounds=args.rounds, calls=calls)
        case = f"DiT-{size}/2 8x8x1 batch {batch}" + (", scanned blocks" if scan else "")
        for name, seconds in medians.items():
            results.append(
                dict(case=case, framework=name, metric="step_time", value=seconds, unit="s")
            )
        for name in ("library", "nnx.jit"):
            results.append(
                dict(
                    case=case,
                    framework=f"{name} / jax.jit",
                    metric="ratio",
                    value=medians[name] / medians["jax.jit"],
                    unit="x",
                )
            )
    return harness.write_report("nnx_overhead", results, args.out)


if __name__ == "__main__":
    for row in main()["results"]:
        print(row)
