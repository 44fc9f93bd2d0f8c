"""Evaluation of generated samples: digits classifier metrics, FID with nnx-fid.

`DigitsEvaluator` (embedded default) trains the independent classifier of
`nnx_train.classifier` on the real training split and reports, for generated images with
requested labels, (a) the share the classifier assigns to the requested class and (b) the
Frechet distance between classifier features of generated and held-out real images, plus the
same distance between the real training split and the held-out split as a floor of what a
perfect generator would reach with this many samples.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import numpy as np

__all__ = ["DigitsEvaluator", "feature_statistics"]


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (float64, ``N - 1`` normalisation) of ``(N, D)`` features."""
    features = np.asarray(features, np.float64)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _frechet(a: np.ndarray, b: np.ndarray) -> float:
    from nnx_fid import frechet_distance

    mu_a, sigma_a = feature_statistics(a)
    mu_b, sigma_b = feature_statistics(b)
    return float(frechet_distance(mu_a, sigma_a, mu_b, sigma_b))


def _accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits, axis=-1) == np.asarray(labels)))


class DigitsEvaluator:
    """Classifier metrics of generated digits.

    Args:
      holdout_fraction: the digits split (same as the training data's).
      split_seed: the digits split seed.
      classifier_steps: optimiser steps of the classifier.
      seed: classifier seed.
    """

    def __init__(
        self,
        *,
        holdout_fraction: float = 0.15,
        split_seed: int = 0,
        classifier_steps: int = 400,
        seed: int = 0,
    ) -> None:
        from nnx_train.classifier import classifier_outputs, train_classifier
        from nnx_train.data.digits import load_digits_split

        start = time.perf_counter()
        self.split = load_digits_split(holdout_fraction=holdout_fraction, split_seed=split_seed)
        self.classifier = train_classifier(
            self.split.train_images, self.split.train_labels, num_steps=classifier_steps, seed=seed
        )
        self._outputs = classifier_outputs(self.classifier)
        logits, self.heldout_features = self._outputs(self.split.heldout_images)
        self.heldout_accuracy = _accuracy(logits, self.split.heldout_labels)
        _, train_features = self._outputs(self.split.train_images)
        self.real_frechet_distance = _frechet(train_features, self.heldout_features)
        self.setup_seconds = time.perf_counter() - start

    def __call__(self, batches: Iterable[np.ndarray], labels: np.ndarray) -> dict[str, float]:
        """Metrics of generated image batches ``(b, 8, 8, 1)`` in [-1, 1] made for ``labels``."""
        images = np.clip(np.concatenate(list(batches)).astype(np.float32), -1.0, 1.0)
        logits, generated_features = self._outputs(images)
        return {
            "generated_class_accuracy": _accuracy(logits, labels),
            "classifier_frechet_distance": _frechet(generated_features, self.heldout_features),
            "classifier_heldout_accuracy": self.heldout_accuracy,
            "real_train_vs_heldout_frechet_distance": self.real_frechet_distance,
            "num_generated": int(len(images)),
            "num_heldout_real": int(len(self.heldout_features)),
        }
