"""Run every benchmark, each in its own process with the same thread settings, and merge
the results into one JSON report (and a markdown table for the README).

    uv run --group test tools/bench/run_all.py --out runs/bench/report.json [--threads 1] [--quick]

Thread settings are fixed before either framework is imported: XLA:CPU and PyTorch both
get ``--threads`` threads (``XLA_FLAGS`` intra-op parallelism, ``torch.set_num_threads``
through ``OMP_NUM_THREADS``), with ``OMP_WAIT_POLICY=PASSIVE`` so that idle OpenMP
workers do not spin against XLA.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
BENCHMARKS = ["bench_nnx_overhead", "bench_train", "bench_sampling", "bench_inception"]


def table(report: dict) -> str:
    lines = ["| benchmark | case | framework | metric | value |", "|---|---|---|---|---|"]
    for bench in report["benchmarks"]:
        for row in bench["results"]:
            lines.append(
                f"| {bench['name']} | {row['case']} | {row['framework']} | {row['metric']} "
                f"| {row['value']:.4g} {row['unit']} |"
            )
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="runs/bench/report.json")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", nargs="*", default=BENCHMARKS, choices=BENCHMARKS)
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    single = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    env.update(
        JAX_PLATFORMS=env.get("JAX_PLATFORMS", "cpu"),
        XLA_FLAGS=single if args.threads == 1 else "",
        OMP_NUM_THREADS=str(args.threads),
        OMP_WAIT_POLICY="PASSIVE",
        PYTHONPATH=f"{HERE}{os.pathsep}{env.get('PYTHONPATH', '')}",
    )
    merged = {"threads": args.threads, "benchmarks": []}
    for name in args.only:
        part = out.with_name(f"{name}.json")
        command = [sys.executable, str(HERE / f"{name}.py"), "--out", str(part)]
        if args.quick and name == "bench_train":
            command.append("--quick")
        print(f"running {name} ...", flush=True)
        subprocess.run(command, env=env, check=True)
        merged["benchmarks"].append(json.loads(part.read_text()))
    merged["machine"] = merged["benchmarks"][0]["machine"] if merged["benchmarks"] else {}
    merged["commit"] = merged["benchmarks"][0]["commit"] if merged["benchmarks"] else ""
    out.write_text(json.dumps(merged, indent=2))
    out.with_suffix(".md").write_text(table(merged) + "\n")
    print(table(merged))
    return merged


if __name__ == "__main__":
    main()
