"""EDM2 post-hoc EMA of a trained run: rebuild averages of any EMA length, sweep, pick the best.

The run must have tracked power-function EMAs with snapshots (``--config.ema.sigma_rels=
(0.05,0.1) --config.ema.snapshot_every_steps=N``; ``configs/edm2.py`` does). Examples::

    # rebuild sigma_rel 0.13 at the newest snapshot, saved as an orbax item in the workdir
    python tools/posthoc_ema.py --config apps/train/configs/edm2.py --workdir runs/edm2_s \\
        --sigma_rel 0.13
    # score a sweep with the run's evaluator (eval.name), plot metric vs sigma_rel, pick one
    python tools/posthoc_ema.py --config apps/train/configs/digits.py --workdir runs/digits \\
        --config.ema.sigma_rels='(0.05,0.1)' --config.ema.snapshot_every_steps=50 \\
        --sweep 0.03:0.2:12

``--config``, ``--workdir`` and ``--config.*`` overrides are those of the training command (the
run's config: the model, mesh and snapshot folder come from it). Writes
``<workdir>/posthoc_ema/phema_<sigma_rel>_step<step>`` (``--sigma_rel``) and
``<workdir>/posthoc_ema_sweep.{png,json}`` (``--sweep``). The maths is
``nnx_train.power_ema`` (Karras et al. 2024, Appendix C, Algorithm 3; NVlabs/edm2 ``reconstruct_phema.py``).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """This tool's flags, and the rest (``--config``, ``--workdir``, ``--config.*``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sigma_rel", type=float, action="append", default=[])
    parser.add_argument("--sweep", default="", help="lo:hi:count EMA lengths, evenly spaced")
    parser.add_argument("--step", type=int, default=None, help="default: newest snapshot")
    parser.add_argument("--sources", default="", help="tracked lengths to use, e.g. 0.05,0.1")
    parser.add_argument("--metric", default="", help="default: FID or classifier FD")
    parser.add_argument("--maximize", action="store_true", help="the metric is a score")
    return parser.parse_known_args(argv)


def sweep_lengths(text: str) -> tuple[float, ...]:
    """``"lo:hi:count"`` -> ``count`` evenly spaced EMA lengths."""
    try:
        low, high, count = text.split(":")
        return tuple(float(v) for v in np.linspace(float(low), float(high), int(count)))
    except ValueError as err:
        raise SystemExit(f"error: --sweep={text!r}: write lo:hi:count, e.g. 0.03:0.2:12") from err


def main(argv: list[str] | None = None) -> int:
    from nnx_train.cli import parse_args as parse_train_args
    from nnx_train.errors import ConfigError, TrainError
    from nnx_train.evaluation import build_evaluator
    from nnx_train.posthoc_sweep import default_metric, save_posthoc_ema, sweep_posthoc_ema
    from nnx_train.power_ema import sigma_rel_to_gamma
    from nnx_train.run import Run

    args, rest = parse_args(list(sys.argv[1:] if argv is None else argv))
    sweep = sweep_lengths(args.sweep) if args.sweep else ()
    sources = tuple(float(s) for s in args.sources.split(",")) if args.sources else None
    try:
        if not args.sigma_rel and not sweep:
            raise ConfigError(
                "Nothing to do: give --sigma_rel 0.1 (repeatable) or --sweep lo:hi:n."
            )
        sigma_rel_to_gamma([*args.sigma_rel, *sweep])  # bad lengths fail before any loading
        config, workdir = parse_train_args(["posthoc_ema", *rest])
        metric, lower = (args.metric, not args.maximize) if args.metric else (None, True)
        if sweep and metric is None:
            metric, lower = default_metric(config.eval.name)
        run = Run(config, workdir)
        run.compile()
        options = {"at_step": args.step, "sources": sources}
        for path in save_posthoc_ema(run, args.sigma_rel, **options):
            print(f"saved {path}")
        if sweep:
            result = sweep_posthoc_ema(
                run, build_evaluator(config), sweep, metric=metric, lower_is_better=lower, **options
            )
            for row in result["rows"]:
                print(f"sigma_rel={row['sigma_rel']:.4f} {metric}={row[metric]:.6g}")
            print(
                f"best sigma_rel={result['best_sigma_rel']:.4f} ({metric}={result['best_value']:.6g}"
                f" at step {result['step']}); plot {result['plot']}"
            )
    except (TrainError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
