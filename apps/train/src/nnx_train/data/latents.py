"""EDM2-compatible latent dataset: a folder or a zip of ``.npy`` files plus ``dataset.json``.

Layout (what ``tools/extract_latents.py`` and EDM2's ``dataset_tool.py encode`` write)::

    dataset.json                 {"labels": [["00000/img00000000.npy", 207], ...]}
    00000/img00000000.npy        float32 (C, H, W)   one latent per image, CHW as EDM2
    ...

A file holds either the VAE posterior's mean and standard deviation stacked along channels
(``posterior="mean_std"``, 2C channels, EDM2's format: a fresh sample ``mean + std * eps`` is
drawn every epoch) or one latent (``posterior="sample"``). The sample is then normalised as
``(z - shift) * scale`` with per-channel or scalar ``shift`` and ``scale`` (SD-VAE / DiT:
shift 0, scale 0.18215; EDM2: shift = raw_mean, scale = 0.5 / raw_std). Records are NHWC.

Horizontal flips (``horizontal_flip=True``) need latents of flipped images: flipping a latent
is not the latent of the flipped image. ``tools/extract_latents.py --flip`` stores the latent
of every flipped image as entry ``i + N`` and marks ``dataset.json`` with
``"flipped_copies": true``; the source then has ``N`` records and `augment` reads the flipped
copy with probability 1/2, drawn per epoch from the pipeline's generator (seeded by the
element's global position, so a resumed run makes the same choices). This is what
LightningDiT does with its ``latents`` / ``latents_flip`` pairs (``datasets/img_latent_dataset.py``)
and equals, up to the posterior sample, DiT's and RAE's pixel-space ``RandomHorizontalFlip``
followed by encoding.
"""

from __future__ import annotations

import io
import json
import os
import threading
import zipfile
from collections.abc import Sequence

import numpy as np

from nnx_train.data.codecs import LatentCodec
from nnx_train.errors import DataError

__all__ = ["LatentSource"]


