"""tools/fetch_weights.py: lists every file of docs/weights_and_data.md, checks pinned hashes.

Downloads use a ``file://`` URL (no network in tests); the pinned Inception hash is the one
nnx-fid's loader checks.
"""

import hashlib
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
TOOL = str(REPO / "tools" / "fetch_weights.py")


def _run(*args):
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True)


def test_list_names_every_file_of_the_page_and_the_loader_hash():
    import nnx_fid

    result = _run("--list")
    assert result.returncode == 0
    page = (REPO / "docs" / "weights_and_data.md").read_text()
    names = [line.split(":")[0] for line in result.stdout.splitlines() if not line.startswith(" ")]
    assert len(names) == 10
    for name in names:
        assert f"`{name}`" in page, name
    assert (
        f"inception: pt_inception-2015-12-05-6726825d.pth  sha256={nnx_fid.INCEPTION_SHA256}"
        in (result.stdout)
    )


def test_a_file_with_the_pinned_hash_is_kept_and_another_is_refused(tmp_path):
    source = tmp_path / "weights.bin"
    source.write_bytes(b"published bytes")
    good = hashlib.sha256(b"published bytes").hexdigest()
    out = tmp_path / "models"
    result = _run("--url", source.as_uri(), "--sha256", good, "--dir", str(out))
    assert result.returncode == 0, result.stderr
    assert (out / "weights.bin").read_bytes() == b"published bytes"
    assert f"sha256 {good} (matches the pinned hash)" in result.stdout
    result = _run("--url", source.as_uri(), "--sha256", "0" * 64, "--dir", str(tmp_path / "x"))
    assert result.returncode == 2
    err = result.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err and f"has SHA-256 {good}" in err
    assert not (tmp_path / "x" / "weights.bin").exists()
    assert _run("not-a-file").returncode == 2


def test_the_page_shows_each_pinned_hash_with_its_source_and_no_other_hash():
    import re

    import nnx_weightconv

    page = (REPO / "docs" / "weights_and_data.md").read_text()
    pinned = [e for e in nnx_weightconv.PUBLISHED_FILES.values() if e.sha256 is not None]
    for entry in pinned:
        assert f"`{entry.sha256}`" in page, entry.file_name
        if entry.hash_source.startswith("https://"):
            assert entry.hash_source in page, entry.file_name
    assert set(re.findall(r"\b[0-9a-f]{64}\b", page)) == {e.sha256 for e in pinned}
