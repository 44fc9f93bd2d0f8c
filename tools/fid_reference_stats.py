"""Reference statistics for FID / sFID (/ FD-DINOv2) from a folder of images or an ``.npz``.

Examples::

    # ADM format (mu, sigma, mu_s, sigma_s + 10k random images for precision/recall)
    python tools/fid_reference_stats.py imagenet/train ref_256.npz \\
        --inception pt_inception-2015-12-05-6726825d.pth --center-crop 256

    # pytorch-fid format (mu, sigma) from an ADM-style sample file (arr_0)
    python tools/fid_reference_stats.py samples.npz ref.npz --format pytorch_fid \\
        --inception pt_inception-2015-12-05-6726825d.pth

Statistics stream through float64 accumulators, so the whole training set fits in memory as a
2048 x 2048 sum. The Inception front end (``--front-end``, default ``tf1`` = ADM's evaluator)
must match the one used to evaluate samples against this file; it is printed and, for JSON
users, written next to the output as ``<out>.json``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from collections.abc import Iterator

import numpy as np

import nnx_fid

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".JPEG", ".PNG", ".JPG")


def list_images(folder: pathlib.Path) -> list[pathlib.Path]:
    files = sorted(p for p in folder.rglob("*") if p.suffix in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise SystemExit(f"no images ({', '.join(IMAGE_SUFFIXES[:5])}) under {str(folder)!r}")
    return files


def read_image(path: pathlib.Path, center_crop: int | None) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError as error:
        raise SystemExit("reading image folders needs Pillow: pip install pillow") from error
    with Image.open(path) as image:
        image = image.convert("RGB")
        return nnx_fid.adm_center_crop(image, center_crop) if center_crop else np.asarray(image)


def folder_batches(
    files: list[pathlib.Path], batch_size: int, center_crop: int | None, keep: set[int], kept: list
) -> Iterator[np.ndarray]:
    """Batches of images read on the fly; images whose index is in ``keep`` are also stored."""
    shape = None
    for start in range(0, len(files), batch_size):
        batch = []
        for index in range(start, min(start + batch_size, len(files))):
            image = read_image(files[index], center_crop)
            if shape is None:
                shape = image.shape
            elif image.shape != shape:
                raise SystemExit(
                    f"{files[index]} is {image.shape[1]}x{image.shape[0]} but earlier images are "
                    f"{shape[1]}x{shape[0]}; pass --center-crop SIZE to bring all to one size"
                )
            if index in keep:
                kept.append(image)
            batch.append(image)
        yield np.stack(batch)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=pathlib.Path, help="folder of images, or .npz with arr_0")
    parser.add_argument("out", type=pathlib.Path, help="output statistics file (.npz or .pkl)")
    parser.add_argument(
        "--inception",
        type=pathlib.Path,
        default=None,
        help=f"path of {nnx_fid.INCEPTION_FILE_NAME} (published at {nnx_fid.INCEPTION_URL})",
    )
    parser.add_argument(
        "--format",
        choices=("adm", "pytorch_fid", "edm2"),
        default=None,
        help="output format (default: adm for .npz, edm2 for .pkl)",
    )
    parser.add_argument(
        "--dinov2",
        type=pathlib.Path,
        default=None,
        help=f"EDM2 format: also FD-DINOv2 statistics, from {nnx_fid.DINOV2_FILE_NAME}",
    )
    parser.add_argument("--front-end", choices=nnx_fid.FRONT_ENDS, default="tf1")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--center-crop", type=int, default=None, help="ADM centre crop to SIZE")
    parser.add_argument(
        "--keep-images",
        type=int,
        default=10_000,
        help="ADM format: random images stored as arr_0 for precision/recall (0: none)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the kept-image subset")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def _extractors(args: argparse.Namespace) -> tuple[list, list[str]]:
    """The feature extractors and the names of their statistics (Inception; DINOv2 if asked)."""
    try:
        inception = nnx_fid.load_inception(args.inception)
        dinov2 = None if args.dinov2 is None else nnx_fid.load_fd_dinov2(args.dinov2)
    except FileNotFoundError as error:
        raise SystemExit(str(error)) from error
    extractors = [nnx_fid.InceptionFeatures(inception, front_end=args.front_end)]
    names = ["pool", "spatial"]
    if dinov2 is not None:
        extractors.append(nnx_fid.DINOv2Features(dinov2))
        names.append("dinov2")
    return extractors, names


def _read_source(path: pathlib.Path) -> tuple[np.ndarray | None, list | None, int]:
    """``(images, None, N)`` for an ``.npz`` sample batch, ``(None, files, N)`` for a folder."""
    if path.suffix == ".npz":
        with np.load(path) as data:
            if "arr_0" not in data.files:
                raise SystemExit(f"{path} has no arr_0 (uint8 NHWC images)")
            images = data["arr_0"]
        return images, None, images.shape[0]
    if path.is_dir():
        files = list_images(path)
        return None, files, len(files)
    raise SystemExit(f"{path} is neither a folder nor an .npz file")


def _save(args: argparse.Namespace, fmt: str, reference: nnx_fid.ReferenceStats) -> None:
    if fmt == "adm":
        nnx_fid.save_adm_npz(args.out, reference)
    elif fmt == "pytorch_fid":
        nnx_fid.save_pytorch_fid_npz(args.out, reference.fid)
    else:
        nnx_fid.save_edm2_pkl(args.out, reference)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    fmt = args.format or ("edm2" if args.out.suffix == ".pkl" else "adm")
    if args.dinov2 is not None and fmt != "edm2":
        raise SystemExit("FD-DINOv2 statistics are stored only in the EDM2 format (.pkl)")
    extractors, names = _extractors(args)
    images, files, count = _read_source(args.source)
    keep_count = min(args.keep_images, count) if fmt == "adm" else 0
    keep = set(np.random.default_rng(args.seed).choice(count, keep_count, replace=False).tolist())
    kept: list[np.ndarray] = []
    source = images
    if images is None:
        source = folder_batches(files, args.batch_size, args.center_crop, keep, kept)
    stats = nnx_fid.feature_statistics(
        extractors, source, names=names, batch_size=args.batch_size, progress=not args.no_progress
    )
    if images is not None:
        kept = [images[i] for i in sorted(keep)]
    reference = nnx_fid.ReferenceStats(
        fid=stats["pool"],
        sfid=stats["spatial"],
        fd_dinov2=stats.get("dinov2"),
        images=np.stack(kept) if kept else None,
        num_images=count,
    )
    _save(args, fmt, reference)
    summary = {
        "source": str(args.source),
        "out": str(args.out),
        "format": fmt,
        "num_images": count,
        "kept_images": len(kept),
        "front_end": args.front_end,
        "quantisation": "uint8 input",
        "center_crop": args.center_crop,
        "inception_weights": str(args.inception),
        "dinov2_weights": None if args.dinov2 is None else str(args.dinov2),
    }
    pathlib.Path(f"{args.out}.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
