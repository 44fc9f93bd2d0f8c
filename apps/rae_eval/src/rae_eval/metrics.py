"""Metrics through nnx-fid: ADM generation metrics and the autoencoder's reconstruction metrics.

- Generation: FID, sFID, IS, precision and recall of the samples against an ADM reference
  batch (``VIRTUAL_imagenet256_labeled.npz``: ``mu``/``sigma`` and ``mu_s``/``sigma_s`` for FID
  and sFID, its 10k ``arr_0`` images for precision / recall), as guided-diffusion's evaluator.
  The reference images' features are cached in the work directory.
- Reconstruction: rFID of the reconstructions against the originals (pool3 statistics of both
  sets), plus per-image PSNR and SSIM averaged over images, as RAE's stage-1 evaluation.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterable

import numpy as np
from flax import nnx

from nnx_fid import (
    QUANTISATION,
    GaussianStats,
    InceptionFeatures,
    InceptionV3,
    ReferenceStats,
    compute_metrics,
    extract_features,
    frechet_distance,
    load_inception,
)
from nnx_nets.testing import randomise_parameters
from rae_eval.image_metrics import psnr, ssim

__all__ = [
    "build_inception",
    "cached_features",
    "generation_metrics",
    "reconstruction_metrics",
]


def build_inception(path: pathlib.Path | None, *, random_seed: int | None = None) -> nnx.Module:
    """The FID Inception: loaded from the pytorch-fid weights file, or random (demo runs).

    Args:
      path: ``pt_inception-2015-12-05-6726825d.pth`` (its SHA-256 is checked by nnx-fid).
      random_seed: when given, ``path`` is ignored and the network gets random weights; its
        metrics are then only meaningful relative to each other.
    """
    if random_seed is not None:
        model = InceptionV3(rngs=nnx.Rngs(random_seed))
        randomise_parameters(model, random_seed)
        return model
    return load_inception(path)


def cached_features(
    extractor: InceptionFeatures,
    images: np.ndarray,
    cache: pathlib.Path,
    *,
    batch_size: int,
    progress: bool,
) -> dict[str, np.ndarray]:
    """Features of ``images``, stored at ``cache`` (``.npz``) and read back on later runs.

    The cache is used only when it holds as many rows as there are images.
    """
    if cache.is_file():
        with np.load(cache) as data:
            features = {name: data[name] for name in data.files}
        if all(value.shape[0] == images.shape[0] for value in features.values()):
            return features
    features = extract_features([extractor], images, batch_size=batch_size, progress=progress)
    cache.parent.mkdir(parents=True, exist_ok=True)
    temporary = cache.with_name(cache.name + ".tmp.npz")
    np.savez(temporary, **features)
    temporary.replace(cache)
    return features


def generation_metrics(
    extractor: InceptionFeatures,
    sample_batches: Iterable[np.ndarray],
    reference: ReferenceStats,
    *,
    reference_features: dict[str, np.ndarray] | None,
    batch_size: int,
    progress: bool,
) -> dict:
    """ADM metrics of generated samples.

    Args:
      extractor: ``nnx_fid.InceptionFeatures`` (its front end is recorded).
      sample_batches: uint8 ``(b, H, W, 3)`` batches of at most ``batch_size`` samples.
      reference: the reference batch (``nnx_fid.load_reference``).
      reference_features: features of ``reference.images`` (precision / recall; also FID
        statistics when the file has none).
      batch_size: Inception batch size.
      progress: show progress bars.

    Returns:
      nnx-fid's result dict: ``fid``, ``sfid``, ``inception_score``, ``precision``,
      ``recall`` and how they were computed.
    """
    features = extract_features(
        [extractor], sample_batches, batch_size=batch_size, progress=progress
    )
    return compute_metrics(
        features,
        reference,
        front_end=extractor.front_end,
        reference_features=reference_features,
    )


def reconstruction_metrics(
    extractor: InceptionFeatures,
    originals: np.ndarray,
    reconstructions: np.ndarray,
    *,
    batch_size: int,
    progress: bool,
) -> dict:
    """rFID, PSNR and SSIM of reconstructions, as RAE's stage-1 evaluation reports them.

    Args:
      extractor: ``nnx_fid.InceptionFeatures``.
      originals: ``(N, H, W, 3)`` uint8 centre-cropped inputs.
      reconstructions: ``(N, H, W, 3)`` uint8 decoder outputs.
      batch_size: Inception batch size.
      progress: show progress bars.

    Returns:
      ``{"rfid", "psnr", "ssim", ...}``: rFID is the Frechet distance between the pool3
      statistics of the reconstructions and of the originals (nnx-fid, float64 on the host);
      ``psnr`` (dB) and ``ssim`` are means over images.
    """
    kwargs = {"batch_size": batch_size, "progress": progress}
    original = extract_features([extractor], originals, **kwargs)["pool"]
    reconstructed = extract_features([extractor], reconstructions, **kwargs)["pool"]
    ours = GaussianStats.from_features(reconstructed)
    theirs = GaussianStats.from_features(original)
    return {
        "rfid": float(frechet_distance(ours.mu, ours.sigma, theirs.mu, theirs.sigma)),
        "psnr": float(np.mean(psnr(originals, reconstructions))),
        "ssim": float(np.mean(ssim(originals, reconstructions))),
        "num_images": int(originals.shape[0]),
        "front_end": extractor.front_end,
        "quantisation": QUANTISATION,
    }
