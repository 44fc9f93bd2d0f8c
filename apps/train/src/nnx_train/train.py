"""The training loop: from a resolved config to a trained, evaluated run, in three parts.

`_start`: joining the other processes (``config.distributed``) -> workdir and run files ->
the `nnx_train.run.Run` (mesh, data, task, state restored or initialised sharded, jitted step)
-> logs. `_run_steps`: the loop (log, checkpoint, pictures, evaluation). `_finish`: final
pictures, evaluation and metrics.
Nothing in the loop branches on the recipe; the recipe lives in the `Task` that ``build.py``
made. Every process runs every line (`nnx_train.multihost`); only file writes and logging
are left to process 0.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
from ml_collections import ConfigDict

from nnx_train.evaluation import build_evaluator, evaluate
from nnx_train.metrics_log import MetricsLogger, read_jsonl
from nnx_train.multihost import barrier, start_distributed
from nnx_train.pictures import save_loss_curve
from nnx_train.preemption import Preempted, PreemptionWatch
from nnx_train.progress import Progress
from nnx_train.provenance import prepare_workdir, write_json_atomic
from nnx_train.run import Run, check_nonfinite
from nnx_train.validation import validate_config
from nnx_train.workdir_lock import WorkdirLock

__all__ = ["prepare_workdir", "train"]


@dataclasses.dataclass
class _Loop:
    """What the loop carries between steps and hands to the end of the run."""

    run: Run
    evaluator: Any
    logger: MetricsLogger
    progress: Progress
    start_step: int
    last_step: int
    step: int
    wall_start: float
    setup_seconds: float
    preemption: PreemptionWatch
    first_step_seconds: float | None = None
    train_seconds: float = 0.0
    last_eval: dict = dataclasses.field(default_factory=dict)


def _start(
    config: ConfigDict,
    workdir: str,
    stop_after: int | None,
    wall_start: float,
    preemption: PreemptionWatch,
) -> _Loop:
    """Builds (or restores) the run in the (locked) ``workdir`` and opens its logs."""
    run = Run(config, workdir)
    evaluator = build_evaluator(config)
    run.compile()
    cfg = config.train
    logger = MetricsLogger(
        workdir,
        config=config.to_dict(),
        project=config.logging.wandb_project,
        mode=config.logging.wandb_mode,
        run_name=f"{config.name}:{os.path.basename(workdir)}",
        enabled=run.is_main,
    )
    start_step = int(jax.device_get(run.state.step))
    last_step = cfg.num_steps if stop_after is None else min(cfg.num_steps, start_step + stop_after)
    progress = Progress(
        total_steps=cfg.num_steps,
        start_step=start_step,
        batch_size=cfg.batch_size,
        enabled=run.is_main and config.logging.progress_bar,
        messages=run.is_main,
    )
    progress.write(start_line(run, last_step))
    return _Loop(
        run=run,
        evaluator=evaluator,
        logger=logger,
        progress=progress,
        start_step=start_step,
        last_step=last_step,
        step=start_step,
        wall_start=wall_start,
        setup_seconds=time.perf_counter() - wall_start,
        preemption=preemption,
    )


def start_line(run: Run, last_step: int) -> str:
    """What is trained, on which devices, from where: the first line of a run."""
    config = run.config
    devices = jax.devices()
    mesh = " x ".join(f"{k}={v}" for k, v in run.mesh.shape.items() if v > 1) or "one device"
    origin = (
        "from scratch"
        if run.resumed_from is None
        else f"resumed from step {run.resumed_from} in {run.checkpointer.directory}"
    )
    return (
        f"train {config.name}: {config.model.name} ({run.num_params / 1e6:.2f}M parameters), "
        f"objective {config.objective.name}, data {config.data.name} {run.data_shape}, steps "
        f"{run.resumed_from or 0}->{last_step} of batch {config.train.batch_size}; "
        f"{len(devices)} {devices[0].platform} device(s) on {jax.process_count()} process(es), "
        f"mesh {mesh}; {origin}; workdir {run.workdir}"
    )


def _evaluate_and_log(loop: _Loop) -> None:
    eval_config = loop.run.config.eval
    loop.progress.write(
        f"evaluating step {loop.step} ({eval_config.name}): sampling {eval_config.num_samples} "
        "images (the first evaluation compiles the sampler)..."
    )
    loop.last_eval = evaluate(loop.run, loop.evaluator, loop.step)
    loop.logger.log(loop.step, {f"eval/{k}": v for k, v in loop.last_eval.items()})


def _after_step(loop: _Loop, pending: list[dict]) -> list[dict]:
    """Logging, checkpoints, pictures and evaluation due after ``loop.step``; returns the
    metrics still waiting to be averaged."""
    run, config, step = loop.run, loop.run.config, loop.step
    if step % config.train.log_every == 0 or step == loop.last_step:
        averaged = jax.device_get(jax.tree.map(lambda *v: jnp.mean(jnp.stack(v)), *pending))
        pending = []
        images_per_second = loop.progress.update(step, float(averaged["loss"]))
        check_nonfinite(run, step, loop.progress)
        loop.logger.log(step, {**averaged, "images_per_second": images_per_second})
    every = config.checkpoint.every_steps
    if (every and step % every == 0) or step == loop.last_step:
        run.checkpointer.save(run.state, run.iterator)
    if run.snapshots is not None:  # EDM2 keeps a snapshot at the end of training too
        run.snapshots.maybe_save(run.state, step, final=step == config.train.num_steps)
    if config.samples.every_steps and step % config.samples.every_steps == 0:
        run.write_sample_grid(step, loop.logger)
    if (
        loop.evaluator is not None
        and config.eval.every_steps
        and step % config.eval.every_steps == 0
    ):
        _evaluate_and_log(loop)
    return pending


def _run_steps(loop: _Loop) -> None:
    """Steps from ``loop.step`` to ``loop.last_step``; metrics stay on device until logged."""
    import nnx_sharding as ns

    run = loop.run
    pending: list[dict] = []
    loop_start = time.perf_counter()
    if loop.step < loop.last_step:
        loop.progress.write(f"compiling the training step ({run.config.model.name}, jax.jit)...")
    try:
        if loop.preemption.pending():  # SIGTERM while building: the checkpoint is current
            raise Preempted(None)
        with ns.activation_sharding(run.mesh, run.rules):
            while loop.step < loop.last_step:
                batch = run.global_batch(next(run.iterator))
                tic = time.perf_counter()
                run.state, metrics = run.train_step(run.state, run.frozen_state, batch)
                if loop.first_step_seconds is None:
                    jax.block_until_ready(run.state.step)
                    loop.first_step_seconds = time.perf_counter() - tic
                    loop.progress.write(
                        f"compiled the training step and ran step {loop.step + 1} in "
                        f"{loop.first_step_seconds:.1f} s"
                    )
                pending.append(metrics)
                loop.step += 1
                pending = _after_step(loop, pending)
                if loop.preemption.requested(loop.step):
                    run.checkpointer.save(run.state, run.iterator)  # no-op if already saved
                    run.checkpointer.wait()
                    raise Preempted(loop.step)
    finally:
        loop.progress.close()
        run.checkpointer.wait()
        if run.snapshots is not None:
            run.snapshots.wait()
    loop.train_seconds = time.perf_counter() - loop_start


def _finish(loop: _Loop) -> dict:
    """Final pictures, evaluation and ``metrics.json``; closes the run on every process."""
    run, config, step = loop.run, loop.run.config, loop.step
    finished = step >= config.train.num_steps
    final: dict[str, Any] = {
        "step": step,
        "finished": finished,
        "num_params": run.num_params,
        "resumed_from": run.resumed_from,
        "setup_seconds": loop.setup_seconds,
        "first_step_seconds": loop.first_step_seconds,
        "train_seconds": loop.train_seconds,
        "images_per_second": (step - loop.start_step)
        * config.train.batch_size
        / max(loop.train_seconds, 1e-9),
    }
    if loop.preemption.at_end():  # the final checkpoint is saved: evaluate on resume
        raise Preempted(None)
    if finished:  # collectives: every process samples and evaluates
        run.write_sample_grid(step, loop.logger)
        every = config.eval.every_steps
        if loop.evaluator is not None and (not loop.last_eval or every == 0 or step % every):
            _evaluate_and_log(loop)
    if run.is_main:
        save_loss_curve(read_jsonl(loop.logger.path), os.path.join(run.workdir, "loss_curve.png"))
    final.update(loop.last_eval)
    final.update(getattr(run.task, "report", {}))  # e.g. a distilled student's teacher
    final["wall_seconds"] = time.perf_counter() - loop.wall_start
    if run.is_main:
        write_json_atomic(os.path.join(run.workdir, "metrics.json"), final, default=float)
    loop.logger.close()
    run.checkpointer.close()
    if run.snapshots is not None:
        run.snapshots.close()
    barrier("nnx_train:end")  # no process leaves while another still writes or gathers
    return final


def train(config: ConfigDict, workdir: str, *, stop_after: int | None = None) -> dict:
    """Trains (or resumes) the run described by ``config`` in ``workdir``.

    Args:
      config: a resolved config (``configs/*.py`` after overrides).
      workdir: local folder for logs, pictures, run files and (by default) checkpoints.
      stop_after: leave after this many steps of this call (tests of resumption); the
        checkpoint written then is the one a resumed run starts from.

    Returns:
      The final metrics written to ``workdir/metrics.json``.

    Raises:
      TrainError: bad input (one line, printed by the command line).
      Preempted: SIGTERM; the state at the step reached is saved (`nnx_train.preemption`).
    """
    wall_start = time.perf_counter()
    start_distributed(config.distributed)  # before anything touches a device
    validate_config(config)  # before anything is built or written
    workdir = prepare_workdir(workdir)
    lock = WorkdirLock(workdir)
    lock.acquire()  # before anything is written or cleaned up in the workdir
    preemption = PreemptionWatch()
    preemption.install()
    loop = None
    try:
        loop = _start(config, workdir, stop_after, wall_start, preemption)
        _run_steps(loop)
        return _finish(loop)
    except Preempted:
        if loop is not None:
            loop.logger.close()
            loop.run.checkpointer.close()
        raise
    finally:
        preemption.uninstall()
        lock.release()
