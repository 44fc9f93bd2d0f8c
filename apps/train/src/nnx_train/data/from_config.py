"""``config.data`` -> a record source, and the check that the data fits ``config.model``."""

from __future__ import annotations

from ml_collections import ConfigDict

from nnx_train import data as sources
from nnx_train.constructors import section_kwargs, unknown_name
from nnx_train.errors import ConfigError
from nnx_train.networks import MODEL_INPUT_KEYS

__all__ = ["DATA_NAMES", "build_data_source", "check_data_fits_model"]

DATA_NAMES = (
    "digits",
    "moving_digits",
    "synthetic",
    "latents",
    "imagefolder",
    "arrayrecord",
    "webdataset",
)
DATA_CONTENTS = ("pixels", "latents")


def _require_path(data: ConfigDict, what: str) -> None:
    if not data.path:
        raise ConfigError(f"data.path is empty: set --config.data.path to {what}.")


def build_data_source(config: ConfigDict, *, split: str = "train") -> sources.RecordSource:
    """Record source of ``config.data`` (`nnx_train.data`); latents are normalised with
    ``config.autoencoder.shift/scale``."""
    data, autoencoder = config.data, config.autoencoder
    match data.name:
        case "digits":
            return sources.DigitsSource(
                split=split, holdout_fraction=data.holdout_fraction, split_seed=data.split_seed
            )
        case "moving_digits":
            return sources.MovingDigitsSource(split=split, **section_kwargs(data))
        case "synthetic":
            return sources.SyntheticSource(**section_kwargs(data))
        case "latents":
            _require_path(data, "a latent folder or zip written by tools/extract_latents.py")
            return sources.LatentSource(
                **section_kwargs(data),
                shift=tuple(autoencoder.shift),
                scale=tuple(autoencoder.scale),
            )
        case "imagefolder":
            _require_path(data, "an ImageFolder root (root/<class>/<image>)")
            return sources.ImageFolderSource(**section_kwargs(data))
        case "arrayrecord" | "webdataset":
            return _build_container_source(data, autoencoder)
        case _:
            raise unknown_name("data.name", data.name, DATA_NAMES)


def _build_container_source(data: ConfigDict, autoencoder: ConfigDict) -> sources.RecordSource:
    """ArrayRecord / WebDataset sources: ``data.content`` picks the codec of the records."""
    _require_path(
        data,
        f"the {data.name} files (a folder, a glob or, for webdataset, a range such as "
        "/data/shard-{000000..000146}.tar)",
    )
    match data.content:
        case "pixels":
            codec = sources.PixelCodec(
                resolution=data.resolution, horizontal_flip=data.horizontal_flip
            )
        case "latents":
            if data.horizontal_flip:
                raise ConfigError(
                    f"data.horizontal_flip=True with {data.name} latent records: flips need the "
                    "latents of flipped images; extract a latent folder with "
                    "tools/extract_latents.py --flip (data.name='latents') or set "
                    "data.horizontal_flip=False."
                )
            codec = sources.LatentCodec(
                posterior=data.posterior,
                shift=tuple(autoencoder.shift),
                scale=tuple(autoencoder.scale),
            )
        case _:
            raise unknown_name("data.content", data.content, DATA_CONTENTS)
    codec_keys = ("name", "content", "resolution", "horizontal_flip", "posterior")
    kwargs = section_kwargs(data, drop=codec_keys)
    if data.name == "arrayrecord":
        return sources.ArrayRecordSource(codec=codec, **kwargs)
    return sources.WebDatasetSource(codec=codec, **kwargs)


def check_data_fits_model(shape: tuple[int, ...], num_classes: int, config: ConfigDict) -> None:
    """Raises a `ConfigError` when the data's shape or classes do not fit the model.

    The network's input keys come from `MODEL_INPUT_KEYS` (one entry per ``model.name``).

    Args:
      shape: ``(H, W, C)`` of one record in model space (after any latent encoder), or
        ``(F, H, W, C)`` for clips (the frames are checked).
      num_classes: number of classes of the data.
      config: the run config.
    """
    model = config.model
    height, width, channels = shape[-3:]
    side_key, channels_key = MODEL_INPUT_KEYS.get(model.name) or (None, None)
    size = model.get(side_key, None) if side_key else None
    if size is not None and (height, width) != (size, size):
        raise ConfigError(
            f"The data has {height}x{width} inputs but the model is built for {size}x{size} "
            f"(model.{side_key}); set it to {height} (or change the data)."
        )
    patch = model.get("patch_size", None)
    if patch and (height % patch or width % patch):
        raise ConfigError(
            f"Image size {height}x{width} is not divisible by model.patch_size={patch}; choose a "
            "patch size that divides it."
        )
    expected = model.get(channels_key, None) if channels_key else None
    if expected is not None and channels != expected:
        raise ConfigError(
            f"The data has {channels} channels but the model takes {expected} "
            f"(model.{channels_key}); set it to {channels}."
        )
    model_classes = model.get("num_classes", None)
    if model_classes is not None and num_classes > model_classes:
        raise ConfigError(
            f"The data has {num_classes} classes but model.num_classes={model_classes}; labels "
            "would be out of range. Set model.num_classes to at least the data's classes."
        )
