"""Horizontal flips of latent datasets: the stored latent of the flipped image, chosen per
(seed, global example position), so that a resumed run sees the same flips."""

import importlib.util
import os

import numpy as np
import pytest

from nnx_train.data import LatentSource
from nnx_train.data.pipeline import make_iterator
from nnx_train.errors import ConfigError, DataError

TOOL = os.path.join(os.path.dirname(__file__), "..", "..", "..", "tools", "extract_latents.py")
NUM_IMAGES = 6


def _tool():
    spec = importlib.util.spec_from_file_location("extract_latents_tool_flips", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _encode(batch):
    """A stand-in encoder: every other pixel, CHW (what the tool stores per image)."""
    return np.transpose(batch[:, ::2, ::2, :], (0, 3, 1, 2))


def _extract(root, dest, flip):
    _tool().extract(
        str(root), str(dest), encode=_encode, resolution=8, flip=flip, batch_size=4, progress=False
    )


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("flip_images")
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        os.makedirs(root / label)
        for i in range(NUM_IMAGES // 2):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(
                root / label / f"{i}.png"
            )
    return root


def _entry_of(x, stored):
    matches = [j for j, z in enumerate(stored) if np.array_equal(x, z)]
    assert len(matches) == 1
    return matches[0]


def _batches(source, seed, count, state=None):
    iterator = make_iterator(source, global_batch_size=3, seed=seed, read_threads=0)
    if state is not None:
        iterator.set_state(state)
    return [next(iterator) for _ in range(count)], iterator


def test_latent_flips_read_the_flipped_copies_per_epoch(images, tmp_path):
    _extract(images, tmp_path, flip=True)
    plain = LatentSource(path=str(tmp_path), num_classes=2, posterior="sample")
    stored = [plain[j]["x"] for j in range(len(plain))]
    assert len(stored) == 2 * NUM_IMAGES
    # The tool's copy i + N is the latent of the mirrored image (not a mirrored latent here:
    # the stand-in encoder subsamples even pixels, so mirroring changes which are kept).
    assert not np.array_equal(stored[NUM_IMAGES], stored[0][:, ::-1])

    source = LatentSource(
        path=str(tmp_path), num_classes=2, posterior="sample", horizontal_flip=True
    )
    assert len(source) == NUM_IMAGES
    batches, _ = _batches(source, seed=0, count=8)  # 4 epochs of 2 batches of 3
    entries = [_entry_of(x, stored) for batch in batches for x in batch["x"]]
    labels = [int(y) for batch in batches for y in batch["y"]]
    for epoch in range(4):
        chunk = entries[epoch * NUM_IMAGES : (epoch + 1) * NUM_IMAGES]
        # Every image once per epoch, as itself or as its flipped copy, with its label.
        assert sorted(e % NUM_IMAGES for e in chunk) == list(range(NUM_IMAGES))
    assert labels == [int(plain[e % NUM_IMAGES]["y"]) for e in entries]
    flipped = sum(e >= NUM_IMAGES for e in entries)
    # Binomial(24, 1/2): 12 +- 2.4; [4, 20] is beyond 3 standard deviations either way.
    assert 4 <= flipped <= 20

    # Deterministic per (seed, position): the same seed flips the same way, and a run resumed
    # from the iterator state after 3 batches continues with the same flips.
    again, _ = _batches(source, seed=0, count=8)
    for a, b in zip(batches, again, strict=True):
        np.testing.assert_array_equal(a["x"], b["x"])
    _, partial = _batches(source, seed=0, count=3)
    resumed, _ = _batches(source, seed=0, count=5, state=partial.get_state())
    for a, b in zip(batches[3:], resumed, strict=True):
        np.testing.assert_array_equal(a["x"], b["x"])
    other, _ = _batches(source, seed=1, count=8)
    assert [_entry_of(x, stored) for b in other for x in b["x"]] != entries


def test_flips_of_latents_need_flipped_copies(images, tmp_path):
    _extract(images, tmp_path, flip=False)
    with pytest.raises(DataError, match="--flip"):
        LatentSource(path=str(tmp_path), num_classes=2, posterior="sample", horizontal_flip=True)


def test_flips_of_latent_records_are_refused():
    from nnx_train.build import build_data_source
    from nnx_train.defaults import arrayrecord_data, base_config

    config = base_config()
    config.data = arrayrecord_data(path="/data/x", content="latents", horizontal_flip=True)
    with pytest.raises(ConfigError, match="--flip"):
        build_data_source(config)
