"""Datasets of the trainer: sources of ``{"x", "y"}`` records and the Grain pipeline."""

from nnx_train.data.digits import DigitsSource, DigitsSplit, load_digits_split
from nnx_train.data.imagefolder import ImageFolderSource, adm_center_crop, list_image_folder
from nnx_train.data.latents import LatentSource
from nnx_train.data.pipeline import RecordSource, make_iterator
from nnx_train.data.synthetic import SyntheticSource

__all__ = [
    "DigitsSource",
    "DigitsSplit",
    "ImageFolderSource",
    "LatentSource",
    "RecordSource",
    "SyntheticSource",
    "adm_center_crop",
    "list_image_folder",
    "load_digits_split",
    "make_iterator",
]
