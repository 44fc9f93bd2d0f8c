"""tools/extract_latents.py on ArrayRecord and WebDataset sources and split over processes.

The same six images are written as an ImageFolder, as TFDS-style ArrayRecord files and as
two WebDataset shards, in the same order; a cheap exact encoder (2x2 block means, CHW) makes
the stored latents comparable byte for byte. Processes are simulated by their indices.
"""

import filecmp
import importlib.util
import json
import os

import numpy as np
import pytest
from readers_testlib import png_bytes, write_arrayrecord, write_shard

TOOL = os.path.join(os.path.dirname(__file__), "..", "..", "..", "tools", "extract_latents.py")
RESOLUTION = 4


def _tool():
    spec = importlib.util.spec_from_file_location("extract_latents_sources_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _encode(pixels):
    """``(B, 4, 4, 3)`` -> ``(B, 3, 2, 2)``: 2x2 block means, deterministic per image."""
    blocks = pixels.reshape(len(pixels), 2, 2, 2, 2, 3).mean(axis=(2, 4))
    return np.transpose(blocks, (0, 3, 1, 2))


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("sources")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (6 + i, 9, 3), dtype=np.uint8) for i in range(6)]
    labels = [0, 0, 0, 1, 1, 1]  # ImageFolder order: class folders, then sorted files
    for i, (pixels, label) in enumerate(zip(images, labels)):
        os.makedirs(root / "folder" / f"c{label}", exist_ok=True)
        Image.fromarray(pixels).save(root / "folder" / f"c{label}" / f"{i}.png")
    os.makedirs(root / "records")
    for index, chunk in enumerate([range(0, 4), range(4, 6)]):
        write_arrayrecord(
            root / "records" / f"in-train.array_record-{index:05d}-of-00002",
            [{"image": png_bytes(images[i]), "label": labels[i]} for i in chunk],
        )
    os.makedirs(root / "shards")
    for index, chunk in enumerate([range(0, 2), range(2, 6)]):
        samples = [
            (f"k{i}", {"png": png_bytes(images[i]), "cls": b"%d" % labels[i]}) for i in chunk
        ]
        write_shard(str(root / "shards" / f"shard-{index:06d}.tar"), samples)
    return {
        "imagefolder": str(root / "folder"),
        "arrayrecord": str(root / "records"),
        "webdataset": str(root / "shards" / "shard-{000000..000001}.tar"),
    }


def _extract(tool, sources, fmt, dest, **kwargs):
    return tool.extract(
        sources[fmt],
        str(dest),
        encode=_encode,
        resolution=RESOLUTION,
        batch_size=4,
        progress=False,
        source_format=fmt,
        split="train" if fmt == "arrayrecord" else "",
        num_classes=2,
        **kwargs,
    )


def _same_tree(left, right):
    names = sorted(p.relative_to(left) for p in left.rglob("*.npy"))
    assert names == sorted(p.relative_to(right) for p in right.rglob("*.npy"))
    assert all(filecmp.cmp(left / n, right / n, shallow=False) for n in names)
    load = [json.loads((d / "dataset.json").read_text()) for d in (left, right)]
    assert load[0] == load[1]
    return names


@pytest.mark.parametrize("fmt", ["arrayrecord", "webdataset"])
def test_formats_give_the_imagefolder_latents(sources, fmt, tmp_path):
    tool = _tool()
    _extract(tool, sources, "imagefolder", tmp_path / "folder", flip=True)
    result = _extract(tool, sources, fmt, tmp_path / fmt, flip=True)
    assert result == {"written": 12, "skipped": 0, "total": 12, "index": True}
    names = _same_tree(tmp_path / "folder", tmp_path / fmt)
    assert len(names) == 12
    labels = json.loads((tmp_path / fmt / "dataset.json").read_text())["labels"]
    assert [label for _, label in labels] == [0, 0, 0, 1, 1, 1] * 2


@pytest.mark.parametrize("fmt", ["imagefolder", "arrayrecord", "webdataset"])
def test_processes_share_the_work_without_collisions(sources, fmt, tmp_path):
    tool = _tool()
    _extract(tool, sources, fmt, tmp_path / "one", flip=True)
    shared = tmp_path / "shared"
    results = [
        _extract(tool, sources, fmt, shared, flip=True, process_index=p, process_count=3)
        for p in range(3)
    ]
    assert [r["index"] for r in results] == [False, False, True]  # the last one merges
    assert sum(r["written"] for r in results) == 12  # each file encoded exactly once
    parts = [json.loads((shared / tool.part_name(p, 3)).read_text()) for p in range(3)]
    outputs = [entry[1] for part in parts for entry in part]
    assert sorted(outputs) == sorted(set(outputs)) and len(outputs) == 12  # disjoint, complete
    _same_tree(tmp_path / "one", shared)

    # Resume of one process: only its missing file is rewritten.
    victim = shared / parts[1][0][1]
    victim.unlink()
    again = _extract(tool, sources, fmt, shared, flip=True, process_index=1, process_count=3)
    assert again["written"] == 1 and again["index"] is True and victim.is_file()


def test_cli_rejects_a_process_index_out_of_range(sources, tmp_path):
    tool = _tool()
    with pytest.raises(SystemExit, match="--process_index 3 is not in 0..2"):
        tool.main(
            ["--source", sources["imagefolder"], "--dest", str(tmp_path)]
            + ["--process_index", "3", "--process_count", "3"]
        )


def test_cli_reports_a_bad_source_in_one_line(tmp_path, capsys):
    tool = _tool()
    bad = tmp_path / "shards"
    bad.mkdir()
    (bad / "shard-000000.tar").write_bytes(b"\x01" * 700)
    args = ["--source", str(bad), "--format", "webdataset", "--dest", str(tmp_path / "out")]
    tool._build_encoder = lambda args: _encode  # no weights needed to reach the reader
    assert tool.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Cannot read WebDataset shard") and err.count("\n") == 1
