"""Evaluation of generated moving-digit clips: per-frame class accuracy and motion consistency.

For every frame the digit is located as the 8x8 window of largest brightness (box sum of
``x + 1`` over all window positions), cropped and classified by the digits classifier of
`nnx_train.classifier` (trained on the real training split with shifted copies, as for the
image default). Motion is read from each frame's brightness centroid: per clip its
displacements from the first frame are compared with those of the best bounce path
(`nnx_train.data.moving_digits.bounce_positions`, every start and speed of the data set
tried per axis); a frame is consistent when both axes are within half a pixel.

Metrics (``W`` = the training clip length, ``L`` = the generated length):

- ``frame_accuracy`` / ``motion_consistency``: over the first ``W`` frames;
- ``rollout_frame_accuracy`` / ``rollout_motion_consistency``: over all ``L`` frames (a
  rollout beyond the training horizon when ``L > W``, Chen et al. 2024, sec. 4);
- ``real_*``: the same measures on held-out real clips of length ``L``: what a perfect
  generator scores with this classifier and locator.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import numpy as np

from nnx_train.data.moving_digits import DIGIT, SPEEDS, MovingDigitsSource, bounce_positions

__all__ = ["VideoDigitsEvaluator", "centroids", "locate_digits", "motion_consistency"]


def locate_digits(frames: np.ndarray) -> np.ndarray:
    """Top-left ``(row, col)`` of the brightest 8x8 window: ``(N, S, S, 1)`` -> ``(N, 2)``."""
    mass = np.asarray(frames, np.float64)[..., 0] + 1.0
    integral = np.pad(mass.cumsum(1).cumsum(2), ((0, 0), (1, 0), (1, 0)))
    d = DIGIT
    boxes = (
        integral[:, d:, d:] - integral[:, :-d, d:] - integral[:, d:, :-d] + integral[:, :-d, :-d]
    )
    flat = boxes.reshape(len(boxes), -1).argmax(axis=1)
    return np.stack(np.unravel_index(flat, boxes.shape[1:]), axis=1)


def centroids(frames: np.ndarray) -> np.ndarray:
    """Brightness centroid ``(row, col)`` of each frame: ``(N, S, S, 1)`` -> ``(N, 2)``.

    The digit is the same image in every frame of a clip, so its centroid moves exactly as
    its top-left corner, shifted by a constant: displacements of the centroid are the
    digit's displacements, whatever blank margin the digit image has. Pixels are weighted
    by ``max(x, 0)`` (x in [-1, 1], background -1).
    """
    # Only pixels brighter than mid-grey count: background noise of a sample does not pull
    # the centroid towards the frame's centre.
    mass = np.clip(np.asarray(frames, np.float64)[..., 0], 0.0, None)
    total = np.maximum(mass.sum(axis=(1, 2)), 1e-9)
    grid = np.arange(mass.shape[1], dtype=np.float64)
    rows = (mass.sum(axis=2) * grid).sum(axis=1) / total
    cols = (mass.sum(axis=1) * grid).sum(axis=1) / total
    return np.stack([rows, cols], axis=1)


def motion_consistency(
    points: np.ndarray, span: int, *, tolerance: float = 0.5, grid: int = 1
) -> np.ndarray:
    """Per clip, the share of frames after the first that follow the best bounce path.

    A bounce path is `bounce_positions` for some start in ``[0, span]`` on the data's grid
    and velocity of the data set; a frame is consistent when, on both axes, its displacement from the first
    frame is within ``tolerance`` pixels of the path's (the best path is chosen per axis).

    Args:
      points: ``(N, L, 2)`` per-frame centroids (`centroids`).
      span: the largest top-left position (frame size - 8).
      tolerance: pixels.
      grid: the data's position grid (`MovingDigitsSource`'s ``grid``).

    Returns:
      ``(N,)`` in [0, 1].
    """
    num, length, _ = points.shape
    if length < 2:
        return np.ones(num)
    velocities = [s * sign * grid for s in SPEEDS for sign in (-1, 1)]
    paths = np.stack(
        [
            bounce_positions(start, v, length, span) - start
            for start in range(0, span + 1, grid)
            for v in velocities
        ]
    )  # (P, L) displacements of every candidate path
    moved = points - points[:, :1]  # (N, L, 2)
    ok = np.ones((num, length - 1), bool)
    for axis in range(2):
        hits = np.abs(paths[None, :, 1:] - moved[:, None, 1:, axis]) <= tolerance  # (N, P, L-1)
        best = hits.sum(axis=2).argmax(axis=1)
        ok &= hits[np.arange(num), best]
    return ok.mean(axis=1)


class VideoDigitsEvaluator:
    """Per-frame accuracy and motion consistency of generated clips ``(b, L, S, S, 1)``.

    Args:
      window: the training clip length ``W`` (frames scored as "within the horizon").
      frame_size: ``S``.
      grid: the data's position grid.
      motion: the data's motion rule (real reference clips are made with it).
      holdout_fraction, split_seed: the digits split of the data.
      classifier_steps: optimiser steps of the classifier.
      seed: classifier seed.
    """

    def __init__(
        self,
        *,
        window: int,
        frame_size: int,
        grid: int = 1,
        motion: str = "random",
        holdout_fraction: float = 0.15,
        split_seed: int = 0,
        classifier_steps: int = 400,
        seed: int = 0,
    ) -> None:
        from nnx_train.classifier import classifier_outputs, train_classifier
        from nnx_train.data.digits import load_digits_split

        start = time.perf_counter()
        split = load_digits_split(holdout_fraction=holdout_fraction, split_seed=split_seed)
        classifier = train_classifier(
            split.train_images, split.train_labels, num_steps=classifier_steps, seed=seed
        )
        self._outputs = classifier_outputs(classifier)
        self.window, self.frame_size, self.grid = window, frame_size, grid
        self.motion = motion
        self.holdout_fraction, self.split_seed = holdout_fraction, split_seed
        self.setup_seconds = time.perf_counter() - start

    def _scores(self, clips: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        num, length = clips.shape[:2]
        frames = clips.reshape(num * length, *clips.shape[2:])
        positions = locate_digits(frames)
        crops = np.stack(
            [f[r : r + DIGIT, c : c + DIGIT] for f, (r, c) in zip(frames, positions, strict=True)]
        )
        logits, _ = self._outputs(crops)
        hits = (np.argmax(logits, -1) == np.repeat(labels, length)).reshape(num, length)
        span = self.frame_size - DIGIT
        window = min(self.window, length)
        points = centroids(frames).reshape(num, length, 2)
        return {
            "frame_accuracy": float(hits[:, :window].mean()),
            "motion_consistency": float(
                motion_consistency(points[:, :window], span, grid=self.grid).mean()
            ),
            "rollout_frame_accuracy": float(hits.mean()),
            "rollout_motion_consistency": float(
                motion_consistency(points, span, grid=self.grid).mean()
            ),
        }

    def real_reference(self, length: int, count: int = 256) -> dict[str, float]:
        """The measures on ``count`` held-out real clips of ``length`` frames."""
        source = MovingDigitsSource(
            split="heldout",
            num_frames=length,
            frame_size=self.frame_size,
            grid=self.grid,
            motion=self.motion,
            holdout_fraction=self.holdout_fraction,
            split_seed=self.split_seed,
            seed=1,
        )
        index = np.linspace(0, len(source) - 1, min(count, len(source))).astype(int)
        records = [source[int(i)] for i in index]
        clips = np.stack([r["x"] for r in records])
        return self._scores(clips, np.asarray([r["y"] for r in records]))

    def __call__(self, batches: Iterable[np.ndarray], labels: np.ndarray) -> dict[str, float]:
        """Metrics of generated clips ``(b, L, S, S, 1)`` in [-1, 1] made for ``labels``."""
        clips = np.clip(np.concatenate(list(batches)).astype(np.float32), -1.0, 1.0)
        metrics = self._scores(clips, np.asarray(labels))
        real = self.real_reference(clips.shape[1])
        metrics.update({f"real_{key}": value for key, value in real.items()})
        metrics.update({"num_generated": int(len(clips)), "generated_frames": int(clips.shape[1])})
        return metrics
