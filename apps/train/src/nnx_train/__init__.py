"""nnx_train: the trainer of the DiT-family recipes (SiT, REPA, LightningDiT, MeanFlow, EDM2,
RAE) and its embedded digits default.

Run it with ``uv run apps/train [--config FILE[:arg]] [--workdir DIR] [--config.a.b=value]``;
from Python, ``train(load_config(path, overrides), workdir)``.
"""

from nnx_train.checkpointing import Checkpointer
from nnx_train.classifier import DigitsClassifier, train_classifier
from nnx_train.cli import load_config, main, parse_args
from nnx_train.data import (
    DigitsSource,
    ImageFolderSource,
    LatentSource,
    SyntheticSource,
    adm_center_crop,
    list_image_folder,
    load_digits_split,
    make_iterator,
)
from nnx_train.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    NonFiniteError,
    TrainError,
)
from nnx_train.evaluation import DigitsEvaluator
from nnx_train.state import TrainState
from nnx_train.train import train

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "Checkpointer",
    "ConfigError",
    "DataError",
    "DigitsClassifier",
    "DigitsEvaluator",
    "DigitsSource",
    "ImageFolderSource",
    "LatentSource",
    "NonFiniteError",
    "SyntheticSource",
    "TrainError",
    "TrainState",
    "adm_center_crop",
    "list_image_folder",
    "load_config",
    "load_digits_split",
    "main",
    "make_iterator",
    "parse_args",
    "train",
    "train_classifier",
]
