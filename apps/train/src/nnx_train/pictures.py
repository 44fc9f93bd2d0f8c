"""PNG writers: a grid of samples and the loss curve, written into the workdir."""

from __future__ import annotations

import math
import os

import numpy as np

__all__ = ["display_uint8", "save_image_grid", "save_loss_curve"]


def _replace_with(path: str, write) -> None:
    """``write(temporary)`` then rename onto ``path``: readers and a run killed mid-write
    see the old picture or the new one, never a torn PNG."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temporary = f"{path}.tmp-{os.getpid()}"
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def save_image_grid(
    images_uint8: np.ndarray, path: str, *, columns: int | None = None, min_cell: int = 64
) -> str:
    """Tiles ``(N, H, W, C)`` uint8 images (C = 1 or 3) into one PNG.

    Small images are enlarged by an integer factor (nearest neighbour) so that each cell is
    at least ``min_cell`` pixels wide: an 8x8 digit becomes a visible 64x64 square.

    Args:
      images_uint8: uint8 NHWC (convert model pixels with ``nnx_fid.to_uint8``).
      path: output ``.png`` path.
      columns: grid width in images (default: about square).
      min_cell: minimum cell side in pixels.

    Returns:
      ``path``.
    """
    from PIL import Image

    images = np.asarray(images_uint8)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(
            f"save_image_grid needs uint8 (N, H, W, 1 or 3) images, got {images.dtype} "
            f"{images.shape}; convert with nnx_fid.to_uint8 and keep 1 or 3 channels."
        )
    count, height, width, channels = images.shape
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    factor = max(1, math.ceil(min_cell / max(height, width)))
    pad = 2
    cell_h, cell_w = height * factor + pad, width * factor + pad
    canvas = np.full((rows * cell_h + pad, columns * cell_w + pad, channels), 255, np.uint8)
    for index in range(count):
        r, c = divmod(index, columns)
        tile = images[index].repeat(factor, axis=0).repeat(factor, axis=1)
        top, left = pad + r * cell_h, pad + c * cell_w
        canvas[top : top + height * factor, left : left + width * factor] = tile
    picture = Image.fromarray(canvas[..., 0] if channels == 1 else canvas)
    _replace_with(path, lambda temporary: picture.save(temporary, format="PNG"))
    return path


def save_loss_curve(records: list[dict], path: str, *, key: str = "loss") -> str:
    """Plots ``key`` against ``step`` from metrics records (log scale when positive).

    Args:
      records: dicts with ``"step"`` and possibly ``key`` (e.g. from ``metrics.jsonl``).
      path: output ``.png`` path.
      key: metric to plot.

    Returns:
      ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [
        (r["step"], float(r[key]))
        for r in records
        if isinstance(r.get(key), int | float) and math.isfinite(float(r[key]))
    ]
    figure, axis = plt.subplots(figsize=(6, 4), dpi=100)
    if points:
        steps, values = zip(*points)
        axis.plot(steps, values, lw=1.2, label=key)
        if min(values) > 0:
            axis.set_yscale("log")
    axis.set_xlabel("step")
    axis.set_ylabel(key)
    axis.set_title(f"training {key}")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    _replace_with(path, lambda temporary: figure.savefig(temporary, format="png"))
    plt.close(figure)
    return path


def display_uint8(images: np.ndarray) -> np.ndarray:
    """Model-space samples -> uint8 pictures (1 or 3 channels; latents show channels 0-2)."""
    import jax.numpy as jnp

    from nnx_fid import to_uint8

    images = jnp.asarray(images, jnp.float32)
    channels = images.shape[-1]
    if channels not in (1, 3):
        # Latents without a decoder: a per-image min-max view of the first channels.
        images = images[..., :3] if channels > 3 else images[..., :1]
        low = images.min(axis=(1, 2, 3), keepdims=True)
        high = images.max(axis=(1, 2, 3), keepdims=True)
        images = 2.0 * (images - low) / jnp.maximum(high - low, 1e-6) - 1.0
    return np.asarray(to_uint8(images))
