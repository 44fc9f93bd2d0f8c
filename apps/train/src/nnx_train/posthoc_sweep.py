"""Post-hoc EMA after training: rebuild EDM2 power-function EMAs, evaluate a sweep, pick one.

EDM2 (Karras et al. 2024, Section 3.2, Fig. 4-5) evaluates FID against the EMA length
``sigma_rel`` of averages reconstructed after training and reports the best; this module does
the same with the run's evaluator (`nnx_train.evaluation`): `sweep_posthoc_ema` rebuilds the
averages from the snapshots (`nnx_train.ema_snapshots`), scores each, writes
``posthoc_ema_sweep.json`` and the metric-vs-EMA-length plot ``posthoc_ema_sweep.png``, and
returns the best length; `save_posthoc_ema` writes rebuilt averages as orbax items.
``tools/posthoc_ema.py`` is their command line.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from nnx_train.ema_snapshots import reconstruct_from_snapshots, snapshot_directory
from nnx_train.errors import ConfigError
from nnx_train.state import to_nested

__all__ = [
    "POSTHOC_KEY",
    "default_metric",
    "save_posthoc_ema",
    "save_sweep_plot",
    "sweep_posthoc_ema",
]

POSTHOC_KEY = "posthoc"
"""The ``state.ema`` key under which a reconstructed average is evaluated."""


def default_metric(eval_name: str) -> tuple[str, bool]:
    """``(metric, lower_is_better)`` that a sweep minimises for ``eval.name``."""
    match eval_name:
        case "digits":
            return "classifier_frechet_distance", True
        case "fid":
            return "fid", True
        case _:
            raise ConfigError(
                f"eval.name={eval_name!r} gives no metric to sweep; use eval.name='digits' or "
                "'fid' (with its files), or only reconstruct (no --sweep)."
            )


def sweep_posthoc_ema(
    run: Any,
    evaluator: Any,
    sigma_rels: Sequence[float],
    *,
    metric: str,
    lower_is_better: bool = True,
    at_step: int | None = None,
    sources: Sequence[float] | None = None,
) -> dict:
    """Evaluates the post-hoc EMAs of lengths ``sigma_rels`` and picks the best.

    A collective: every process calls it (reconstruction and sampling run on the run's mesh);
    process 0 writes the files into ``run.workdir``.

    Args:
      run: an `nnx_train.run.Run` of the trained workdir.
      evaluator: the run's evaluator (`nnx_train.evaluation.build_evaluator`).
      sigma_rels: ``(M,)`` EMA lengths to evaluate.
      metric: the evaluator's key to compare (``"<name>_steps<n>"`` with eval.sampler_steps).
      lower_is_better: ``True`` for distances (FID), ``False`` for accuracies.
      at_step: the step of the averages (default: the newest snapshot).
      sources: tracked lengths whose snapshots are combined (default: all).

    Returns:
      ``{"rows": [{"sigma_rel", **metrics}], "best_sigma_rel", "best_value", "metric",
      "step", "plot", "table"}``.
    """
    from nnx_train.evaluation import evaluate

    averages, step = _rebuild(run, sigma_rels, at_step, sources)
    kept_ema, rows = run.state.ema, []
    try:
        for sigma_rel, params in zip(sigma_rels, averages):
            run.state = run.state.replace(ema={**kept_ema, POSTHOC_KEY: params})
            metrics = evaluate(run, evaluator, step, ema=POSTHOC_KEY)
            if metric not in metrics:
                raise ConfigError(
                    f"The evaluator reports no {metric!r}; choose one of {sorted(metrics)}."
                )
            rows.append({"sigma_rel": float(sigma_rel), **metrics})
    finally:
        run.state = run.state.replace(ema=kept_ema)
    values = [float(row[metric]) for row in rows]
    best = int(np.nanargmin(values) if lower_is_better else np.nanargmax(values))
    result = {
        "metric": metric,
        "step": int(step),
        "best_sigma_rel": rows[best]["sigma_rel"],
        "best_value": values[best],
        "rows": rows,
        "plot": os.path.join(run.workdir, "posthoc_ema_sweep.png"),
        "table": os.path.join(run.workdir, "posthoc_ema_sweep.json"),
    }
    if run.is_main:
        _write(result, values, best)
    return result


def _write(result: dict, values: list[float], best: int) -> None:
    sigma_rels = [row["sigma_rel"] for row in result["rows"]]
    save_sweep_plot(sigma_rels, values, result["plot"], metric=result["metric"], best=best)
    with open(result["table"], "w") as handle:
        json.dump(result, handle, indent=2, default=float)


def _rebuild(run, sigma_rels, at_step, sources) -> tuple[list[Any], int]:
    directory = snapshot_directory(run.config.ema, str(run.checkpointer.directory))
    averages, _, inputs = reconstruct_from_snapshots(
        directory,
        run.state.params,
        sigma_rels,
        at_step=at_step,
        sources=sources,
    )
    return averages, max(s for s, _ in inputs) if at_step is None else at_step


def save_posthoc_ema(
    run: Any,
    sigma_rels: Sequence[float],
    *,
    at_step: int | None = None,
    sources: Sequence[float] | None = None,
) -> list[str]:
    """Rebuilds the averages of lengths ``sigma_rels`` and saves each as an orbax item.

    The item is the parameter pytree as nested dicts (`nnx_train.state.to_nested`), written
    shard by shard; read it back with ``ocp.StandardCheckpointer().restore(path,
    to_nested(abstract_params))``. A collective (every process calls it).

    Returns:
      The folders ``<workdir>/posthoc_ema/phema_<sigma_rel>_step<step>``.
    """
    import orbax.checkpoint as ocp

    if not sigma_rels:
        return []
    averages, step = _rebuild(run, sigma_rels, at_step, sources)
    folder = os.path.join(os.path.abspath(run.workdir), "posthoc_ema")
    paths = [os.path.join(folder, f"phema_{s:g}_step{step}") for s in sigma_rels]
    checkpointer = ocp.StandardCheckpointer()
    for path, params in zip(paths, averages):
        checkpointer.save(path, to_nested(params), force=True)
    checkpointer.wait_until_finished()
    checkpointer.close()
    return paths


def save_sweep_plot(
    sigma_rels: Sequence[float], values: Sequence[float], path: str, *, metric: str, best: int
) -> str:
    """Plots ``metric`` against the EMA length ``sigma_rel`` (EDM2 Fig. 5 style), best marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4), dpi=100)
    axis.plot(sigma_rels, values, "o-", lw=1.2, label=metric)
    if math.isfinite(values[best]):
        axis.plot([sigma_rels[best]], [values[best]], "r*", ms=12, label="best")
    axis.set_xlabel("EMA length sigma_rel")
    axis.set_ylabel(metric)
    axis.set_title(f"post-hoc EMA: best sigma_rel = {sigma_rels[best]:.3f}")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
