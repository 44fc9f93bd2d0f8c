"""Reading a folder of images for reconstruction metrics, centre-cropped as ADM and RAE do.

RAE measures rFID, PSNR and SSIM on ImageNet val images prepared with ADM's
``center_crop_arr`` (REFERENCE.md, section 5.4): halve with PIL BOX while the short side is at
least twice the target, resize the short side to the target with PIL BICUBIC, then take the
central square.
"""

from __future__ import annotations

import pathlib

import numpy as np
from PIL import Image

__all__ = ["IMAGE_SUFFIXES", "center_crop_arr", "list_images", "load_images"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def center_crop_arr(image: Image.Image, image_size: int) -> np.ndarray:
    """ADM's centre crop of one PIL image to ``(image_size, image_size, 3)`` uint8."""
    image = image.convert("RGB")
    while min(*image.size) >= 2 * image_size:
        image = image.resize(tuple(side // 2 for side in image.size), resample=Image.BOX)
    scale = image_size / min(*image.size)
    image = image.resize(tuple(round(side * scale) for side in image.size), resample=Image.BICUBIC)
    array = np.asarray(image)
    top = (array.shape[0] - image_size) // 2
    left = (array.shape[1] - image_size) // 2
    return array[top : top + image_size, left : left + image_size]


def list_images(folder: str | pathlib.Path) -> list[pathlib.Path]:
    """Image files under ``folder`` (recursive), sorted by path so the order is reproducible."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"image folder {str(folder)!r} does not exist; set config.reconstruction.image_folder"
        )
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {str(folder)!r}")
    return files


def load_images(files: list[pathlib.Path], image_size: int) -> np.ndarray:
    """Load and centre-crop ``files`` into ``(N, image_size, image_size, 3)`` uint8."""
    arrays = []
    for path in files:
        with Image.open(path) as image:
            arrays.append(center_crop_arr(image, image_size))
    return np.stack(arrays)
