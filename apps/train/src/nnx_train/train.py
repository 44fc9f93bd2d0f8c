"""The training loop: one linear function from a resolved config to a trained, evaluated run.

Sections, in order: joining the other processes (``config.distributed``) -> workdir and run
files -> mesh -> data -> task -> state (restored or initialised sharded) -> jitted step ->
loop (log, checkpoint, pictures, evaluation) -> final checkpoint, pictures and metrics.
Nothing in the loop branches on the recipe; the recipe lives in the `Task` that ``build.py``
made. Every process runs every line (`nnx_train.multihost`); only file writes and logging
are left to process 0.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from ml_collections import ConfigDict

from nnx_train import build
from nnx_train.checkpointing import Checkpointer
from nnx_train.data import make_source_iterator
from nnx_train.ema import ema_name, init_ema
from nnx_train.errors import ConfigError, NonFiniteError
from nnx_train.evaluation import build_evaluator, evaluate
from nnx_train.metrics_log import MetricsLogger, read_jsonl
from nnx_train.multihost import barrier, host_array, process_batch_rows, start_distributed
from nnx_train.pictures import display_uint8, save_image_grid, save_loss_curve
from nnx_train.progress import Progress
from nnx_train.provenance import prepare_workdir, write_run_files
from nnx_train.state import TrainState, scalar
from nnx_train.step import make_train_step
from nnx_train.tasks import AutoencoderTask

__all__ = ["prepare_workdir", "train"]

log = logging.getLogger(__name__)

NONFINITE_POLICIES = ("skip", "stop")


class _Run:
    """The pieces of one run that the loop and its helpers share."""

    def __init__(self, config: ConfigDict, workdir: str) -> None:
        self.config = config
        self.workdir = workdir
        self.is_main = jax.process_index() == 0
        self.mesh, self.rules = build.build_mesh_and_rules(config.sharding)
        write_run_files(workdir, config.to_dict(), self.mesh)
        batch_slices = self.mesh.shape["data"] * self.mesh.shape["fsdp"]
        if config.train.batch_size % batch_slices:
            raise ConfigError(
                f"train.batch_size={config.train.batch_size} does not divide over the "
                f"{batch_slices} batch slices of the mesh (data x fsdp = "
                f"{self.mesh.shape['data']} x {self.mesh.shape['fsdp']}); use a multiple of "
                f"{batch_slices} or change sharding.*."
            )

        self.source = build.build_data_source(config)
        self.data_shape = tuple(int(s) for s in self.source.shape)
        build.check_data_fits_model(self.data_shape, self.source.num_classes, config)
        self.task = build.build_task(config, data_shape=self.data_shape)
        self.tx, self.schedule = build.build_optimizer(config)
        if getattr(self.task, "wrap_optimizer", None) is not None:
            self.tx = self.task.wrap_optimizer(self.tx)
        self.decays = tuple(float(d) for d in config.ema.decays)
        for section in ("samples", "eval"):
            wanted = float(config[section].ema)
            if wanted not in self.decays:
                raise ConfigError(
                    f"{section}.ema={wanted} is not one of ema.decays={self.decays}; pick one of "
                    "them or add it to ema.decays."
                )
        if config.train.nonfinite not in NONFINITE_POLICIES:
            raise ConfigError(
                f"train.nonfinite={config.train.nonfinite!r}; use one of {NONFINITE_POLICIES}."
            )

        self.iterator = make_source_iterator(
            self.source,
            global_batch_size=config.train.batch_size,
            seed=config.seed,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
            read_threads=config.loader.read_threads,
            prefetch_batches=config.loader.prefetch_batches,
            # The rows `global_batch` places on this process's devices, in its order.
            batch_rows=process_batch_rows(self.mesh, self.rules, config.train.batch_size),
        )
        self._init_state()
        self._init_frozen()
        self._init_autoencoder()

    # -- state -------------------------------------------------------------------------
    def _init_state(self) -> None:
        import nnx_sharding as ns

        config, task, tx, decays = self.config, self.task, self.tx, self.decays
        self.graphdef = nnx.split(nnx.eval_shape(task.build_trainable), nnx.Param, ...)[0]

        def init() -> TrainState:
            _, params, rest = nnx.split(task.build_trainable(), nnx.Param, ...)
            return TrainState(
                step=scalar(0),
                params=params,
                rest=rest,
                opt_state=tx.init(params),
                ema=init_ema(params, decays),
                key=jax.random.key_data(jax.random.key(config.seed)),
                num_nonfinite=scalar(0),
            )

        abstract = jax.eval_shape(init)
        self.shardings = ns.named_shardings(abstract, mesh=self.mesh, rules=self.rules)
        directory = config.checkpoint.directory or os.path.join(self.workdir, "checkpoints")
        self.checkpointer = Checkpointer(
            directory,
            keep=config.checkpoint.keep,
            keep_period=config.checkpoint.keep_period,
            async_save=config.checkpoint.async_save,
            model_name=f"{config.model.name}:{config.objective.name}",
        )
        if self.checkpointer.latest_step() is not None:
            target = jax.tree.map(
                lambda leaf, sharding: jax.ShapeDtypeStruct(
                    leaf.shape, leaf.dtype, sharding=sharding
                ),
                abstract,
                self.shardings,
            )
            self.state = self.checkpointer.restore(target, self.iterator)
            self.resumed_from = int(jax.device_get(self.state.step))
        else:
            self.state = jax.jit(init, out_shardings=self.shardings)()
            self.resumed_from = None
        self.num_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(self.state.params))

    def _init_frozen(self) -> None:
        import nnx_sharding as ns

        if self.task.build_frozen is None:
            self.frozen_graphdef, self.frozen_state = None, None
            return
        frozen = ns.sharded_init(self.task.build_frozen, mesh=self.mesh, rules=self.rules)
        self.frozen_graphdef, self.frozen_state = nnx.split(frozen)

    # -- compiled functions --------------------------------------------------------------
    def compile(self) -> None:
        step = make_train_step(
            graphdef=self.graphdef,
            frozen_graphdef=self.frozen_graphdef,
            loss_fn=self.task.loss_fn,
            optimizer=self.tx,
            schedule=self.schedule,
            ema_decays=self.decays,
        )
        self.train_step = jax.jit(step, donate_argnums=(0,), out_shardings=(self.shardings, None))
        graphdef, frozen_graphdef, task = self.graphdef, self.frozen_graphdef, self.task

        def preview(params, rest, frozen_state, batch, key_data):
            model = nnx.merge(graphdef, params, rest)
            frozen = None if frozen_graphdef is None else nnx.merge(frozen_graphdef, frozen_state)
            return task.preview(model, frozen, batch, jax.random.wrap_key_data(key_data))

        # Replicated samples: every process can read them without a gather of its own.
        replicated = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec())
        self.preview = jax.jit(preview, out_shardings=replicated)

    def global_batch(self, local: dict) -> dict:
        import nnx_sharding as ns

        return ns.global_batch(local, mesh=self.mesh, rules=self.rules)

    # -- samples -------------------------------------------------------------------------
    def _init_autoencoder(self) -> None:
        module = build.build_autoencoder(self.config)
        if module is None:
            self.decode = None
            return
        graphdef, state = nnx.split(module)
        scale = jnp.asarray(self.config.autoencoder.scale, jnp.float32)
        shift = jnp.asarray(self.config.autoencoder.shift, jnp.float32)

        @jax.jit
        def decode(state, latents):
            return nnx.merge(graphdef, state).decode(latents / scale + shift)

        self.decode = lambda latents: decode(state, latents)

    def pixel_batches(
        self, decay: float, labels: np.ndarray, *, batch_size: int, seed: int
    ) -> Iterator[np.ndarray]:
        """Samples of the EMA ``decay`` for ``labels`` as pixel batches in [-1, 1].

        Batches have one static size (the last is padded, then trimmed), so the sampler
        compiles once; latents are decoded when ``autoencoder`` is set. A collective: every
        process calls it with the same arguments and gets all the samples.
        """
        import nnx_sharding as ns

        params = self.state.ema[ema_name(decay)]
        key = jax.random.key(seed)
        for index, start in enumerate(range(0, len(labels), batch_size)):
            chunk = labels[start : start + batch_size]
            batch = {"y": np.resize(chunk, batch_size).astype(np.int32)}
            if isinstance(self.task, AutoencoderTask):  # reconstructions of fixed real images
                records = [
                    self.source[i % len(self.source)] for i in range(start, start + batch_size)
                ]
                batch["x"] = np.stack([r["x"] for r in records])
            with ns.activation_sharding(self.mesh, self.rules):
                images = self.preview(
                    params,
                    self.state.rest,
                    self.frozen_state,
                    batch,
                    # Host data, the same on every process (a key on one local device
                    # would not mix with arrays that span processes).
                    np.asarray(jax.random.key_data(jax.random.fold_in(key, index))),
                )
            images = host_array(images)
            if self.decode is not None:  # on this host's default device, from host memory
                images = host_array(self.decode(images))
            yield images[: len(chunk)]

    def write_sample_grid(self, step: int, logger: MetricsLogger) -> str | None:
        """Samples the grid on every process (a collective); process 0 writes the PNGs."""
        config = self.config.samples
        if config.num_images <= 0:
            return None
        labels = (np.arange(config.num_images) % self.task.num_classes).astype(np.int32)
        images = np.concatenate(
            list(
                self.pixel_batches(
                    float(config.ema),
                    labels,
                    batch_size=config.num_images,
                    seed=self.config.seed + 1,
                )
            )
        )
        if not self.is_main:
            return None
        uint8 = display_uint8(images)
        columns = self.task.num_classes if config.num_images % self.task.num_classes == 0 else None
        path = save_image_grid(
            uint8, os.path.join(self.workdir, f"samples_{step:08d}.png"), columns=columns
        )
        save_image_grid(uint8, os.path.join(self.workdir, "samples.png"), columns=columns)
        logger.log_image(step, "samples", path)
        return path


def _check_nonfinite(run: _Run, step: int, progress: Progress) -> int:
    count = int(jax.device_get(run.state.num_nonfinite))
    if count == 0:
        return 0
    policy = run.config.train.nonfinite
    limit = run.config.train.max_nonfinite_steps
    fixes = (
        "lower optimizer.learning_rate, set optimizer.grad_clip_norm (e.g. 1.0), or train with "
        "model.dtype='float32'"
    )
    if policy == "stop":
        raise NonFiniteError(
            f"The loss or the gradients became NaN/Inf by step {step} ({count} step(s)); their "
            f"updates were not applied. To continue: {fixes}, or set train.nonfinite='skip'."
        )
    if count > limit:
        raise NonFiniteError(
            f"{count} steps had a NaN/Inf loss or gradient by step {step}, more than "
            f"train.max_nonfinite_steps={limit}; training is diverging. {fixes[0].upper()}{fixes[1:]}."
        )
    progress.write(f"warning: {count} non-finite step(s) skipped so far (policy 'skip').")
    return count


def train(config: ConfigDict, workdir: str, *, stop_after: int | None = None) -> dict:
    """Trains (or resumes) the run described by ``config`` in ``workdir``.

    Args:
      config: a resolved config (``configs/*.py`` after overrides).
      workdir: local folder for logs, pictures, run files and (by default) checkpoints.
      stop_after: leave after this many steps of this call (tests of resumption); the
        checkpoint written then is the one a resumed run starts from.

    Returns:
      The final metrics written to ``workdir/metrics.json``.
    """
    wall_start = time.perf_counter()
    start_distributed(config.distributed)  # before anything touches a device
    workdir = prepare_workdir(workdir)
    run = _Run(config, workdir)
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
    )
    if run.resumed_from is not None:
        progress.write(f"Resumed from step {run.resumed_from} in {run.checkpointer.directory}.")
    setup_seconds = time.perf_counter() - wall_start

    pending: list[dict] = []
    first_step_seconds = None
    loop_start = time.perf_counter()
    step = start_step
    last_eval: dict = {}
    try:
        import nnx_sharding as ns

        with ns.activation_sharding(run.mesh, run.rules):
            while step < last_step:
                batch = run.global_batch(next(run.iterator))
                tic = time.perf_counter()
                run.state, metrics = run.train_step(run.state, run.frozen_state, batch)
                if first_step_seconds is None:
                    jax.block_until_ready(run.state.step)
                    first_step_seconds = time.perf_counter() - tic
                pending.append(metrics)
                step += 1
                if step % cfg.log_every == 0 or step == last_step:
                    averaged = jax.device_get(
                        jax.tree.map(lambda *v: jnp.mean(jnp.stack(v)), *pending)
                    )
                    pending = []
                    images_per_second = progress.update(step, float(averaged["loss"]))
                    _check_nonfinite(run, step, progress)
                    logger.log(step, {**averaged, "images_per_second": images_per_second})
                every = config.checkpoint.every_steps
                if (every and step % every == 0) or step == last_step:
                    run.checkpointer.save(run.state, run.iterator)
                if config.samples.every_steps and step % config.samples.every_steps == 0:
                    run.write_sample_grid(step, logger)
                if (
                    evaluator is not None
                    and config.eval.every_steps
                    and step % config.eval.every_steps == 0
                ):
                    last_eval = evaluate(run, evaluator, step)
                    logger.log(step, {f"eval/{k}": v for k, v in last_eval.items()})
    finally:
        progress.close()
        run.checkpointer.wait()
    train_seconds = time.perf_counter() - loop_start

    finished = step >= cfg.num_steps
    final: dict[str, Any] = {
        "step": step,
        "finished": finished,
        "num_params": run.num_params,
        "resumed_from": run.resumed_from,
        "setup_seconds": setup_seconds,
        "first_step_seconds": first_step_seconds,
        "train_seconds": train_seconds,
        "images_per_second": (step - start_step) * cfg.batch_size / max(train_seconds, 1e-9),
    }
    if finished:  # collectives: every process samples and evaluates
        run.write_sample_grid(step, logger)
        if evaluator is not None and (
            not last_eval or config.eval.every_steps == 0 or step % config.eval.every_steps
        ):
            last_eval = evaluate(run, evaluator, step)
            logger.log(step, {f"eval/{k}": v for k, v in last_eval.items()})
    if run.is_main:
        save_loss_curve(read_jsonl(logger.path), os.path.join(workdir, "loss_curve.png"))
    final.update(last_eval)
    final.update(getattr(run.task, "report", {}))
    final["wall_seconds"] = time.perf_counter() - wall_start
    if run.is_main:
        with open(os.path.join(workdir, "metrics.json"), "w") as handle:
            json.dump(final, handle, indent=2, default=float)
    logger.close()
    run.checkpointer.close()
    barrier("nnx_train:end")  # no process leaves while another still writes or gathers
    return final
