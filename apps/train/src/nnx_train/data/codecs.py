"""What one stored record holds and how it becomes an ``{"x", "y"}`` record.

The container readers (ArrayRecord, WebDataset tar shards) hand a codec the stored bytes of
one record; the codec decodes them and augments the result once per record and epoch:

- `PixelCodec`: an encoded image (JPEG, PNG, ...) -> ADM centre crop (`adm_center_crop`)
  -> ``(R, R, 3)`` uint8; optional random horizontal flips. uint8 goes to the device and is
  mapped to [-1, 1] there (``nnx_fid.from_uint8``, the one conversion).
- `LatentCodec`: a ``.npy`` latent, stored ``(C, H, W)`` as EDM2 writes it -> ``(H, W, C)``
  float32; the posterior sample and the normalisation ``(z - shift) * scale`` happen in
  `LatentCodec.augment` (see `nnx_train.data.LatentSource`).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from nnx_train.data.imagefolder import adm_center_crop
from nnx_train.errors import DataError

__all__ = ["Codec", "EncodedBytes", "LatentCodec", "PixelCodec", "per_channel"]

_POSTERIORS = ("mean_std", "sample")


class Codec(Protocol):
    """Turns the stored bytes of one record into its ``x`` (what the readers consume).

    ``shape(first, name)`` is the ``(H, W, C)`` of every ``x`` after `augment` (it may read
    the first record and is called once, before any `augment`); ``name`` identifies the
    record in error messages.
    """

    def shape(self, first: bytes, name: str) -> tuple[int, int, int]: ...

    def decode(self, payload: bytes, name: str) -> Any: ...

    def augment(self, record: dict, rng: np.random.Generator) -> dict: ...


class PixelCodec:
    """Encoded image bytes -> ``(R, R, 3)`` uint8 ADM centre crop; optional flips.

    Args:
      resolution: side ``R`` of the square crop.
      horizontal_flip: flip left-right with probability 1/2 in `augment`.
    """

    def __init__(self, *, resolution: int, horizontal_flip: bool = False) -> None:
        self.resolution = int(resolution)
        self.horizontal_flip = bool(horizontal_flip)

    def shape(self, first: bytes, name: str) -> tuple[int, int, int]:
        """``(R, R, 3)``; the first record is not needed."""
        del first, name
        return (self.resolution, self.resolution, 3)

    def decode(self, payload: bytes, name: str) -> np.ndarray:
        """Decodes and crops one image; ``name`` identifies it in errors."""
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(payload)) as image:
                return adm_center_crop(image, self.resolution)
        except (OSError, UnidentifiedImageError, ValueError) as err:
            raise DataError(
                f"Cannot decode the image of {name} ({err}); rewrite or drop that record."
            ) from err

    def augment(self, record: dict, rng: np.random.Generator) -> dict:
        """Random horizontal flip (probability 1/2) when enabled."""
        if self.horizontal_flip and rng.random() < 0.5:
            return {"x": np.ascontiguousarray(record["x"][:, ::-1]), "y": record["y"]}
        return record


class EncodedBytes:
    """Hands the stored bytes on undecoded (tools that decode themselves, e.g.
    ``tools/extract_latents.py``); ``shape`` is unknown: ``(0, 0, 0)``."""

    def shape(self, first: bytes, name: str) -> tuple[int, int, int]:
        del first, name
        return (0, 0, 0)

    def decode(self, payload: bytes, name: str) -> bytes:
        del name
        return payload

    def augment(self, record: dict, rng: np.random.Generator) -> dict:
        del rng
        return record


class LatentCodec:
    """``.npy`` bytes of a ``(C, H, W)`` latent -> ``(H, W, C)`` float32, sampled in `augment`.

    Args:
      posterior: ``"mean_std"`` (mean and std stacked along channels, a fresh sample
        ``mean + std * eps`` per epoch, EDM2's format) or ``"sample"`` (one latent).
      shift: subtracted from the sample (scalar or one value per channel).
      scale: multiplies the shifted sample (scalar or one value per channel).
    """

    def __init__(
        self,
        *,
        posterior: str = "mean_std",
        shift: float | Sequence[float] = 0.0,
        scale: float | Sequence[float] = 1.0,
    ) -> None:
        if posterior not in _POSTERIORS:
            raise DataError(f"Unknown latent posterior {posterior!r}; use one of {_POSTERIORS}.")
        self.posterior = posterior
        self._shift_value, self._scale_value = shift, scale
        self._shift = self._scale = np.zeros((1,), np.float32)

    def shape(self, first: bytes, name: str) -> tuple[int, int, int]:
        """``(H, W, C)`` of the model-space latent, read from the first record."""
        return self.model_shape(self.decode(first, name).shape, name)

    def model_shape(self, raw_shape: tuple[int, ...], name: str) -> tuple[int, int, int]:
        """``(H, W, C)`` after `augment` of a decoded ``raw_shape`` ``(H, W, C or 2C)``;
        fixes the per-channel shift and scale (call before `augment`)."""
        height, width, channels = raw_shape
        if self.posterior == "mean_std":
            if channels % 2:
                raise DataError(
                    f"{name} has {channels} channels, but posterior='mean_std' needs an even "
                    "number (mean and std stacked). Set data.posterior='sample'."
                )
            channels //= 2
        self._shift = per_channel(self._shift_value, channels, "shift")
        self._scale = per_channel(self._scale_value, channels, "scale")
        return (height, width, channels)

    def decode(self, payload: bytes, name: str) -> np.ndarray:
        """``.npy`` bytes -> ``(H, W, C)`` float32 (the stored array is ``(C, H, W)``)."""
        try:
            array = np.load(io.BytesIO(payload), allow_pickle=False)
        except (OSError, ValueError, EOFError) as err:
            raise DataError(
                f"Corrupt latent {name} ({type(err).__name__}: {err}); re-extract it with "
                "tools/extract_latents.py."
            ) from err
        if array.ndim != 3:
            raise DataError(f"Latent {name} has shape {array.shape}; latents are stored (C, H, W).")
        return np.transpose(array.astype(np.float32, copy=False), (1, 2, 0))

    def augment(self, record: dict, rng: np.random.Generator) -> dict:
        """Draws the posterior sample (``mean_std``) and normalises it."""
        raw = record["x"]
        if self.posterior == "mean_std":
            mean, std = np.split(raw, 2, axis=-1)
            latent = mean + std * rng.standard_normal(mean.shape, dtype=np.float32)
        else:
            latent = raw
        return {"x": ((latent - self._shift) * self._scale).astype(np.float32), "y": record["y"]}


def per_channel(value: float | Sequence[float], channels: int, name: str) -> np.ndarray:
    """``value`` as a float32 vector of 1 or ``channels`` entries (``data.<name>`` in errors)."""
    array = np.asarray(value, dtype=np.float32).reshape(-1)
    if array.size not in (1, channels):
        raise DataError(
            f"data.{name} has {array.size} values but the latents have {channels} channels; "
            "give one value or one per channel."
        )
    return array
