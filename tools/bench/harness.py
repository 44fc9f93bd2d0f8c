"""Timing and reporting shared by the benchmarks: medians over alternating runs, one JSON schema.

Every benchmark writes ``{"name", "machine", "commit", "results": [...]}`` where each result
is ``{"case", "framework", "metric", "value", "unit", ...}``; ``run_all.py`` merges them.
"""

from __future__ import annotations

import json
import os
import pathlib
import platform
import statistics
import subprocess
import time
from collections.abc import Callable

ROOT = pathlib.Path(__file__).resolve().parents[2]


def machine() -> dict:
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    try:
        import jax

        info["jax"] = jax.__version__
        info["jax_devices"] = [str(d) for d in jax.devices()]
    except ImportError:
        pass
    return info


def commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "unknown"


def seconds_per_call(fn: Callable[[], object], *, warmup: int, repeats: int) -> list[float]:
    """Wall seconds of each of ``repeats`` calls after ``warmup`` calls; ``fn`` must block
    until its work is done (``jax.block_until_ready`` / torch is synchronous on CPU)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def alternate(fns: dict[str, Callable[[], object]], *, rounds: int, calls: int) -> dict[str, float]:
    """Median seconds per call of each function, measured in alternating rounds so that
    drift of the machine (other load, thermal) hits every contender alike."""
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            samples[name].extend(seconds_per_call(fn, warmup=0, repeats=calls))
    return {name: statistics.median(values) for name, values in samples.items()}


def throughput_rows(
    case: str, medians: dict[str, float], items: int, *, ours: str, baseline: str
) -> list[dict]:
    """One ``throughput`` row (items / median seconds) per contender, then the ratio
    ``ours / baseline`` in throughput (> 1: ours is faster)."""
    rows = [
        dict(case=case, framework=name, metric="throughput", value=items / seconds,
             unit="img/s", seconds=seconds)
        for name, seconds in medians.items()
    ]  # fmt: skip
    rows.append(dict(case=case, framework="jax / torch", metric="throughput_ratio",
                     value=medians[baseline] / medians[ours], unit="x"))  # fmt: skip
    return rows


def write_report(name: str, results: list[dict], out: str | pathlib.Path, **extra) -> dict:
    """Write ``{"name", "machine", "commit", **extra, "results"}`` as JSON to ``out``."""
    report = {"name": name, "machine": machine(), "commit": commit(), **extra, "results": results}
    out = pathlib.Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    return report
