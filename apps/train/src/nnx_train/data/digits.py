"""scikit-learn's 8x8 digits: the one image dataset that ships inside an installed wheel.

1797 grey-scale images of 8x8 pixels with integer values 0..16 and labels 0..9. They are mapped
to [-1, 1] (``x / 8 - 1``), NHWC with one channel, and split once, stratified by class, into a
training part (the diffusion model and the evaluation classifier learn from it) and a held-out
part (the reference of the Frechet distance and the classifier's test set).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

__all__ = ["DigitsSource", "DigitsSplit", "load_digits_split"]

DIGITS_SHAPE: tuple[int, int, int] = (8, 8, 1)
DIGITS_CLASSES: int = 10


@dataclasses.dataclass(frozen=True)
class DigitsSplit:
    """The two parts of the digits dataset.

    Attributes:
      train_images: ``(N_train, 8, 8, 1)`` float32 in [-1, 1].
      train_labels: ``(N_train,)`` int32 in [0, 10).
      heldout_images: ``(N_heldout, 8, 8, 1)`` float32 in [-1, 1].
      heldout_labels: ``(N_heldout,)`` int32 in [0, 10).
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    heldout_images: np.ndarray
    heldout_labels: np.ndarray


@functools.lru_cache(maxsize=4)
def load_digits_split(*, holdout_fraction: float = 0.15, split_seed: int = 0) -> DigitsSplit:
    """Loads the digits and splits them, stratified by class, with a fixed seed.

    Args:
      holdout_fraction: share of the 1797 images kept out of training, in (0, 1).
      split_seed: seed of the split (the same seed always gives the same split).

    Returns:
      The `DigitsSplit` (arrays are read-only; cached per arguments).
    """
    if not 0.0 < holdout_fraction < 1.0:
        raise ValueError(
            f"holdout_fraction must be in (0, 1), got {holdout_fraction}; 0.15 keeps 270 images "
            "out of training."
        )
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = (bunch.images.astype(np.float32) / 8.0 - 1.0)[..., None]
    labels = bunch.target.astype(np.int32)
    train_x, heldout_x, train_y, heldout_y = train_test_split(
        images, labels, test_size=holdout_fraction, random_state=split_seed, stratify=labels
    )
    arrays = [np.ascontiguousarray(a) for a in (train_x, train_y, heldout_x, heldout_y)]
    for array in arrays:
        array.setflags(write=False)
    return DigitsSplit(*arrays)


class DigitsSource:
    """Random-access source (Grain protocol) over one part of the digits split.

    Records are ``{"x": (8, 8, 1) float32 in [-1, 1], "y": int32 label}``.
    """

    shape: tuple[int, int, int] = DIGITS_SHAPE
    num_classes: int = DIGITS_CLASSES

    def __init__(
        self, *, split: str = "train", holdout_fraction: float = 0.15, split_seed: int = 0
    ) -> None:
        """Args:
        split: ``"train"`` or ``"heldout"``.
        holdout_fraction: see `load_digits_split`.
        split_seed: see `load_digits_split`.
        """
        parts = load_digits_split(holdout_fraction=holdout_fraction, split_seed=split_seed)
        match split:
            case "train":
                self._images, self._labels = parts.train_images, parts.train_labels
            case "heldout":
                self._images, self._labels = parts.heldout_images, parts.heldout_labels
            case _:
                raise ValueError(f"Unknown digits split {split!r}; use 'train' or 'heldout'.")

    def __len__(self) -> int:
        return len(self._labels)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return {"x": self._images[index], "y": self._labels[index]}

    def __repr__(self) -> str:
        return f"DigitsSource(len={len(self)})"