class LatentSource:
    """Random-access source (Grain protocol) over an EDM2-format latent dataset.

    Records are ``{"x": (H, W, C) float32 normalised latent, "y": int32 label}`` after
    `augment` (which draws the posterior sample); `__getitem__` alone returns the raw file
    contents transposed to HWC.
    """

    def __init__(
        self,
        *,
        path: str,
        num_classes: int,
        posterior: str = "mean_std",
        shift: float | Sequence[float] = 0.0,
        scale: float | Sequence[float] = 1.0,
        horizontal_flip: bool = False,
    ) -> None:
        """Args:
        path: a folder containing ``dataset.json`` or a ``.zip`` of the same layout.
        num_classes: labels must lie in ``[0, num_classes)``.
        posterior: ``"mean_std"`` (2C channels, sampled per epoch) or ``"sample"``.
        shift: subtracted from the latent (scalar or one value per channel).
        scale: multiplies the shifted latent (scalar or one value per channel).
        horizontal_flip: read the stored flipped copy with probability 1/2 (needs a dataset
          written with ``--flip``; see the module doc).

        Raises:
          DataError: missing or malformed ``dataset.json``, no entries, a label out of range,
            a first file that cannot be read, or flips asked of a dataset without flipped
            copies.
        """
        self._codec = LatentCodec(posterior=posterior, shift=shift, scale=scale)
        self.path = str(path)
        self.posterior = posterior
        self.num_classes = int(num_classes)
        self._is_zip = self.path.endswith(".zip")
        self._local = threading.local()
        if not (os.path.isdir(self.path) or (self._is_zip and os.path.isfile(self.path))):
            raise DataError(
                f"Latent dataset {self.path!r} is neither a folder nor a .zip file. Create it "
                "with `python tools/extract_latents.py --source <images> --dest <path>`."
            )
        self.horizontal_flip = bool(horizontal_flip)
        self._files, self._labels = self._read_index()
        self._num_images = len(self._files) // 2 if self.horizontal_flip else len(self._files)
        raw = self._load(0)
        self._raw_shape = raw.shape
        self.shape = self._codec.model_shape(raw.shape, self._files[0])

    def _read_index(self) -> tuple[list[str], np.ndarray]:
        try:
            text = self._read_bytes("dataset.json").decode("utf-8")
        except (FileNotFoundError, KeyError) as err:
            raise DataError(
                f"{self.path} has no dataset.json; a latent dataset lists its files and labels "
                'there as {"labels": [["00000/img00000000.npy", 3], ...]}.'
            ) from err
        try:
            index = json.loads(text)
            entries = index["labels"]
            files = [str(name) for name, _ in entries]
            labels = np.asarray([label for _, label in entries], dtype=np.int64)
        except (ValueError, KeyError, TypeError) as err:
            raise DataError(
                f"{self.path}/dataset.json is malformed ({err}); expected "
                '{"labels": [[file, label], ...]} with integer labels.'
            ) from err
        if not files:
            raise DataError(
                f"Latent dataset {self.path} is empty (dataset.json lists no files). "
                "Point data.path at a dataset written by tools/extract_latents.py."
            )
        bad = np.flatnonzero((labels < 0) | (labels >= self.num_classes))
        if bad.size:
            i = int(bad[0])
            raise DataError(
                f"Label out of range in {self.path}/dataset.json: {files[i]} has label "
                f"{int(labels[i])}, but data.num_classes={self.num_classes} allows "
                f"0..{self.num_classes - 1} ({bad.size} such entries). Fix the labels or set "
                "data.num_classes and model.num_classes."
            )
        if self.horizontal_flip:
            self._check_flipped_copies(index, labels)
        return files, labels.astype(np.int32)

    def _check_flipped_copies(self, index: dict, labels: np.ndarray) -> None:
        half = len(labels) // 2
        if not index.get("flipped_copies") or len(labels) % 2:
            raise DataError(
                f"data.horizontal_flip needs flipped latents, but {self.path}/dataset.json does "
                "not list flipped copies; re-run tools/extract_latents.py with --flip (existing "
                "files are kept) or set --config.data.horizontal_flip=False."
            )
        if not np.array_equal(labels[:half], labels[half:]):
            raise DataError(
                f"{self.path}/dataset.json says flipped_copies but entry i + {half} does not "
                "carry the label of entry i; re-extract it with tools/extract_latents.py --flip."
            )

    def _read_bytes(self, name: str) -> bytes:
        if not self._is_zip:
            with open(os.path.join(self.path, name), "rb") as handle:
                return handle.read()
        archive = getattr(self._local, "archive", None)
        if archive is None:  # zipfile handles are not thread-safe: one per reader thread
            archive = self._local.archive = zipfile.ZipFile(self.path)
        return archive.read(name)

    def _load(self, index: int) -> np.ndarray:
        name = self._files[index]
        try:
            array = np.load(io.BytesIO(self._read_bytes(name)), allow_pickle=False)
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
            raise DataError(
                f"Corrupt latent file {name} in {self.path} ({type(err).__name__}: {err}). "
                "Delete it and re-run tools/extract_latents.py, which rewrites missing files."
            ) from err
        expected = getattr(self, "_raw_shape", None)
        if array.ndim != 3 or (
            expected is not None and array.shape[1:] + array.shape[:1] != expected
        ):
            raise DataError(
                f"Latent file {name} in {self.path} has shape {array.shape}; every file must be "
                "(C, H, W) with the same shape. Re-extract it with tools/extract_latents.py."
            )
        if not np.isfinite(array).all():
            raise DataError(
                f"Latent file {name} in {self.path} holds {int((~np.isfinite(array)).sum())} "
                "NaN/Inf value(s) (a diverged or damaged encoding). Delete it and re-run "
                "tools/extract_latents.py, which rewrites missing files."
            )
        return np.transpose(array.astype(np.float32, copy=False), (1, 2, 0))

    def __len__(self) -> int:
        return self._num_images

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        """``{"x": raw latent, "y"}``; with flips ``{"index", "y"}``: `augment` reads the file."""
        index = int(index)
        if self.horizontal_flip:
            return {"index": np.int64(index), "y": self._labels[index]}
        return {"x": self._load(index), "y": self._labels[index]}

    def augment(self, record: dict[str, np.ndarray], rng: np.random.Generator) -> dict:
        """Picks the flipped copy with probability 1/2 (``horizontal_flip``), then draws the
        posterior sample (``mean_std``) and normalises it; see the module doc."""
        if self.horizontal_flip:
            flipped = bool(rng.random() < 0.5)
            entry = int(record["index"]) + self._num_images * flipped
            record = {"x": self._load(entry), "y": record["y"]}
        return self._codec.augment(record, rng)

    def __repr__(self) -> str:
        return f"LatentSource({self.path!r}, len={len(self)}, shape={self.shape})"
