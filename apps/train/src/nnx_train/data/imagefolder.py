"""Pixel images in class sub-folders (``root/<class name>/<image>``), ADM centre-cropped.

Classes are the sorted sub-folder names, labelled 0..K-1 (ImageNet's synset folders give the
standard 1000 labels). Every image is centre-cropped as ADM (openai/guided-diffusion) does:
halve with a box filter while the short side is at least twice the target, resize bicubically
so that the short side equals the target, then cut the centre square. Optional random
horizontal flips happen in `ImageFolderSource.augment` (seeded per epoch by Grain).
"""

from __future__ import annotations

import os

import numpy as np

from nnx_fid import adm_center_crop
from nnx_train.errors import DataError

__all__ = ["IMAGE_EXTENSIONS", "ImageFolderSource", "adm_center_crop", "list_image_folder"]

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def list_image_folder(root: str) -> tuple[list[str], np.ndarray, list[str]]:
    """Image paths (relative to ``root``), their labels and the sorted class names.

    Raises:
      DataError: ``root`` is not a folder, or it holds no images in class sub-folders.
    """
    if not os.path.isdir(root):
        raise DataError(
            f"Image folder {root!r} does not exist; expected root/<class name>/<image files>."
        )
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
    files: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        for dirpath, _, filenames in sorted(os.walk(os.path.join(root, name))):
            for filename in sorted(filenames):
                if filename.lower().endswith(IMAGE_EXTENSIONS):
                    files.append(os.path.relpath(os.path.join(dirpath, filename), root))
                    labels.append(label)
    if not files:
        raise DataError(
            f"Image folder {root!r} is empty: no {IMAGE_EXTENSIONS} files in class sub-folders "
            "(expected root/<class name>/<image files>)."
        )
    return files, np.asarray(labels, dtype=np.int32), classes


class ImageFolderSource:
    """Random-access source (Grain protocol) of centre-cropped pixel images.

    Records are ``{"x": (R, R, 3) float32 in [-1, 1], "y": int32 label}``.
    """

    def __init__(
        self, *, path: str, resolution: int, num_classes: int, horizontal_flip: bool = False
    ) -> None:
        """Args:
        path: root folder with one sub-folder per class.
        resolution: side of the square crop.
        num_classes: number of model classes; the folder must not have more.
        horizontal_flip: flip each image left-right with probability 1/2 in `augment`.

        Raises:
          DataError: missing or empty folder, or more class folders than ``num_classes``.
        """
        self.path = str(path)
        self.resolution = int(resolution)
        self.horizontal_flip = bool(horizontal_flip)
        self._files, self._labels, self.class_names = list_image_folder(self.path)
        if len(self.class_names) > num_classes:
            raise DataError(
                f"Label out of range: {self.path} has {len(self.class_names)} class folders but "
                f"num_classes={num_classes}. Set data.num_classes and model.num_classes to "
                f"{len(self.class_names)} or remove folders."
            )
        self.num_classes = int(num_classes)
        self.shape = (self.resolution, self.resolution, 3)

    def __len__(self) -> int:
        return len(self._files)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        from PIL import Image, UnidentifiedImageError

        name = self._files[int(index)]
        try:
            with Image.open(os.path.join(self.path, name)) as image:
                pixels = adm_center_crop(image, self.resolution)
        except (OSError, UnidentifiedImageError) as err:
            raise DataError(
                f"Cannot read image {name} in {self.path} ({err}); delete or replace the file."
            ) from err
        x = pixels.astype(np.float32) / 127.5 - 1.0
        return {"x": x, "y": self._labels[int(index)]}

    def augment(self, record: dict[str, np.ndarray], rng: np.random.Generator) -> dict:
        """Random horizontal flip (probability 1/2) when enabled."""
        if self.horizontal_flip and rng.random() < 0.5:
            return {"x": np.ascontiguousarray(record["x"][:, ::-1]), "y": record["y"]}
        return record

    def __repr__(self) -> str:
        return f"ImageFolderSource({self.path!r}, len={len(self)}, shape={self.shape})"
