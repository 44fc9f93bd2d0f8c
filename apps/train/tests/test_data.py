"""Data sources and the Grain pipeline: formats, clear errors, exact resumption, host shards."""

import json
import os
import zipfile

import numpy as np
import pytest

from nnx_train.data import (
    DigitsSource,
    ImageFolderSource,
    LatentSource,
    SyntheticSource,
    adm_center_crop,
    load_digits_split,
    make_iterator,
)
from nnx_train.errors import DataError


def write_latents(root, count=6, shape=(8, 4, 4), num_classes=3, seed=0):
    """An EDM2-format folder: dataset.json + 00000/img%08d.npy of float32 CHW."""
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "00000"), exist_ok=True)
    labels = []
    arrays = []
    for i in range(count):
        name = f"00000/img{i:08d}.npy"
        array = rng.standard_normal(shape).astype(np.float32)
        np.save(os.path.join(root, name), array)
        labels.append([name, i % num_classes])
        arrays.append(array)
    with open(os.path.join(root, "dataset.json"), "w") as handle:
        json.dump({"labels": labels}, handle)
    return arrays, labels


def test_digits_split_is_stratified_and_scaled():
    split = load_digits_split(holdout_fraction=0.15, split_seed=0)
    assert split.train_images.shape == (1527, 8, 8, 1) and split.heldout_images.shape == (
        270,
        8,
        8,
        1,
    )
    # 0..16 -> x / 8 - 1 covers exactly [-1, 1].
    assert split.train_images.min() == -1.0 and split.train_images.max() == 1.0
    counts = np.bincount(split.heldout_labels, minlength=10)
    assert counts.min() >= 26 and counts.max() <= 28  # 15% of ~180 per class, stratified
    assert len(DigitsSource(split="heldout")) == 270


def test_latent_folder_and_zip_read_the_same(tmp_path):
    arrays, _ = write_latents(tmp_path / "folder")
    with zipfile.ZipFile(tmp_path / "data.zip", "w") as archive:
        for root, _, files in os.walk(tmp_path / "folder"):
            for name in files:
                full = os.path.join(root, name)
                archive.write(full, os.path.relpath(full, tmp_path / "folder"))
    folder = LatentSource(path=str(tmp_path / "folder"), num_classes=3, posterior="sample")
    zipped = LatentSource(path=str(tmp_path / "data.zip"), num_classes=3, posterior="sample")
    assert folder.shape == (4, 4, 8) and len(folder) == 6
    for i in range(6):
        np.testing.assert_array_equal(folder[i]["x"], np.transpose(arrays[i], (1, 2, 0)))
        np.testing.assert_array_equal(zipped[i]["x"], folder[i]["x"])
        assert folder[i]["y"] == i % 3


def test_latent_posterior_sampling_and_normalisation(tmp_path):
    arrays, _ = write_latents(tmp_path, shape=(4, 2, 2))
    source = LatentSource(
        path=str(tmp_path), num_classes=3, posterior="mean_std", shift=1.0, scale=(2.0, 3.0)
    )
    assert source.shape == (2, 2, 2)
    raw = source[0]
    rng = np.random.default_rng(5)
    out = source.augment(raw, rng)["x"]
    mean, std = np.split(np.transpose(arrays[0], (1, 2, 0)), 2, axis=-1)
    eps = np.random.default_rng(5).standard_normal(mean.shape, dtype=np.float32)
    np.testing.assert_allclose(out, (mean + std * eps - 1.0) * np.array([2.0, 3.0]), rtol=1e-6)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("corrupt", "Corrupt latent file 00000/img00000002.npy"),
        ("label", "Label out of range"),
        ("empty", "is empty"),
        ("no_index", "has no dataset.json"),
    ],
)
def test_latent_errors_name_the_problem(tmp_path, damage, message):
    write_latents(tmp_path)
    index = tmp_path / "dataset.json"
    match damage:
        case "corrupt":
            (tmp_path / "00000" / "img00000002.npy").write_bytes(b"\x93NUMPY garbage")
        case "label":
            data = json.loads(index.read_text())
            data["labels"][4][1] = 7
            index.write_text(json.dumps(data))
        case "empty":
            index.write_text(json.dumps({"labels": []}))
        case "no_index":
            index.unlink()
    with pytest.raises(DataError, match=message):
        source = LatentSource(path=str(tmp_path), num_classes=3, posterior="sample")
        for i in range(len(source)):
            source[i]


