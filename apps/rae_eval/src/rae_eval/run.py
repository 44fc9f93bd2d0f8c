"""The two tasks of the app, each a short linear script over the pieces of this package.

``generate``: class-balanced labels -> resumable sharded sampling (stage-2 model, guidance,
Euler on the shifted grid, decoder) -> ADM metrics against the reference batch -> JSON, grid.
``sample``: the same without the metrics (samples.npz for an external evaluator).
``reconstruct``: a folder of images -> centre crop -> encode, normalise, decode (resumable
shards) -> rFID, PSNR, SSIM -> JSON, grid.

Work directory layout::

    provenance.json                 resolved config, package versions, devices, git commit
    samples/shard_*.npz             generated samples (fingerprint.json guards resume)
    samples.npz                     ADM sample file (arr_0 images, arr_1 labels), optional
    reference_features_<front>.npz  cached Inception features of the reference images
    results_generate.json           metrics and every knob that moves them
    samples_grid.png
    reconstructions/shard_*.npz, results_reconstruct.json, reconstructions_grid.png
"""

from __future__ import annotations

import pathlib
import platform
import time
from collections.abc import Iterator

import jax
import numpy as np
from PIL import Image

from nnx_fid import (
    InceptionFeatures,
    ReferenceStats,
    balanced_labels,
    git_commit,
    load_reference,
    package_versions,
)
from rae_eval.build import build_grid, build_solver
from rae_eval.generation import generate_shards
from rae_eval.image_folder import list_images, load_images
from rae_eval.metrics import (
    build_inception,
    cached_features,
    generation_metrics,
    reconstruction_metrics,
)
from rae_eval.pipeline import (
    build_autoencoder,
    build_stage2,
    check_config,
    latent_shape,
    needs_guide,
    required_files,
    workdir_path,
)
from rae_eval.results import save_grid, write_json
from rae_eval.sampling import data_mesh, make_generate_batch, make_reconstruct_batch
from rae_eval.shards import ShardStore

__all__ = ["TASKS", "run", "run_generation", "run_reconstruction"]

TASKS = ("generate", "sample", "reconstruct")
"""``generate``: sample + metrics; ``sample``: only the samples (for an external evaluator)."""

_PACKAGES = ("jax", "flax", "numpy", "nnx-nets", "nnx-samplers", "nnx-fid", "nnx-weightconv")


def provenance(config) -> dict:
    """What produced a run: resolved config, versions, devices, git commit."""
    return {
        "config": config.to_dict(),
        "versions": package_versions(_PACKAGES),
        "python": platform.python_version(),
        "devices": [str(device) for device in jax.devices()],
        "git_commit": git_commit(pathlib.Path(__file__).parent)["commit"],
    }


def run(config, workdir: str | pathlib.Path) -> dict:
    """Run ``config.task`` in ``workdir`` and return its results (also written as JSON)."""
    check_config(config)
    workdir = workdir_path(workdir)
    write_json(workdir / "provenance.json", provenance(config))
    match config.task:
        case "generate" | "sample":
            return run_generation(config, workdir)
        case "reconstruct":
            return run_reconstruction(config, workdir)
        case other:
            raise ValueError(f"unknown task {other!r}; choose one of {TASKS}")


def _shard_batches(store: ShardStore, batch_size: int) -> Iterator[np.ndarray]:
    """The stored samples in index order, in batches of exactly ``batch_size`` (the last may be
    shorter), reading one shard at a time."""
    pending: list[np.ndarray] = []
    count = 0
    for shard in range(store.num_shards):
        images, _ = store.read(shard)
        pending.append(images)
        count += images.shape[0]
        while count >= batch_size:
            merged = np.concatenate(pending)
            yield merged[:batch_size]
            pending, count = [merged[batch_size:]], count - batch_size
    if count:
        yield np.concatenate(pending)


def _first_images(store: ShardStore, count: int) -> np.ndarray:
    parts, total = [], 0
    for shard in range(store.num_shards):
        if total >= count:
            break
        images, _ = store.read(shard)
        parts.append(images[: count - total])
        total += parts[-1].shape[0]
    return np.concatenate(parts)


def synthetic_reference(num_images: int, image_size: int, *, seed: int) -> ReferenceStats:
    """Demo-only reference batch for random-weight runs: smooth random colour fields.

    Each image is a 4 x 4 grid of random colours upsampled bilinearly; FID against it is only
    a smoke-test number. Published runs always read the ADM reference batch.
    """
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(num_images, 4, 4, 3), dtype=np.uint8)
    images = np.stack(
        [
            np.asarray(Image.fromarray(c).resize((image_size, image_size), Image.BILINEAR))
            for c in coarse
        ]
    )
    return ReferenceStats(images=images, num_images=num_images)


