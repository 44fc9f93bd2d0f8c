"""``sample`` and ``evaluate``: read a trained workdir, write new files, touch nothing else.

``uv run apps/train sample --workdir W`` restores a checkpoint (the newest or ``--step``)
read-only, samples class-balanced labels with the EMA (``--weights=ema``, default
``samples.ema``; or an EMA decay) or the raw weights (``--weights=raw``) through
`nnx_train.run.Run.pixel_batches`, and writes into ``W/samples/<time>_step<N>_<weights>/``:

- ``grid_000.png``, ``grid_001.png``, ...: up to 100 images per grid (one class per column
  when the number of images is a multiple of the classes);
- ``samples.npz``: an ADM sample batch (``arr_0`` uint8 ``(N, H, W, C)``, ``arr_1`` labels)
  that ``tools/evaluate_samples.py`` and the ADM evaluator read;
- ``settings.json``: step, weights, seed, sampler and guidance.

``uv run apps/train evaluate --workdir W`` computes the config's metrics (``eval.*``) of a
checkpoint into ``W/evaluations/<time>_step<N>.json``. Neither command writes a checkpoint,
``config.json``, ``metrics.json`` or ``metrics.jsonl``. Sampler and guidance overrides are
``--config.sampler.*`` / ``--config.guidance.*``. Both are collectives: start them on every
process of a multi-host run, as the trainer; process 0 writes the files.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import jax
import numpy as np
from ml_collections import ConfigDict

from nnx_train.errors import ConfigError

__all__ = ["evaluate_workdir", "sample_workdir"]

IMAGES_PER_GRID = 100
DEFAULT_NUM_IMAGES = 64


def _open_run(config: ConfigDict, workdir: str, step: int | None) -> Any:
    from nnx_train.multihost import start_distributed
    from nnx_train.run import Run

    start_distributed(config.distributed)
    if not os.path.isdir(workdir):
        raise ConfigError(f"--workdir {workdir} does not exist; pass the folder of a trained run.")
    run = Run(config, os.path.abspath(workdir), step=step, read_only=True)
    run.compile()
    return run


def _decay(config: ConfigDict, weights: str | None) -> float | None:
    """EMA decay of ``--weights`` (``None``: the raw weights)."""
    decays = tuple(float(d) for d in config.ema.decays)
    if weights in (None, "ema"):
        return float(config.samples.ema)
    if weights == "raw":
        return None
    try:
        decay = float(weights)
    except ValueError:
        decay = -1.0
    if decay not in decays:
        valid = ", ".join(str(d) for d in decays)
        raise ConfigError(f"--weights={weights!r}; use ema, raw or one of the EMA decays: {valid}.")
    return decay


def _new_path(parent: str, name: str, suffix: str = "") -> str:
    """``parent/name+suffix`` (``name-2``, ``name-3``, ... when taken), not yet created."""
    path, index = os.path.join(parent, name + suffix), 1
    while os.path.exists(path):
        index += 1
        path = os.path.join(parent, f"{name}-{index}{suffix}")
    return path


def _timestamp() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def sample_workdir(config: ConfigDict, workdir: str, options: Any) -> str:
    """Writes sample grids, ``samples.npz`` and ``settings.json`` (see the module docstring);
    returns the line to print."""
    from nnx_train.evaluation import save_sample_batch
    from nnx_train.multihost import barrier
    from nnx_train.pictures import display_uint8, save_image_grid

    num_images = options.num_images
    if num_images is None:  # the run's grid size (64 when the run drew no grids)
        num_images = int(config.samples.num_images) or DEFAULT_NUM_IMAGES
    if num_images <= 0:
        raise ConfigError(f"--num_images={num_images}; ask for at least one image.")
    decay = _decay(config, options.weights)
    seed = config.seed + 1 if options.seed is None else options.seed
    run = _open_run(config, workdir, options.step)
    step = int(jax.device_get(run.state.step))
    classes = run.task.num_classes
    labels = (np.arange(num_images) % classes).astype(np.int32)
    batch_size = min(num_images, int(config.eval.batch_size))
    images = np.concatenate(
        list(run.pixel_batches(decay, labels, batch_size=batch_size, seed=seed))
    )
    weights = "raw" if decay is None else f"ema{decay:g}"
    out = options.out or _new_path(
        os.path.join(workdir, "samples"), f"{_timestamp()}_step{step}_{weights}"
    )
    if run.is_main:
        os.makedirs(out, exist_ok=True)
        uint8 = display_uint8(images)
        for index, start in enumerate(range(0, num_images, IMAGES_PER_GRID)):
            chunk = uint8[start : start + IMAGES_PER_GRID]
            columns = classes if len(chunk) % classes == 0 else None
            save_image_grid(chunk, os.path.join(out, f"grid_{index:03d}.png"), columns=columns)
        save_sample_batch(os.path.join(out, "samples.npz"), images, labels)
        settings = {
            "workdir": os.path.abspath(workdir),
            "step": step,
            "weights": weights,
            "num_images": num_images,
            "seed": seed,
            "sampler": config.sampler.to_dict(),
            "guidance": config.guidance.to_dict(),
        }
        with open(os.path.join(out, "settings.json"), "w") as handle:
            json.dump(settings, handle, indent=2, default=str)
    run.checkpointer.close()
    barrier("nnx_train:sample-end")
    return f"sampled {num_images} images of step {step} ({weights}) into {os.path.abspath(out)}"


def evaluate_workdir(config: ConfigDict, workdir: str, options: Any) -> str:
    """Writes the metrics of a checkpoint into ``W/evaluations/<time>_step<N>.json``;
    returns the line to print."""
    from nnx_train.evaluation import build_evaluator, evaluate
    from nnx_train.multihost import barrier

    if config.eval.name == "none":
        raise ConfigError(
            "eval.name='none': the config computes no metrics; pick one with "
            "--config.eval.name=digits|fid (and its eval.* keys)."
        )
    config.eval.save_samples = False  # the run's eval_samples_<step>.npz stay untouched
    evaluator = build_evaluator(config)
    run = _open_run(config, workdir, options.step)
    step = int(jax.device_get(run.state.step))
    metrics = evaluate(run, evaluator, step)
    folder = os.path.join(workdir, "evaluations")
    path = _new_path(folder, f"{_timestamp()}_step{step}", ".json")
    record = {
        "step": step,
        "metrics": metrics,
        "eval": config.eval.to_dict(),
        "sampler": config.sampler.to_dict(),
        "guidance": config.guidance.to_dict(),
    }
    if run.is_main:
        os.makedirs(folder, exist_ok=True)
        with open(path + ".tmp", "w") as handle:
            json.dump(record, handle, indent=2, default=float)
        os.replace(path + ".tmp", path)
    run.checkpointer.close()
    barrier("nnx_train:evaluate-end")
    shown = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, float))
    return f"step {step}: {shown}; written to {os.path.abspath(path)}"
