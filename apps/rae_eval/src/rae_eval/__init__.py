"""rae_eval: standalone evaluation of Representation Autoencoders (RAE), published checkpoints to ADM metrics.

Run it as ``uv run apps/rae_eval --config apps/rae_eval/configs/<name>.py --workdir runs/x``;
the pieces below are importable for notebooks and tests.
"""

from rae_eval.autoencoder import RepresentationAutoencoder, resize_bicubic_torch
from rae_eval.checkpoints import (
    CheckpointFile,
    CheckpointMismatchError,
    MissingCheckpointError,
    fetch_command,
    require_files,
)
from rae_eval.generation import GenerationReport, generate_shards
from rae_eval.image_folder import list_images, load_images
from rae_eval.image_metrics import psnr, ssim
from rae_eval.run import TASKS, run
from rae_eval.shards import FingerprintMismatchError, ShardStore

__version__ = "0.1.0"

__all__ = [
    "TASKS",
    "CheckpointFile",
    "CheckpointMismatchError",
    "FingerprintMismatchError",
    "GenerationReport",
    "MissingCheckpointError",
    "RepresentationAutoencoder",
    "ShardStore",
    "fetch_command",
    "generate_shards",
    "list_images",
    "load_images",
    "psnr",
    "require_files",
    "resize_bicubic_torch",
    "run",
    "ssim",
]
