"""Shard files, resume bookkeeping, checkpoint manifests and result writing."""

import json

import numpy as np
import pytest
from PIL import Image

from nnx_fid import balanced_labels
from rae_eval.checkpoints import (
    CheckpointFile,
    MissingCheckpointError,
    fetch_command,
    require_files,
)
from rae_eval.generation import generate_shards
from rae_eval.results import image_grid, save_grid, write_json
from rae_eval.shards import FingerprintMismatchError, ShardStore


def _fake_sampler(calls):
    def sample_batch(indices, labels):
        calls.append(indices.copy())
        # Each image depends only on its index and label, as the real sampler.
        values = (indices * 7 + labels) % 256
        return np.broadcast_to(values[:, None, None, None], (len(indices), 2, 2, 3)).astype(
            np.uint8
        )

    return sample_batch


def test_generation_resumes_only_missing_shards(tmp_path):
    labels = balanced_labels(10, 3, seed=0)
    store = ShardStore(tmp_path / "s", num_samples=10, shard_size=4)
    calls = []
    report = generate_shards(store, _fake_sampler(calls), labels, batch_size=3, progress=False)
    assert report.generated == (0, 1, 2) and report.skipped == 0
    # Every call has exactly batch_size rows (padded), shards of 4, 4, 2 samples.
    assert all(len(c) == 3 for c in calls)
    images, stored_labels = store.read_all()
    assert images.shape == (10, 2, 2, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(stored_labels, labels)
    np.testing.assert_array_equal(images[:, 0, 0, 0], (np.arange(10) * 7 + labels) % 256)

    store.path(1).unlink()
    calls.clear()
    report = generate_shards(store, _fake_sampler(calls), labels, batch_size=3, progress=False)
    assert report.generated == (1,) and report.skipped == 2
    assert sorted(set(np.concatenate(calls).tolist())) == [4, 5, 6, 7]
    again, _ = store.read_all()
    np.testing.assert_array_equal(again, images)

    out = store.assemble(tmp_path / "samples.npz")
    with np.load(out) as data:
        np.testing.assert_array_equal(data["arr_0"], images)
        np.testing.assert_array_equal(data["arr_1"], labels)


def test_fingerprint_guards_resume(tmp_path):
    store = ShardStore(tmp_path, num_samples=4, shard_size=2)
    store.check_fingerprint({"seed": 0, "scale": 1.42})
    store.check_fingerprint({"seed": 0, "scale": 1.42})
    with pytest.raises(FingerprintMismatchError, match=r"scale: 1.42 -> 1.5"):
        store.check_fingerprint({"seed": 0, "scale": 1.5})


def test_missing_files_are_each_named_with_their_source(tmp_path):
    present = tmp_path / "stats" / "stat.pt"
    present.parent.mkdir()
    present.write_bytes(b"x")
    files = [
        CheckpointFile.from_config(
            "decoder",
            {
                "path": "decoders/dinov2/wReg_base/ViTXL_n08/model.pt",
                "url": "hf://nyu-visionx/RAE-collections/decoders/dinov2/wReg_base/ViTXL_n08/model.pt",
            },
            tmp_path,
        ),
        CheckpointFile("latent_stats", present, "hf://nyu-visionx/RAE-collections/stats/stat.pt"),
        CheckpointFile("inception", tmp_path / "pt_inception.pth", "https://example.org/i.pth"),
    ]
    with pytest.raises(MissingCheckpointError) as error:
        require_files(files)
    message = str(error.value)
    assert "2 checkpoint file(s) missing" in message
    assert "decoder" in message and "inception" in message and "latent_stats" not in message
    assert (
        f"hf download nyu-visionx/RAE-collections decoders/dinov2/wReg_base/ViTXL_n08/model.pt --local-dir {tmp_path}"
        in message
    )
    assert "curl -L --create-dirs" in fetch_command(files[2])
    assert [f.role for f in error.value.files] == ["decoder", "inception"]


def test_json_and_grid(tmp_path):
    path = write_json(
        tmp_path / "r.json", {"fid": np.float64(1.5), "nan": float("nan"), "a": np.arange(2)}
    )
    assert json.loads(path.read_text()) == {"a": [0, 1], "fid": 1.5, "nan": "nan"}
    images = np.stack([np.full((4, 5, 3), 10 * i, np.uint8) for i in range(1, 6)])
    grid = image_grid(images, columns=3, padding=1)
    assert grid.shape == (2 * 5 + 1, 3 * 6 + 1, 3)
    assert grid[1, 1, 0] == 10 and grid[6, 1, 0] == 40 and grid[6, 13, 0] == 0  # empty cell
    png = save_grid(tmp_path / "g.png", images, columns=3)
    np.testing.assert_array_equal(np.asarray(Image.open(png)), image_grid(images, columns=3))
