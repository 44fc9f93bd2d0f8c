"""Evaluation of generated samples: digits classifier metrics, FID with nnx-fid.

`DigitsEvaluator` (embedded default) trains the independent classifier of
`nnx_train.classifier` on the real training split and reports, for generated images with
requested labels, (a) the share the classifier assigns to the requested class and (b) the
Frechet distance between classifier features of generated and held-out real images, plus the
same distance between the real training split and the held-out split as a floor of what a
perfect generator would reach with this many samples. `build_evaluator` makes the evaluator of
``config.eval``; `evaluate` samples from the EMA and scores, on every process.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import re
import time
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
from ml_collections import ConfigDict

from nnx_train.errors import ConfigError

__all__ = [
    "DigitsEvaluator",
    "EvalSetting",
    "build_evaluator",
    "eval_settings",
    "evaluate",
    "feature_statistics",
    "sampler_variant",
    "save_sample_batch",
]

log = logging.getLogger(__name__)


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


def build_evaluator(config: ConfigDict) -> Any:
    """The evaluator named by ``config.eval.name`` (``None`` for ``"none"``); checks
    ``eval.settings`` first (`eval_settings`), so a bad row fails at start-up."""
    eval_settings(config)
    match config.eval.name:
        case "none":
            return None
        case "digits":
            if config.data.name != "digits":
                raise ConfigError(
                    "eval.name='digits' needs data.name='digits' (its classifier is trained on the "
                    "digits training split); use eval.name='fid' or 'none' for other data."
                )
            return DigitsEvaluator(
                holdout_fraction=config.data.holdout_fraction,
                split_seed=config.data.split_seed,
                seed=config.seed,
            )
        case "video_digits":
            from nnx_train.video_eval import VideoDigitsEvaluator

            if config.data.name != "moving_digits":
                raise ConfigError(
                    "eval.name='video_digits' needs data.name='moving_digits'; use 'none' for "
                    "other data."
                )
            return VideoDigitsEvaluator(
                window=config.data.num_frames,
                frame_size=config.data.frame_size,
                grid=config.data.grid,
                motion=config.data.motion,
                holdout_fraction=config.data.holdout_fraction,
                split_seed=config.data.split_seed,
                seed=config.seed,
            )
        case "fid":
            from nnx_train.fid_eval import FIDEvaluator

            return FIDEvaluator.from_config(config)
        case _:
            raise ConfigError(
                f"Unknown eval.name={config.eval.name!r}; valid: none, digits, video_digits, fid."
            )


@dataclasses.dataclass(frozen=True)
class EvalSetting:
    """One row of the evaluation: a CFG scale and a sample count.

    Attributes:
      name: the row's name (``"cfg1.5/50k"``), appended to each metric as ``fid@cfg1.5/50k``;
        ``""`` for the single unnamed row of a config without ``eval.settings``.
      guidance_scale: the CFG scale (``None``: ``guidance.scale``).
      num_samples: images generated and scored.
    """

    name: str
    guidance_scale: float | None
    num_samples: int


_SETTING = re.compile(r"cfg(\d+(?:\.\d+)?)/(\d+)(k?)")


def eval_settings(config: ConfigDict) -> list[EvalSetting]:
    """The rows of ``config.eval.settings`` (``"cfg<scale>/<count>[k]"`` each, e.g.
    ``"cfg1.5/50k"``), or one unnamed row (``guidance.scale``, ``eval.num_samples``).

    Raises:
      ConfigError: a malformed setting, or a scale other than 1 with ``guidance.name='none'``.
    """
    rows = []
    for text in config.eval.get("settings", ()):
        match = _SETTING.fullmatch(str(text))
        if match is None:
            raise ConfigError(
                f"eval.settings has {text!r}; write each as cfg<scale>/<count>, e.g. "
                "'cfg1.5/50k' or 'cfg1.0/10000'."
            )
        scale = float(match.group(1))
        if scale != 1.0 and config.guidance.name == "none":
            raise ConfigError(
                f"eval.settings has {text!r} but guidance.name='none'; use cfg1.0 or set "
                "guidance.name='cfg'."
            )
        count = int(match.group(2)) * (1000 if match.group(3) else 1)
        rows.append(EvalSetting(str(text), scale, count))
    if not rows:
        rows.append(EvalSetting("", None, int(config.eval.num_samples)))
    return rows


def evaluate(run: Any, evaluator: Any, step: int, *, ema: float | str | None = None) -> dict:
    """Scores the EMA's samples, one row per evaluation setting (`eval_settings`) and, with
    ``eval.sampler_steps``, per sampler step count.

    Periodic evaluations score the rows of at most ``eval.num_samples`` images; the one at
    ``train.num_steps`` scores every row. Named rows' metrics are keyed ``<metric>@<row>``
    (``fid@cfg1.5/50k``); the unnamed row keeps plain names. With ``eval.sampler_steps =
    (1, 2)`` (few-step samplers: MeanFlow's jump, one network evaluation per step) every
    metric is reported once per step count as ``<metric>_steps<n>`` (then ``@<row>``).
    ``ema`` overrides ``eval.ema`` (a decay, or a ``state.ema`` key such as a post-hoc EMA).
    ``run`` is the trainer's run (``config``, ``task``, ``workdir``, ``is_main`` and
    ``pixel_batches``). Every process samples and scores (sampling is a collective; the
    evaluators are deterministic, so all processes get the same metrics); process 0 writes
    the samples files.
    """
    config = run.config
    which = float(config.eval.ema) if ema is None else ema
    final = step >= config.train.num_steps
    start = time.perf_counter()
    metrics: dict[str, Any] = {}
    for num_steps in config.eval.get("sampler_steps", ()) or (None,):
        variant = run if num_steps is None else sampler_variant(run, int(num_steps))
        steps = "" if num_steps is None else f"_steps{int(num_steps)}"
        for setting in eval_settings(config):
            if not final and setting.num_samples > config.eval.num_samples:
                continue
            row = _evaluate_row(variant, evaluator, step, setting, which, suffix=steps)
            where = f"@{setting.name}" if setting.name else ""
            metrics.update({f"{k}{steps}{where}": v for k, v in row.items()})
    metrics["eval_seconds"] = time.perf_counter() - start
    log.info("step %d evaluation: %s", step, metrics)
    return metrics


def sampler_variant(run: Any, num_steps: int) -> Any:
    """``run`` sampling with ``sampler.num_steps = num_steps`` (same state; cached per count)."""
    from nnx_train import build

    variants = run.__dict__.setdefault("_sampler_variants", {})
    if num_steps not in variants:
        variant = copy.copy(run)
        variant.config = run.config.copy_and_resolve_references()
        variant.config.sampler.num_steps = num_steps
        variant.task = build.build_task(variant.config, data_shape=run.data_shape)
        variant.compile()
        variants[num_steps] = variant
    variants[num_steps].state = run.state
    return variants[num_steps]


def _evaluate_row(
    run: Any, evaluator: Any, step: int, setting: EvalSetting, ema: float | str, *, suffix: str
) -> dict:
    """Samples ``setting.num_samples`` class-balanced images from the EMA ``ema`` and scores
    them; ``suffix`` names the sampler variant in the samples file."""
    from nnx_fid import balanced_labels

    config = run.config.eval
    labels = balanced_labels(setting.num_samples, run.task.num_classes, seed=run.config.seed)
    batches = run.pixel_batches(
        ema,
        labels,
        batch_size=config.batch_size,
        seed=run.config.seed + 2,
        guidance_scale=setting.guidance_scale,
    )
    kept: list[np.ndarray] = []
    if config.save_samples:
        batches = _keeping(batches, kept)
    metrics = dict(evaluator(batches, labels))
    if config.save_samples:
        suffix += f"_{setting.name.replace('/', '_')}" if setting.name else ""
        path = os.path.join(run.workdir, f"eval_samples_{step:08d}{suffix}.npz")
        if run.is_main:
            save_sample_batch(path, np.concatenate(kept), labels)
        metrics["samples_file"] = path
    return metrics


def _keeping(batches: Iterator[np.ndarray], kept: list[np.ndarray]) -> Iterator[np.ndarray]:
    """Passes ``batches`` through, keeping each one in ``kept``."""
    for batch in batches:
        kept.append(batch)
        yield batch


def save_sample_batch(path: str, pixels: np.ndarray, labels: np.ndarray) -> None:
    """Writes evaluated samples as an ADM sample batch: ``arr_0`` uint8 ``(N, H, W, C)``
    quantised by ``nnx_fid.to_uint8`` (as the FID evaluator does), ``arr_1`` labels; the
    offline ``tools/evaluate_samples.py`` then scores exactly what the run scored."""
    from nnx_fid import to_uint8

    with open(path + ".tmp", "wb") as handle:
        np.savez(handle, arr_0=np.asarray(to_uint8(pixels)), arr_1=np.asarray(labels))
    os.replace(path + ".tmp", path)
