"""What every recipe constructor receives: the config, the data shape, the network factory
and the class count (with the null label derived once from it)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from flax import nnx
from ml_collections import ConfigDict

__all__ = ["RecipeInputs"]


@dataclasses.dataclass(frozen=True)
class RecipeInputs:
    """Inputs of a recipe constructor.

    Attributes:
      config: the run config (``config.objective`` is the recipe's section).
      data_shape: ``(H, W, C)`` (``(F, H, W, C)`` for clips) of one example in model space.
      make_network: zero-argument constructor of ``config.model``.
      num_classes: ``model.num_classes`` (or ``data.num_classes`` when the model has none).
    """

    config: ConfigDict
    data_shape: tuple[int, ...]
    make_network: Callable[[], nnx.Module]
    num_classes: int

    @property
    def null_label(self) -> int:
        """The unconditional label of class dropout and guidance: ``num_classes``."""
        return self.num_classes
