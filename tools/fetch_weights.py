"""Download the published weights and data files the project reads (docs/weights_and_data.md).

::

    uv run tools/fetch_weights.py --list                       # names, sources, commands
    uv run tools/fetch_weights.py inception sd-vae-ft-ema --dir models
    uv run tools/fetch_weights.py --url https://host/file.pth --sha256 <hex> --dir models

Plain HTTPS (Hugging Face files through their ``resolve/main`` URLs), no ``hf`` CLI and no
token (the files listed are public). Each file is streamed to ``<dir>/<file name>.part``,
its SHA-256 computed on the way, then renamed. A pinned hash that does not match is an error
(the ``.part`` file is kept for inspection); an unpinned file prints its hash to record.
Standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import urllib.request

HF = "https://huggingface.co/{repo}/resolve/main/{path}"
RAE = "nyu-visionx/RAE-collections"

# name -> (URL, file name in --dir, pinned SHA-256 or None); see docs/weights_and_data.md.
FILES: dict[str, tuple[str, str, str | None]] = {
    "inception": (
        "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
        "pt_inception-2015-12-05-6726825d.pth",
        "pt_inception-2015-12-05-6726825d.pth",
        "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
    ),
    "sd-vae-ft-ema": (
        HF.format(repo="stabilityai/sd-vae-ft-ema", path="diffusion_pytorch_model.safetensors"),
        "sd-vae-ft-ema.safetensors",
        None,
    ),
    "sd-vae-ft-mse": (
        HF.format(repo="stabilityai/sd-vae-ft-mse", path="diffusion_pytorch_model.safetensors"),
        "sd-vae-ft-mse.safetensors",
        None,
    ),
    "dinov2-base": (
        HF.format(repo="facebook/dinov2-base", path="model.safetensors"),
        "dinov2-base.safetensors",
        None,
    ),
    "dinov2-with-registers-base": (
        HF.format(repo="facebook/dinov2-with-registers-base", path="model.safetensors"),
        "dinov2-with-registers-base.safetensors",
        None,
    ),
    "rae-decoder": (
        HF.format(repo=RAE, path="decoders/dinov2/wReg_base/ViTXL_n08/model.pt"),
        "rae_decoder_ViTXL_n08.pt",
        None,
    ),
    "rae-stats": (
        HF.format(repo=RAE, path="stats/dinov2/wReg_base/imagenet1k/stat.pt"),
        "rae_stat.pt",
        None,
    ),
    "rae-dit-dh-xl": (
        HF.format(repo=RAE, path="DiTs/Dinov2/wReg_base/ImageNet256/DiTDH-XL/stage2_model.pt"),
        "rae_DiTDH-XL.pt",
        None,
    ),
    "rae-dit-dh-s": (
        HF.format(repo=RAE, path="DiTs/Dinov2/wReg_base/ImageNet256/DiTDH-S_ep14/stage2_model.pt"),
        "rae_DiTDH-S_ep14.pt",
        None,
    ),
    "adm-reference-256": (
        "https://openaipublic.blob.core.windows.net/diffusion/jul-2021/ref_batches/imagenet/256/"
        "VIRTUAL_imagenet256_labeled.npz",
        "VIRTUAL_imagenet256_labeled.npz",
        None,
    ),
}


class FetchError(Exception):
    """A download or a hash that does not match (one line)."""


def fetch(url: str, path: str, sha256: str | None) -> str:
    """Streams ``url`` to ``path``; returns the file's SHA-256.

    Raises:
      FetchError: the download fails, or the file's hash is not ``sha256``.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    digest = hashlib.sha256()
    part = path + ".part"
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as out:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
    except OSError as err:
        raise FetchError(f"cannot download {url}: {err}") from None
    actual = digest.hexdigest()
    if sha256 is not None and actual != sha256:
        raise FetchError(
            f"{url} has SHA-256 {actual}, not the published {sha256}; kept as {part} for "
            "inspection (a re-saved or partial file?)."
        )
    os.replace(part, path)
    return actual


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help=f"files to fetch: {', '.join(FILES)}")
    parser.add_argument("--dir", default="models", help="destination folder (default models)")
    parser.add_argument("--list", action="store_true", help="print names, sources and hashes")
    parser.add_argument("--url", help="fetch this URL instead of a named file")
    parser.add_argument("--sha256", help="with --url: the expected SHA-256")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    if args.list:
        for name, (url, file_name, sha256) in FILES.items():
            print(f"{name}: {file_name}  sha256={sha256 or 'not pinned'}")
            print(f"    curl -L --create-dirs -o {args.dir}/{file_name} {url}")
        return 0
    unknown = [n for n in args.names if n not in FILES]
    if unknown or not (args.names or args.url):
        print(
            f"error: give names among {', '.join(FILES)}, or --url (see --list).", file=sys.stderr
        )
        return 2
    jobs = [(FILES[n][0], FILES[n][1], FILES[n][2]) for n in args.names]
    if args.url:
        jobs.append((args.url, os.path.basename(args.url.rstrip("/")), args.sha256))
    try:
        for url, file_name, sha256 in jobs:
            path = os.path.join(args.dir, file_name)
            actual = fetch(url, path, sha256)
            state = "matches the pinned hash" if sha256 else "not pinned"
            print(f"{path}: sha256 {actual} ({state})")
    except FetchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
