"""Periodic FID-N with nnx-fid on EMA samples: the same functions the offline tools use.

Samples are generated in batches (class-balanced labels from ``nnx_fid.balanced_labels``),
decoded to pixels when the model works in a latent space, quantised with
``nnx_fid.to_uint8`` and passed through ``nnx_fid.extract_features`` with the FID Inception
(``nnx_fid.load_inception``) and ``nnx_fid.compute_metrics`` against the reference
statistics, so the numbers equal those of ``tools/`` on the same samples.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np
from ml_collections import ConfigDict

from nnx_train.errors import ConfigError

__all__ = ["FIDEvaluator"]


class FIDEvaluator:
    """FID (and sFID, IS, precision, recall when the reference allows) of generated pixels.

    Args:
      inception: a loaded ``nnx_fid.InceptionV3``.
      reference: ``nnx_fid.ReferenceStats`` (ADM ``.npz``, pytorch-fid ``.npz`` or EDM2 ``.pkl``).
      front_end: ``"tf1"`` (ADM evaluator) or ``"pytorch_fid"``.
      batch_size: Inception batch size.
    """

    def __init__(self, inception, reference, *, front_end: str = "tf1", batch_size: int = 100):
        from nnx_fid import InceptionFeatures

        self.extractor = InceptionFeatures(inception, front_end=front_end)
        self.reference = reference
        self.front_end = front_end
        self.batch_size = batch_size

    @classmethod
    def from_config(cls, config: ConfigDict) -> FIDEvaluator:
        """Loads the Inception weights and reference statistics named in ``config.eval``.

        Raises:
          ConfigError: a file is not set or does not exist (checked at start-up, not after
            days of training).
        """
        from nnx_fid import load_inception, load_reference

        section = config.eval
        for key in ("inception_weights", "reference_stats"):
            path = section[key]
            if not path or not os.path.isfile(path):
                raise ConfigError(
                    f"eval.{key}={path!r} is not a file. FID needs the pytorch-fid Inception "
                    "weights (pt_inception-2015-12-05-6726825d.pth) and reference statistics "
                    "(ADM VIRTUAL_imagenet256_labeled.npz, pytorch-fid .npz or EDM2 .pkl); set "
                    "both paths, or --config.eval.name=none."
                )
        inception = load_inception(section.inception_weights)
        reference = load_reference(section.reference_stats, load_images=False)
        return cls(inception, reference, batch_size=section.batch_size)

    def __call__(self, batches: Iterable[np.ndarray], labels: np.ndarray) -> dict:
        """Metrics of pixel batches ``(b, H, W, 3)`` in [-1, 1] (consumed lazily; ``labels``
        are recorded by count only: FID is unconditional)."""
        from nnx_fid import compute_metrics, extract_features, to_uint8

        uint8 = (np.asarray(to_uint8(batch)) for batch in batches)
        features = extract_features(
            [self.extractor], uint8, batch_size=self.batch_size, progress=False
        )
        result = compute_metrics(features, self.reference, front_end=self.front_end)
        metrics = {k: v for k, v in result.items() if isinstance(v, int | float | str) or v is None}
        metrics["num_samples"] = int(len(labels))
        return metrics
