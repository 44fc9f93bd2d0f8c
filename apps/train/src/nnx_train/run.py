"""One run's pieces: mesh, data, task, state (restored or initialised sharded), jitted step.

`Run` is what the training loop (`nnx_train.train`) and the commands that read a workdir
share; building it joins nothing and starts no loop. Every process builds the same `Run`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from ml_collections import ConfigDict

from nnx_fid.sampling import sample_in_batches
from nnx_train import build
from nnx_train.checkpointing import Checkpointer
from nnx_train.data import make_source_iterator
from nnx_train.ema import ema_name, init_ema
from nnx_train.ema_snapshots import SnapshotWriter, check_power_ema, snapshot_directory
from nnx_train.errors import CheckpointError, ConfigError, NonFiniteError
from nnx_train.metrics_log import MetricsLogger
from nnx_train.multihost import host_array, process_batch_rows
from nnx_train.pictures import display_uint8, save_image_grid
from nnx_train.progress import Progress
from nnx_train.provenance import write_run_files
from nnx_train.state import TrainState, scalar
from nnx_train.step import make_train_step
from nnx_train.tasks import AutoencoderTask

log = logging.getLogger(__name__)

NONFINITE_POLICIES = ("skip", "stop")


class Run:
    """The pieces of one run that the loop and its helpers share.

    Args:
      config: the resolved config.
      workdir: the run folder.
      step: restore this checkpoint step (default: the newest readable one).
      read_only: restore only (``sample`` / ``evaluate``): no run files are written, the
        checkpoint folder is neither created nor cleaned, no EMA snapshot writer is opened,
        and a workdir without a checkpoint is an error.
    """

    def __init__(
        self,
        config: ConfigDict,
        workdir: str,
        *,
        step: int | None = None,
        read_only: bool = False,
    ) -> None:
        self.config = config
        self.workdir = workdir
        self.is_main = jax.process_index() == 0
        self.mesh, self.rules = build.build_mesh_and_rules(config.sharding)
        if not read_only:
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
        if getattr(self.task, "wrap_optimizer", None) is not None:  # e.g. DMD2's TTUR
            self.tx = self.task.wrap_optimizer(self.tx)
        self.decays = tuple(float(d) for d in config.ema.decays)
        self.sigma_rels = check_power_ema(config.ema)
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
        self._init_state(step, read_only)
        self._init_frozen()
        self._init_autoencoder()

    # -- state -------------------------------------------------------------------------
    def _init_state(self, step: int | None = None, read_only: bool = False) -> None:
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
                ema=init_ema(params, decays, self.sigma_rels),
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
            read_only=read_only,
        )
        if read_only and self.checkpointer.latest_step() is None:
            raise CheckpointError(
                f"No checkpoint in {self.checkpointer.directory}; train first "
                f"(uv run apps/train --workdir {self.workdir}) or pass the workdir of a run."
            )
        self.snapshots = None
        if config.ema.snapshot_every_steps and not read_only:
            self.snapshots = SnapshotWriter(
                snapshot_directory(config.ema, directory),
                sigma_rels=self.sigma_rels,
                every_steps=config.ema.snapshot_every_steps,
                async_save=config.checkpoint.async_save,
            )
        if self.checkpointer.latest_step() is not None:
            target = jax.tree.map(
                lambda leaf, sharding: jax.ShapeDtypeStruct(
                    leaf.shape, leaf.dtype, sharding=sharding
                ),
                abstract,
                self.shardings,
            )
            self.state = self.checkpointer.restore(target, self.iterator, step=step)
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
            ema_sigma_rels=self.sigma_rels,
        )
        self.train_step = jax.jit(step, donate_argnums=(0,), out_shardings=(self.shardings, None))
        self.preview = self._jit_preview(self.task)
        self._guided_previews: dict[float, object] = {}

    def _jit_preview(self, task):
        graphdef, frozen_graphdef = self.graphdef, self.frozen_graphdef

        def preview(params, rest, frozen_state, batch, key_data):
            model = nnx.merge(graphdef, params, rest)
            frozen = None if frozen_graphdef is None else nnx.merge(frozen_graphdef, frozen_state)
            return task.preview(model, frozen, batch, jax.random.wrap_key_data(key_data))

        # Replicated samples: every process can read them without a gather of its own.
        replicated = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec())
        return jax.jit(preview, out_shardings=replicated)

    def _preview_for(self, guidance_scale: float | None):
        """The compiled preview with ``guidance.scale`` replaced by ``guidance_scale``
        (``None``: the configured one), built once per scale (evaluation settings)."""
        if guidance_scale is None or guidance_scale == self.config.guidance.scale:
            return self.preview
        if guidance_scale not in self._guided_previews:
            config = ConfigDict(self.config.to_dict())
            config.guidance.scale = float(guidance_scale)
            task = build.build_task(config, data_shape=self.data_shape)
            self._guided_previews[guidance_scale] = self._jit_preview(task)
        return self._guided_previews[guidance_scale]

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
        self,
        decay: float | str | None,
        labels: np.ndarray,
        *,
        batch_size: int,
        seed: int,
        guidance_scale: float | None = None,
    ) -> Iterator[np.ndarray]:
        """Samples of the EMA ``decay`` (or the ``state.ema`` key ``decay``; ``None``: the raw
        weights) for ``labels`` as
        pixel batches in [-1, 1], guided with ``guidance_scale`` (``None``:
        ``config.guidance.scale``).

        The batches are `nnx_fid.sample_in_batches` (one static size, the last padded, then
        trimmed), so the sampler compiles once; latents are decoded when ``autoencoder`` is set. A collective: every
        process calls it with the same arguments and gets all the samples.
        """
        import nnx_sharding as ns

        if decay is None:
            params = self.state.params
        else:
            params = self.state.ema[decay if isinstance(decay, str) else ema_name(decay)]
        preview = self._preview_for(guidance_scale)
        key = jax.random.key(seed)

        def sample_batch(indices: np.ndarray, batch_labels: np.ndarray) -> np.ndarray:
            batch = {"y": batch_labels.astype(np.int32)}
            if isinstance(self.task, AutoencoderTask):  # reconstructions of fixed real images
                batch["x"] = np.stack([self.source[i % len(self.source)]["x"] for i in indices])
            with ns.activation_sharding(self.mesh, self.rules):
                images = preview(
                    params,
                    self.state.rest,
                    self.frozen_state,
                    batch,
                    # Host data, the same on every process (a key on one local device
                    # would not mix with arrays that span processes); one key per batch.
                    np.asarray(
                        jax.random.key_data(jax.random.fold_in(key, indices[0] // batch_size))
                    ),
                )
            images = host_array(images)
            if self.decode is not None:  # on this host's default device, from host memory
                images = host_array(self.decode(images))
            return images

        return sample_in_batches(sample_batch, labels, batch_size=batch_size)

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
        columns = self.task.num_classes if config.num_images % self.task.num_classes == 0 else None
        if images.ndim == 5:  # clips: one row of frames per clip
            columns = images.shape[1]
            images = images.reshape(-1, *images.shape[2:])
        uint8 = display_uint8(images)
        path = save_image_grid(
            uint8, os.path.join(self.workdir, f"samples_{step:08d}.png"), columns=columns
        )
        save_image_grid(uint8, os.path.join(self.workdir, "samples.png"), columns=columns)
        logger.log_image(step, "samples", path)
        return path


def check_nonfinite(run: Run, step: int, progress: Progress) -> int:
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
