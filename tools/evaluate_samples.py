"""Evaluate a sample batch against a reference batch, as guided-diffusion's ADM evaluator does.

Example::

    python tools/evaluate_samples.py VIRTUAL_imagenet256_labeled.npz samples_50000x256x256x3.npz \\
        --inception pt_inception-2015-12-05-6726825d.pth

prints ``Inception Score``, ``FID``, ``sFID``, ``Precision`` and ``Recall`` (the ADM lines) and
writes them, with every setting that moves them (front end, quantisation, split size, counts,
files), to ``--json`` (default: ``<samples>.metrics.json``).

- ``samples``: ``.npz`` with ``arr_0`` uint8 ``(N, H, W, 3)`` (``arr_1`` labels are ignored),
  read ``--batch-size`` images at a time from the zip member (``np.savez`` or
  ``np.savez_compressed``): 50k images at 256 px are 9.8 GB, never held in memory at once.
- ``reference``: an ADM batch (``mu``/``sigma``, ``mu_s``/``sigma_s`` and 10k ``arr_0`` images),
  a pytorch-fid ``.npz`` (FID only) or an EDM2 ``.pkl`` (FID only). Statistics the file lacks
  are computed from its ``arr_0`` images; precision/recall need those images.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import zipfile
from collections.abc import Iterator

import numpy as np

import nnx_fid


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reference", type=pathlib.Path, help="reference batch (.npz or .pkl)")
    parser.add_argument("samples", type=pathlib.Path, help="sample batch .npz (arr_0)")
    parser.add_argument(
        "--inception",
        type=pathlib.Path,
        default=None,
        help=f"path of {nnx_fid.INCEPTION_FILE_NAME} (published at {nnx_fid.INCEPTION_URL})",
    )
    parser.add_argument(
        "--dinov2",
        type=pathlib.Path,
        default=None,
        help=f"also FD-DINOv2 (EDM2 reference with fd_dinov2), from {nnx_fid.DINOV2_FILE_NAME}",
    )
    parser.add_argument("--front-end", choices=nnx_fid.FRONT_ENDS, default="tf1")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--json", type=pathlib.Path, default=None)
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def _npy_header(member) -> tuple[tuple[int, ...], bool, np.dtype]:
    """``(shape, fortran_order, dtype)`` of the ``.npy`` stream ``member``, leaving it at the
    first data byte (numpy's format 1.0 header, or 2.0 / 3.0 with a 4-byte length)."""
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(member)
    return np.lib.format.read_array_header_2_0(member)


class SampleFile:
    """The ``arr_0`` array of an ``.npz`` sample batch, checked from its header alone and read
    in batches (the zip member is streamed: stored or deflated alike).

    Raises:
      SystemExit: one line naming the problem (missing, not an .npz, no arr_0, not uint8
        NHWC RGB, fewer than 2 images) before any image is read.
    """

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        if not path.is_file():
            raise SystemExit(f"sample batch {str(path)!r} does not exist")
        if not zipfile.is_zipfile(path):
            raise SystemExit(
                f"{path} is not an .npz file (a zip written by numpy.savez); save the samples "
                "with np.savez(path, arr_0=uint8 (N, H, W, 3) images)"
            )
        with zipfile.ZipFile(path) as archive:
            if "arr_0.npy" not in archive.namelist():
                raise SystemExit(f"{path} has no arr_0; expected uint8 (N, H, W, 3) samples")
            with archive.open("arr_0.npy") as member:
                self.shape, fortran, self.dtype = _npy_header(member)
        self._check(fortran)

    def _check(self, fortran: bool) -> None:
        shape, where = tuple(self.shape), f"{self.path}: arr_0 has shape {tuple(self.shape)}"
        if self.dtype != np.uint8:
            raise SystemExit(
                f"{where} and dtype {self.dtype}; expected uint8 pixels in [0, 255] (from [-1, 1] "
                "floats: np.clip(np.round((x + 1) * 127.5), 0, 255).astype(np.uint8))"
            )
        if len(shape) == 4 and shape[1] in (1, 3) and shape[3] not in (1, 3):
            raise SystemExit(
                f"{where}, which looks like NCHW; save NHWC images (x.transpose(0, 2, 3, 1))"
            )
        if len(shape) != 4 or shape[3] != 3:
            raise SystemExit(
                f"{where}; expected RGB images (N, H, W, 3) (grey images: "
                "np.repeat(x[..., None], 3, axis=-1) for (N, H, W))"
            )
        if shape[0] < 2:
            raise SystemExit(
                f"{where}: {shape[0]} image(s); FID needs at least 2 samples (50,000 for FID-50k)"
            )
        if fortran:
            raise SystemExit(f"{where} in Fortran order; save it with np.ascontiguousarray(x)")

    def __len__(self) -> int:
        return int(self.shape[0])

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        """``(<= batch_size, H, W, 3)`` uint8 batches, in order."""
        image_bytes = int(np.prod(self.shape[1:]))
        with zipfile.ZipFile(self.path) as archive, archive.open("arr_0.npy") as member:
            _npy_header(member)
            for start in range(0, len(self), batch_size):
                count = min(batch_size, len(self) - start)
                data = member.read(count * image_bytes)
                if len(data) != count * image_bytes:
                    raise SystemExit(f"{self.path}: arr_0 is truncated at image {start}")
                yield np.frombuffer(data, np.uint8).reshape(count, *self.shape[1:])


def check_reference(reference: nnx_fid.ReferenceStats, path: pathlib.Path) -> None:
    """Reference statistics of the Inception widths (2048 pool, 2023 spatial), finite."""
    for name, stats, width in (("FID", reference.fid, 2048), ("sFID", reference.sfid, 2023)):
        if stats is None:
            continue
        if stats.mu.shape != (width,) or stats.sigma.shape != (width, width):
            raise SystemExit(
                f"{path}: the {name} statistics are {stats.mu.shape[0]}-d, not the {width}-d "
                "Inception features this tool extracts; use a reference written for Inception "
                "(ADM's VIRTUAL_*.npz or tools/fid_reference_stats.py)"
            )
        if not (np.isfinite(stats.mu).all() and np.isfinite(stats.sigma).all()):
            raise SystemExit(
                f"{path}: the {name} statistics hold NaN/Inf values; recompute the reference "
                "(tools/fid_reference_stats.py)"
            )


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.batch_size < 1:
        raise SystemExit(f"--batch-size={args.batch_size}; use 1 or more")
    samples = SampleFile(args.samples)  # every input is checked before weights are loaded
    try:
        reference = nnx_fid.load_reference(args.reference)
    except (FileNotFoundError, nnx_fid.StatsFormatError) as error:
        raise SystemExit(str(error)) from error
    check_reference(reference, args.reference)
    if args.dinov2 is not None and reference.fd_dinov2 is None:
        raise SystemExit(f"{args.reference} holds no fd_dinov2 statistics (EDM2 .pkl needed)")
    try:
        inception = nnx_fid.load_inception(args.inception)
        dinov2 = None if args.dinov2 is None else nnx_fid.load_fd_dinov2(args.dinov2)
    except FileNotFoundError as error:
        raise SystemExit(str(error)) from error
    extractor = nnx_fid.InceptionFeatures(inception, front_end=args.front_end)
    progress = not args.no_progress
    reference_features = None
    if reference.images is not None:
        print("computing reference batch activations...")
        reference_features = nnx_fid.extract_features(
            [extractor], reference.images, batch_size=args.batch_size, progress=progress
        )
    else:
        print("reference has no images: precision and recall are skipped")
    print("computing sample batch activations...")
    sample_extractors = (
        [extractor] if dinov2 is None else [extractor, nnx_fid.DINOv2Features(dinov2)]
    )
    sample_features = nnx_fid.extract_features(
        sample_extractors,
        samples.batches(args.batch_size),
        batch_size=args.batch_size,
        progress=progress,
    )
    result = nnx_fid.compute_metrics(
        sample_features,
        reference,
        front_end=args.front_end,
        reference_features=reference_features,
    )
    result.update(
        reference=str(args.reference),
        samples=str(args.samples),
        inception_weights=str(args.inception),
        dinov2_weights=None if args.dinov2 is None else str(args.dinov2),
    )
    print(nnx_fid.format_adm_report(result))
    out = args.json or args.samples.with_suffix(".metrics.json")
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
