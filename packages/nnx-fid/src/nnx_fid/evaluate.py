"""ADM's metric set from extracted features: FID, sFID, IS, precision, recall (+ FD-DINOv2).

Follows guided-diffusion's ``evaluations/evaluator.py``:

- reference statistics come from the file when present (``mu``/``sigma``, ``mu_s``/``sigma_s``);
  otherwise they are computed from the reference images' features;
- IS uses the samples' logits (contiguous splits of 5000);
- precision / recall compare the reference images' pool3 features with all samples (k = 3).

Every result records how it was computed (front end, quantisation, split rule, counts), so that
numbers computed with different knobs are never confused (Parmar et al. 2022, clean-fid).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from nnx_fid.frechet import frechet_distance
from nnx_fid.images import QUANTISATION
from nnx_fid.inception_score import ADM_SPLIT_SIZE, inception_score, softmax_probabilities
from nnx_fid.precision_recall import precision_recall
from nnx_fid.statistics import GaussianStats
from nnx_fid.stats_io import ReferenceStats


def _reference_stats(
    stored: GaussianStats | None, features: Mapping[str, np.ndarray] | None, key: str
) -> GaussianStats | None:
    if stored is not None:
        return stored
    if features is not None and key in features:
        return GaussianStats.from_features(features[key])
    return None


def compute_metrics(
    sample_features: Mapping[str, np.ndarray],
    reference: ReferenceStats,
    *,
    front_end: str,
    reference_features: Mapping[str, np.ndarray] | None = None,
    split_size: int = ADM_SPLIT_SIZE,
    k: int = 3,
) -> dict:
    """FID, sFID, IS, precision and recall (and FD-DINOv2 when both sides have it).

    Args:
      sample_features: from :func:`nnx_fid.extract_features` on the samples: ``"pool"``,
        ``"spatial"``, ``"logits"`` and optionally ``"dinov2"``.
      reference: the reference statistics (and, for ADM files, images).
      front_end: the Inception front end that produced the features (recorded).
      reference_features: features of ``reference.images`` (``"pool"`` for precision/recall;
        also used for FID/sFID statistics the file lacks).
      split_size: IS split size (ADM: 5000).
      k: precision/recall neighbourhood size (ADM: 3).

    Returns:
      dict with ``fid``, ``sfid``, ``inception_score``, ``precision``, ``recall``,
      ``fd_dinov2`` (each ``None`` when its inputs are missing) and the settings used.
    """
    result: dict = {
        "num_samples": int(next(iter(sample_features.values())).shape[0]),
        "front_end": front_end,
        "quantisation": QUANTISATION,
        "fid_method": "eigh",
        "is_split_size": split_size,
        "pr_k": k,
        "fid": None,
        "sfid": None,
        "inception_score": None,
        "precision": None,
        "recall": None,
        "fd_dinov2": None,
    }
    result.update(_frechet_metrics(sample_features, reference, reference_features))
    if "logits" in sample_features:
        probabilities = softmax_probabilities(sample_features["logits"])
        result["inception_score"] = inception_score(probabilities, split_size=split_size)
    if (
        reference_features is not None
        and "pool" in reference_features
        and "pool" in sample_features
    ):
        precision, recall = precision_recall(
            reference_features["pool"], sample_features["pool"], k=k
        )
        result["precision"], result["recall"] = precision, recall
        result["num_reference_images"] = int(reference_features["pool"].shape[0])
    return result


def _frechet_metrics(
    sample_features: Mapping[str, np.ndarray],
    reference: ReferenceStats,
    reference_features: Mapping[str, np.ndarray] | None,
) -> dict:
    """FID (pool), sFID (spatial) and FD-DINOv2, for each feature both sides have."""
    result = {}
    pairs = (
        ("fid", "pool", reference.fid),
        ("sfid", "spatial", reference.sfid),
        ("fd_dinov2", "dinov2", reference.fd_dinov2),
    )
    for metric, key, stored in pairs:
        # DINOv2 statistics come only from the file; Inception ones also from its images.
        features = reference_features if metric != "fd_dinov2" else None
        ref = _reference_stats(stored, features, key)
        if ref is not None and key in sample_features:
            ours = GaussianStats.from_features(sample_features[key])
            result[metric] = frechet_distance(ours.mu, ours.sigma, ref.mu, ref.sigma)
    return result


def format_adm_report(result: Mapping) -> str:
    """The lines ADM's evaluator prints, for the metrics that were computed."""
    lines = ["Computing evaluations..."]
    names = (
        ("inception_score", "Inception Score"),
        ("fid", "FID"),
        ("sfid", "sFID"),
        ("precision", "Precision"),
        ("recall", "Recall"),
        ("fd_dinov2", "FD-DINOv2"),
    )
    for key, label in names:
        if result.get(key) is not None:
            lines.append(f"{label}: {result[key]}")
    return "\n".join(lines)
