"""Datasets of the trainer: sources of ``{"x", "y"}`` records and the Grain pipeline."""

from nnx_train.data.arrayrecord import ArrayRecordSource, list_array_record_files
from nnx_train.data.codecs import EncodedBytes, LatentCodec, PixelCodec
from nnx_train.data.digits import DigitsSource, DigitsSplit, load_digits_split
from nnx_train.data.encoded_images import IMAGE_FORMATS, EncodedImages
from nnx_train.data.example_proto import encode_example, parse_example
from nnx_train.data.imagefolder import ImageFolderSource, adm_center_crop, list_image_folder
from nnx_train.data.latents import LatentSource
from nnx_train.data.moving_digits import MovingDigitsSource
from nnx_train.data.pipeline import RecordSource, make_iterator
from nnx_train.data.synthetic import SyntheticSource
from nnx_train.data.tarshards import count_samples, expand_shards, read_samples
from nnx_train.data.webdataset import WebDatasetIterator, WebDatasetSource, make_source_iterator

__all__ = [
    "ArrayRecordSource",
    "DigitsSource",
    "DigitsSplit",
    "EncodedBytes",
    "EncodedImages",
    "IMAGE_FORMATS",
    "ImageFolderSource",
    "LatentCodec",
    "LatentSource",
    "PixelCodec",
    "RecordSource",
    "SyntheticSource",
    "WebDatasetIterator",
    "WebDatasetSource",
    "adm_center_crop",
    "count_samples",
    "encode_example",
    "expand_shards",
    "list_array_record_files",
    "list_image_folder",
    "load_digits_split",
    "MovingDigitsSource",
    "make_iterator",
    "make_source_iterator",
    "parse_example",
    "read_samples",
]