def test_imagefolder_adm_crop_and_flip(tmp_path):
    from PIL import Image

    for label, name in enumerate(["cat", "dog"]):
        os.makedirs(tmp_path / name)
        pixels = np.zeros((40, 60, 3), np.uint8)
        pixels[:, : 30 + 10 * label] = 255  # left part white
        Image.fromarray(pixels).save(tmp_path / name / "a.png")
    source = ImageFolderSource(
        path=str(tmp_path), resolution=16, num_classes=2, horizontal_flip=True
    )
    assert source.class_names == ["cat", "dog"] and source.shape == (16, 16, 3)
    record = source[0]
    assert record["x"].dtype == np.float32 and record["x"].shape == (16, 16, 3)
    # 40x60 -> short side 16: 16x24 bicubic, centre crop removes 4 columns per side.
    crop = adm_center_crop(Image.open(tmp_path / "cat" / "a.png"), 16)
    assert crop.shape == (16, 16, 3) and crop[:, 0].min() == 255 and crop[:, -1].max() == 0
    flipped = None
    for seed in range(8):  # p = 1/2 per draw: some seed flips
        out = source.augment(record, np.random.default_rng(seed))["x"]
        if not np.array_equal(out, record["x"]):
            flipped = out
    np.testing.assert_array_equal(flipped, record["x"][:, ::-1])
    with pytest.raises(DataError, match="Label out of range"):
        ImageFolderSource(path=str(tmp_path), resolution=16, num_classes=1)


def test_iterator_resumes_the_exact_order():
    source = SyntheticSource(shape=(2, 2, 1), num_examples=10)
    first = make_iterator(source, global_batch_size=4, seed=3, read_threads=2)
    seen = [next(first) for _ in range(5)]  # crosses two epochs of 10 records
    state = first.get_state()
    expected = [next(first)["x"] for _ in range(4)]
    second = make_iterator(source, global_batch_size=4, seed=3, read_threads=2)
    second.set_state(state)
    for want in expected:
        np.testing.assert_array_equal(next(second)["x"], want)
    # 5 batches of 4 = two epochs of 10 records (label i % 10 = index): each epoch is a
    # permutation of all records, and the second is shuffled differently.
    labels = np.concatenate([b["y"] for b in seen])
    assert sorted(labels[:10]) == list(range(10)) and sorted(labels[10:]) == list(range(10))
    assert list(labels[:10]) != list(labels[10:])


def test_each_host_reads_its_own_shard():
    source = SyntheticSource(shape=(1, 1, 1), num_classes=1000, num_examples=16)
    labels = []
    for host in range(2):
        iterator = make_iterator(
            source, global_batch_size=8, seed=0, process_index=host, process_count=2, read_threads=0
        )
        batch = next(iterator)
        assert batch["y"].shape == (4,)
        labels.append({int(v) for b in (batch, next(iterator)) for v in b["y"]})
    assert labels[0].isdisjoint(labels[1])
    assert labels[0] | labels[1] == set(range(16))


def test_pipeline_errors():
    source = SyntheticSource(shape=(1, 1, 1), num_examples=4)
    with pytest.raises(DataError, match="fewer than its batch"):
        make_iterator(source, global_batch_size=8, seed=0)
    with pytest.raises(ValueError, match="does not divide among 3 hosts"):
        make_iterator(source, global_batch_size=4, seed=0, process_count=3)
