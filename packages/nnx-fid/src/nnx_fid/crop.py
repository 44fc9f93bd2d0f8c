"""ADM's centre crop: the one way every image in the workspace is brought to a square.

Dhariwal & Nichol, "Diffusion Models Beat GANs on Image Synthesis" (2021), code
``guided_diffusion/image_datasets.py`` (``center_crop_arr``), reused by EDM2
(``dataset_tool.py --transform=center-crop-dhariwal``), REPA and RAE: halve with PIL ``BOX``
while the short side is at least twice the target, resize the short side to the target with
PIL ``BICUBIC``, then take the central square. Training data, reference statistics and
reconstruction metrics must all use it, or FID compares differently cropped images.
"""

from __future__ import annotations

import numpy as np

__all__ = ["adm_center_crop"]


def adm_center_crop(image, resolution: int) -> np.ndarray:
    """ADM's centre crop of one PIL image to a ``resolution`` square.

    Args:
      image: a ``PIL.Image`` of any mode and size (converted to RGB).
      resolution: side of the output square in pixels.

    Returns:
      ``(resolution, resolution, 3)`` uint8 RGB array (C-contiguous).
    """
    from PIL import Image

    image = image.convert("RGB")
    while min(image.size) >= 2 * resolution:
        image = image.resize(tuple(s // 2 for s in image.size), resample=Image.BOX)
    scale = resolution / min(image.size)
    image = image.resize(tuple(round(s * scale) for s in image.size), resample=Image.BICUBIC)
    array = np.asarray(image)
    top = (array.shape[0] - resolution) // 2
    left = (array.shape[1] - resolution) // 2
    return np.ascontiguousarray(array[top : top + resolution, left : left + resolution])