def _reference(config, files, image_size: int) -> tuple[ReferenceStats, str]:
    if "reference_batch" in files:
        path = files["reference_batch"].path
        return load_reference(path), str(path)
    return synthetic_reference(
        config.generation.num_samples, image_size, seed=config.seed + 7
    ), "synthetic (random weights demo)"


def _inception_path(files) -> pathlib.Path | None:
    return files["inception"].path if "inception" in files else None


def _generation_fingerprint(config, files) -> dict:
    """Everything the stored sample shards depend on (a resumed run must match it)."""
    return {
        "seed": config.seed,
        "weights": config.weights,
        "files": {
            role: str(file.path)
            for role, file in files.items()
            if role in ("decoder", "latent_stats", "stage2", "guide")
        },
        "num_classes": config.num_classes,
        "stage2": config.stage2.to_dict(),
        "guide": config.guide.to_dict() if needs_guide(config) else None,
        "decoder": config.decoder.to_dict(),
        "guidance": config.guidance.to_dict(),
        "sampler": config.sampler.to_dict(),
        "time_shift": config.time_shift,
        "shard_size": config.generation.shard_size,
    }


def _generate_batch(config, files, grid, mesh):
    """The jitted ``(indices, labels) -> uint8 images`` of the configured models."""
    autoencoder = build_autoencoder(config, files, with_encoder=False)
    model = build_stage2(config, files, "stage2")
    guide = build_stage2(config, files, "guide") if needs_guide(config) else None
    return make_generate_batch(
        autoencoder=autoencoder,
        model=model,
        guide=guide,
        guidance=config.guidance,
        solver=build_solver(config.sampler),
        grid=grid,
        latent_shape=latent_shape(config),
        null_label=config.num_classes,
        seed=config.seed,
        mesh=mesh,
    )


def _generation_summary(config, grid, store: ShardStore, report) -> dict:
    """The settings and timings part of ``results_generate.json``."""
    times = np.asarray(grid.times()).tolist()
    return {
        "task": config.task,
        "metrics": None,
        "weights": config.weights,
        "seed": config.seed,
        "labels": "class-balanced (nnx_fid.balanced_labels)",
        "num_samples": config.generation.num_samples,
        "guidance": config.guidance.to_dict(),
        "sampler": {
            **config.sampler.to_dict(),
            "time_shift": config.time_shift,
            "grid_first_last": [times[0], times[-1]],
        },
        "precision": config.stage2.precision,
        "devices": jax.device_count(),
        "generated_shards": None if report is None else len(report.generated),
        "skipped_shards": store.num_shards if report is None else report.skipped,
        "sampling_seconds": None if report is None else report.seconds,
    }


def run_generation(config, workdir: pathlib.Path) -> dict:
    """Sample ``generation.num_samples`` images (resuming), evaluate, write JSON and a grid."""
    start = time.perf_counter()
    files = required_files(config)
    section = config.generation
    labels = balanced_labels(section.num_samples, config.num_classes, seed=config.seed)
    mesh = data_mesh()
    batch_size = section.per_device_batch * mesh.size
    store = ShardStore(
        workdir / "samples", num_samples=section.num_samples, shard_size=section.shard_size
    )
    grid = build_grid(config.sampler, config.time_shift)
    store.check_fingerprint(_generation_fingerprint(config, files))
    # Every weight file is loaded and checked before the first sample: a wrong Inception or
    # reference batch must not surface only after hours of sampling.
    scorer = _metric_inputs(config, files, mesh) if config.task == "generate" else None
    report = None
    if store.missing_shards():  # a finished run goes straight to the metrics
        generate_batch = _generate_batch(config, files, grid, mesh)
        report = generate_shards(
            store, generate_batch, labels, batch_size=batch_size, progress=config.progress
        )
    if section.write_npz:
        store.assemble(workdir / "samples.npz")
    grid_path = save_grid(
        workdir / "samples_grid.png",
        _first_images(store, section.grid_images),
        columns=section.grid_columns,
    )
    results = _generation_summary(config, grid, store, report)
    results["grid"] = str(grid_path)
    if config.task == "generate":
        results.update(_generation_metrics(config, store, *scorer))
    results["seconds"] = time.perf_counter() - start
    write_json(workdir / f"results_{config.task}.json", results)
    return results


