"""Reading a folder of images for reconstruction metrics, centre-cropped as ADM and RAE do.

RAE measures rFID, PSNR and SSIM on ImageNet val images prepared with ADM's
``center_crop_arr`` (`nnx_fid.adm_center_crop`).
"""

from __future__ import annotations

import pathlib

import numpy as np
from PIL import Image

from nnx_fid import adm_center_crop

__all__ = ["IMAGE_SUFFIXES", "list_images", "load_images"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


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
            arrays.append(adm_center_crop(image, image_size))
    return np.stack(arrays)
