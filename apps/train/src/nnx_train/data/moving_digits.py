"""Moving digits: class-conditional clips of one 8x8 digit bouncing in a larger frame.

Each clip is ``num_frames`` frames of ``frame_size x frame_size x 1`` pixels in [-1, 1]
(background -1); the digit (scikit-learn's 8x8 digits, `nnx_train.data.digits`) starts at a
random position on a grid of ``grid`` pixels and moves with a constant velocity per axis of
``grid`` or ``2 * grid`` pixels per frame, reflected at the walls (a bounce). With ``grid``
equal to a network's patch size the digit always covers whole patches, in the same place
inside them. The label is the digit's class. Everything is a function of the record
index and ``seed``: clip ``i`` shows digit ``i // motions_per_digit`` of the split, with its
own start and velocity, so a resumed run and every process read the same clips.

This is the embedded video data set of the Diffusion Forcing recipe (issue: video generation
on 2 CPU cores); the motion makes frames depend on earlier frames, which a generator of
single frames cannot learn.
"""

from __future__ import annotations

import numpy as np

from nnx_train.data.digits import DIGITS_CLASSES, load_digits_split

__all__ = ["MovingDigitsSource", "bounce_positions"]

DIGIT = 8
SPEEDS = (1, 2)
MOTIONS = ("random", "centred", "by_class")


def bounce_positions(start: int, velocity: int, num_frames: int, span: int) -> np.ndarray:
    """Integer positions ``(num_frames,)`` in ``[0, span]`` of a point moving at ``velocity``
    per frame from ``start``, reflected at 0 and ``span`` (``span`` >= 1)."""
    period = 2 * span
    raw = (start + velocity * np.arange(num_frames)) % period
    return np.where(raw > span, period - raw, raw).astype(np.int64)


class MovingDigitsSource:
    """Random-access source (Grain protocol): ``{"x": (F, S, S, 1) float32, "y": int32}``.

    Args:
      split: ``"train"`` or ``"heldout"`` part of the digits split.
      num_frames: frames per clip ``F``.
      frame_size: frame side ``S`` (> 8).
      motions_per_digit: clips per digit image (each with its own start and velocity).
      grid: positions and speeds are multiples of ``grid`` pixels (it must divide
        ``frame_size - 8``).
      motion: ``"random"``: a random start and velocity per clip; ``"centred"``: the digit
        starts in the middle of the frame (on the grid), the velocity is random;
        ``"by_class"``: every digit of a class follows one path, from the middle (rounded
        down to the grid) diagonally
        at ``grid`` pixels per frame in a direction set by the class (bit 0: down / up,
        bit 1: right / left), and a clip is that path's frames from a random phase (so a
        window sliding along a longer rollout sees the clips it was trained on). The last
        two leave the generator fewer positions to choose between: the choice a small model
        fails to make consistently across the tokens of a frame (apps/train/README.md,
        "Video").
      holdout_fraction, split_seed: the digits split (`nnx_train.data.load_digits_split`).
      seed: seed of the motions.
    """

    num_classes: int = DIGITS_CLASSES

    def __init__(
        self,
        *,
        split: str = "train",
        num_frames: int = 4,
        frame_size: int = 16,
        motions_per_digit: int = 8,
        grid: int = 1,
        motion: str = "random",
        holdout_fraction: float = 0.15,
        split_seed: int = 0,
        seed: int = 0,
    ) -> None:
        if frame_size <= DIGIT or num_frames < 1 or motions_per_digit < 1:
            raise ValueError(
                f"need frame_size > {DIGIT}, num_frames >= 1, motions_per_digit >= 1; got "
                f"{frame_size}, {num_frames}, {motions_per_digit}"
            )
        if grid < 1 or (frame_size - DIGIT) % grid:
            raise ValueError(
                f"grid={grid} must be >= 1 and divide frame_size - {DIGIT} = {frame_size - DIGIT}"
            )
        parts = load_digits_split(holdout_fraction=holdout_fraction, split_seed=split_seed)
        if split not in ("train", "heldout"):
            raise ValueError(f"Unknown digits split {split!r}; use 'train' or 'heldout'.")
        self._images = parts.train_images if split == "train" else parts.heldout_images
        self._labels = parts.train_labels if split == "train" else parts.heldout_labels
        self.num_frames, self.frame_size = num_frames, frame_size
        self.motions_per_digit, self.grid, self.seed = motions_per_digit, grid, seed
        if motion not in MOTIONS:
            raise ValueError(f"motion={motion!r}; valid: {', '.join(MOTIONS)}")
        self.motion_rule = motion
        self.shape = (num_frames, frame_size, frame_size, 1)

    def __len__(self) -> int:
        return len(self._labels) * self.motions_per_digit

    def motion(self, index: int) -> np.ndarray:
        """``(F, 2)`` integer (row, column) top-left positions of clip ``index``."""
        rng = np.random.default_rng([self.seed, index])
        span = self.frame_size - DIGIT
        start = rng.integers(0, span // self.grid + 1, size=2) * self.grid
        velocity = rng.choice(SPEEDS, size=2) * rng.choice((-1, 1), size=2) * self.grid
        if self.motion_rule != "random":
            start = np.full(2, (span // 2) // self.grid * self.grid)
        phase = 0
        if self.motion_rule == "by_class":
            label = int(self._labels[index // self.motions_per_digit])
            velocity = np.asarray([1 - 2 * (label & 1), 1 - 2 * ((label >> 1) & 1)]) * self.grid
            phase = int(rng.integers(0, 2 * span // self.grid))  # one period of the bounce
        frames = phase + self.num_frames
        rows = bounce_positions(int(start[0]), int(velocity[0]), frames, span)[phase:]
        cols = bounce_positions(int(start[1]), int(velocity[1]), frames, span)[phase:]
        return np.stack([rows, cols], axis=1)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        digit = index // self.motions_per_digit
        clip = np.full(self.shape, -1.0, np.float32)
        for frame, (row, col) in enumerate(self.motion(index)):
            clip[frame, row : row + DIGIT, col : col + DIGIT] = self._images[digit]
        return {"x": clip, "y": self._labels[digit]}

    def __repr__(self) -> str:
        return f"MovingDigitsSource(len={len(self)}, shape={self.shape})"