def _inception_extractor(config, files, mesh) -> InceptionFeatures:
    """Inception features of the configured weights (random ones for the demo)."""
    random_seed = config.seed + 6 if config.weights == "random" else None
    inception = build_inception(_inception_path(files), random_seed=random_seed)
    return InceptionFeatures(inception, front_end=config.metrics.front_end, mesh=mesh)


def _metric_inputs(config, files, mesh) -> tuple:
    """``(extractor, reference, reference name)``: the Inception (weights read and checked)
    and the reference batch, loaded before any sampling."""
    reference, reference_name = _reference(config, files, config.image_size)
    return _inception_extractor(config, files, mesh), reference, reference_name


def _generation_metrics(
    config, store: ShardStore, extractor, reference, reference_name: str
) -> dict:
    """ADM metrics of the stored samples against the reference batch."""
    workdir = store.directory.parent
    reference_features = None
    if reference.images is not None:
        reference_features = cached_features(
            extractor,
            reference.images,
            workdir / f"reference_features_{config.metrics.front_end}.npz",
            batch_size=config.metrics.batch_size,
            progress=config.progress,
        )
    metrics = generation_metrics(
        extractor,
        _shard_batches(store, config.metrics.batch_size),
        reference,
        reference_features=reference_features,
        batch_size=config.metrics.batch_size,
        progress=config.progress,
    )
    return {"metrics": metrics, "reference": reference_name}


def _reconstruction_paths(section) -> list:
    """The images of ``reconstruction.image_folder`` (the first ``max_images`` if set)."""
    if not section.image_folder:
        raise ValueError(
            "config.reconstruction.image_folder is empty; point it at a folder of images "
            "(ImageNet val for the paper's rFID)"
        )
    paths = list_images(section.image_folder)
    return paths[: section.max_images] if section.max_images else paths


def _save_pairs(workdir: pathlib.Path, originals, reconstructions, count: int) -> pathlib.Path:
    """A two-column grid: original | reconstruction, ``count`` rows."""
    count = min(count, len(originals))
    pairs = np.stack([originals[:count], reconstructions[:count]], axis=1).reshape(
        2 * count, *originals.shape[1:]
    )
    return save_grid(workdir / "reconstructions_grid.png", pairs, columns=2)


def run_reconstruction(config, workdir: pathlib.Path) -> dict:
    """rFID, PSNR and SSIM of encode -> decode on ``reconstruction.image_folder``."""
    start = time.perf_counter()
    files = required_files(config)
    section = config.reconstruction
    paths = _reconstruction_paths(section)
    originals = load_images(paths, config.image_size)
    mesh = data_mesh()
    store = ShardStore(
        workdir / "reconstructions", num_samples=len(paths), shard_size=section.shard_size
    )
    store.check_fingerprint(
        {
            "seed": config.seed,
            "weights": config.weights,
            "files": {role: str(file.path) for role, file in files.items()},
            "images": [str(p) for p in paths],
            "encoder": config.encoder.to_dict(),
            "decoder": config.decoder.to_dict(),
            "shard_size": section.shard_size,
        }
    )
    report = None
    if store.missing_shards():
        autoencoder = build_autoencoder(config, files, with_encoder=True)
        reconstruct = make_reconstruct_batch(autoencoder=autoencoder, images=originals, mesh=mesh)
        report = generate_shards(
            store,
            reconstruct,
            np.zeros(len(paths), np.int32),
            batch_size=section.per_device_batch * mesh.size,
            progress=config.progress,
            desc="reconstructing",
        )
    reconstructions, _ = store.read_all()
    grid_path = _save_pairs(workdir, originals, reconstructions, section.grid_images)

    metrics = reconstruction_metrics(
        _inception_extractor(config, files, mesh),
        originals,
        reconstructions,
        batch_size=config.metrics.batch_size,
        progress=config.progress,
    )
    results = {
        "task": "reconstruct",
        "metrics": metrics,
        "image_folder": str(section.image_folder),
        "num_images": len(paths),
        "image_size": config.image_size,
        "crop": "ADM center_crop_arr",
        "weights": config.weights,
        "encoder_input_size": config.encoder.input_size,
        "generated_shards": None if report is None else len(report.generated),
        "seconds": time.perf_counter() - start,
        "grid": str(grid_path),
    }
    write_json(workdir / "results_reconstruct.json", results)
    return results
