"""Download the published weights and data files the project reads (docs/weights_and_data.md).

::

    uv run tools/fetch_weights.py --list                       # names, sources, commands
    uv run tools/fetch_weights.py inception sd-vae-ft-ema --dir models
    uv run tools/fetch_weights.py --url https://host/file.pth --sha256 <hex> --dir models

Plain HTTPS (Hugging Face files through their ``resolve/main`` URLs), no ``hf`` CLI and no
token (the files listed are public). Each file is streamed to ``<dir>/<file name>.part``,
its SHA-256 computed on the way, then renamed. A pinned hash that does not match is an error
(the ``.part`` file is kept for inspection); an unpinned file prints its hash to record.
The names, URLs and hashes are ``nnx_weightconv.PUBLISHED_FILES``, the table the loaders
check files against (``nnx_weightconv.read_state_dict`` warns on a known name with another
hash); the download itself is standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import urllib.request

from nnx_weightconv.published import PUBLISHED_FILES

# name -> (URL, file name in --dir, pinned SHA-256 or None): the table the loaders check
# (nnx_weightconv.PUBLISHED_FILES; docs/weights_and_data.md lists its sources).
FILES: dict[str, tuple[str, str, str | None]] = {
    name: (entry.url, entry.file_name, entry.sha256) for name, entry in PUBLISHED_FILES.items()
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
