"""Evaluate a sample batch against a reference batch, as guided-diffusion's ADM evaluator does.

Example::

    python tools/evaluate_samples.py VIRTUAL_imagenet256_labeled.npz samples_50000x256x256x3.npz \\
        --inception pt_inception-2015-12-05-6726825d.pth

prints ``Inception Score``, ``FID``, ``sFID``, ``Precision`` and ``Recall`` (the ADM lines) and
writes them, with every setting that moves them (front end, quantisation, split size, counts,
files), to ``--json`` (default: ``<samples>.metrics.json``).

- ``samples``: ``.npz`` with ``arr_0`` uint8 ``(N, H, W, 3)`` (``arr_1`` labels are ignored).
- ``reference``: an ADM batch (``mu``/``sigma``, ``mu_s``/``sigma_s`` and 10k ``arr_0`` images),
  a pytorch-fid ``.npz`` (FID only) or an EDM2 ``.pkl`` (FID only). Statistics the file lacks
  are computed from its ``arr_0`` images; precision/recall need those images.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

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


def read_samples(path: pathlib.Path) -> np.ndarray:
    if not path.is_file():
        raise SystemExit(f"sample batch {str(path)!r} does not exist")
    with np.load(path) as data:
        if "arr_0" not in data.files:
            raise SystemExit(f"{path} has no arr_0; expected uint8 (N, H, W, 3) samples")
        return data["arr_0"]


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    try:
        inception = nnx_fid.load_inception(args.inception)
        reference = nnx_fid.load_reference(args.reference)
        dinov2 = None if args.dinov2 is None else nnx_fid.load_fd_dinov2(args.dinov2)
    except (FileNotFoundError, nnx_fid.StatsFormatError) as error:
        raise SystemExit(str(error)) from error
    if dinov2 is not None and reference.fd_dinov2 is None:
        raise SystemExit(f"{args.reference} holds no fd_dinov2 statistics (EDM2 .pkl needed)")
    samples = read_samples(args.samples)
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
        sample_extractors, samples, batch_size=args.batch_size, progress=progress
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
