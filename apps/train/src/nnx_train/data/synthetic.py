"""Synthetic class-conditional images for tests and smoke runs of the full-size recipes.

Each record is a deterministic function of its index: a class-dependent mean pattern plus
Gaussian noise, so a model can learn something and two runs see identical data.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SyntheticSource"]


class SyntheticSource:
    """Random-access source (Grain protocol) of ``num_examples`` synthetic images.

    Records are ``{"x": shape float32 (about unit scale), "y": int32 label}``; the label of
    index ``i`` is ``i % num_classes``.
    """

    def __init__(
        self,
        *,
        shape: tuple[int, int, int] = (8, 8, 4),
        num_classes: int = 10,
        num_examples: int = 256,
        seed: int = 0,
    ) -> None:
        """Args:
        shape: ``(H, W, C)`` of one record.
        num_classes: number of labels.
        num_examples: dataset length.
        seed: seed of the class patterns and of the per-record noise.
        """
        if num_examples <= 0:
            raise ValueError(f"num_examples must be positive, got {num_examples}.")
        if num_classes <= 0:
            raise ValueError(f"num_classes must be positive, got {num_classes}.")
        self.shape = tuple(int(s) for s in shape)
        self.num_classes = int(num_classes)
        self._num_examples = int(num_examples)
        self._seed = int(seed)
        patterns = np.random.default_rng(seed).standard_normal((num_classes, *self.shape))
        self._patterns = patterns.astype(np.float32)

    def __len__(self) -> int:
        return self._num_examples

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        label = int(index) % self.num_classes
        noise = np.random.default_rng((self._seed, int(index))).standard_normal(self.shape)
        x = 0.8 * self._patterns[label] + 0.6 * noise.astype(np.float32)
        return {"x": x.astype(np.float32), "y": np.int32(label)}

    def __repr__(self) -> str:
        return f"SyntheticSource(shape={self.shape}, len={len(self)})"
