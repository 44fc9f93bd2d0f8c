"""WebDataset tar shards: shard listing, per-host split, shuffling and exact resume.

Records are latents whose every value is their id (posterior ``"sample"``, no
normalisation), so each batch shows which records it holds and in what order.
"""

import json

import grain
import numpy as np
import orbax.checkpoint as ocp
import pytest
from PIL import Image
from readers_testlib import png_bytes, write_id_shards, write_shard

from nnx_train import build, defaults
from nnx_train.data import (
    LatentCodec,
    PixelCodec,
    WebDatasetSource,
    adm_center_crop,
    expand_shards,
    make_source_iterator,
)
from nnx_train.errors import ConfigError, DataError

COUNTS = [5, 3, 4, 6, 2]  # records per shard: uneven on purpose


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shards")
    return folder, write_id_shards(folder, COUNTS)


def _source(folder, shuffle_buffer=3):
    codec = LatentCodec(posterior="sample")
    return WebDatasetSource(
        path=str(folder), codec=codec, num_classes=7, shuffle_buffer=shuffle_buffer
    )


def _ids(iterator, num_batches):
    batches = [next(iterator) for _ in range(num_batches)]
    for batch in batches:  # the label is written as id % 7
        np.testing.assert_array_equal(batch["x"][:, 0, 0, 0].astype(int) % 7, batch["y"])
    return [[int(v) for v in b["x"][:, 0, 0, 0]] for b in batches]


def test_shard_lists(shards):
    folder, _ = shards
    names = [str(folder / f"shard-{i:06d}.tar") for i in range(5)]
    assert expand_shards(str(folder)) == names
    assert expand_shards(str(folder / "shard-{000001..000003}.tar")) == names[1:4]
    assert expand_shards(str(folder / "shard-00000[24].tar")) == [names[2], names[4]]
    with pytest.raises(DataError, match=r"2 of the 7 shards .* do not exist \(first: .*05.tar"):
        expand_shards(str(folder / "shard-{000000..000006}.tar"))


@pytest.mark.parametrize("process_count", [1, 2, 3])
def test_hosts_read_disjoint_shards_covering_each_epoch(shards, process_count):
    folder, ids = shards
    source = _source(folder)
    epochs = []
    for process_index in range(process_count):
        iterator = source.make_iterator(
            global_batch_size=process_count,  # one record per host and step
            seed=1,
            process_index=process_index,
            process_count=process_count,
            prefetch_batches=0,
        )
        local = sum(COUNTS[process_index::process_count])
        order = [row[0] for row in _ids(iterator, 2 * local)]
        first, second = order[:local], order[local:]
        assert sorted(first) == sorted(second)  # each epoch reads this host's records once
        epochs.append((first, second))
    union = [i for first, _ in epochs for i in first]
    assert sorted(union) == ids  # every record on exactly one host
    if process_count == 1:
        assert epochs[0][0] != epochs[0][1]  # reshuffled per epoch
        assert epochs[0][0] != ids  # and shuffled at all


def test_same_seed_same_order_other_seed_other_order(shards):
    folder, _ = shards
    source = _source(folder)

    def order(seed):
        iterator = source.make_iterator(global_batch_size=4, seed=seed, prefetch_batches=0)
        return _ids(iterator, 10)

    assert order(3) == order(3)
    assert order(3) != order(4)


@pytest.mark.parametrize("consumed", [1, 4, 6, 11])  # mid-window, window end, epoch 2
@pytest.mark.parametrize("prefetch", [0, 2])
def test_resume_continues_the_exact_order(shards, consumed, prefetch):
    folder, _ = shards
    source = _source(folder, shuffle_buffer=4)

    def fresh():
        return source.make_iterator(
            global_batch_size=3, seed=0, read_threads=2, prefetch_batches=prefetch
        )

    iterator = fresh()
    _ids(iterator, consumed)
    state = json.loads(json.dumps(iterator.get_state()))  # what the checkpoint stores
    expected = _ids(iterator, 8)
    resumed = fresh()
    resumed.set_state(state)
    assert _ids(resumed, 8) == expected


def test_resume_through_the_grain_checkpoint_handler(shards, tmp_path):
    """The path `nnx_train.checkpointing.Checkpointer` uses: grain.checkpoint.CheckpointSave
    inside an orbax CheckpointManager item."""
    folder, _ = shards
    source = _source(folder)
    iterator = source.make_iterator(global_batch_size=2, seed=5, prefetch_batches=2)
    _ids(iterator, 7)
    manager = ocp.CheckpointManager(tmp_path / "ckpt", item_names=("data",))
    manager.save(7, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(iterator)))
    manager.wait_until_finished()
    expected = _ids(iterator, 6)
    resumed = source.make_iterator(global_batch_size=2, seed=5, prefetch_batches=2)
    manager.restore(7, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(resumed)))
    assert _ids(resumed, 6) == expected
    manager.close()


def test_pixels_are_adm_crops_with_seeded_flips(tmp_path):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (10, 14, 3), dtype=np.uint8) for _ in range(6)]
    samples = [
        (f"k{i}", {"png": png_bytes(im), "cls": str(i).encode()}) for i, im in enumerate(images)
    ]
    write_shard(str(tmp_path / "shard-000000.tar"), samples)
    source = WebDatasetSource(
        path=str(tmp_path), codec=PixelCodec(resolution=4, horizontal_flip=True), num_classes=6
    )
    assert source.shape == (4, 4, 3)
    iterator = make_source_iterator(
        source, global_batch_size=6, seed=0, process_index=0, process_count=1, read_threads=2
    )
    flips = []
    for _ in range(4):
        batch = next(iterator)
        assert batch["x"].dtype == np.uint8 and batch["x"].shape == (6, 4, 4, 3)
        for x, label in zip(batch["x"], batch["y"]):
            crop = adm_center_crop(Image.fromarray(images[int(label)]), 4)
            flipped = not np.array_equal(x, crop)
            np.testing.assert_array_equal(x, crop[:, ::-1] if flipped else crop)
            flips.append(flipped)
    assert 0 < sum(flips) < len(flips)  # probability 1/2 each: all-or-none has odds 2**-23


def _one_line(error, match, call):
    with pytest.raises(error, match=match) as info:
        call()
    assert "\n" not in str(info.value)


def test_errors_name_the_problem(shards, tmp_path):
    folder, _ = shards
    source = _source(folder)
    _one_line(
        DataError,
        r"Process 5 of 6 gets no WebDataset shard: .* has only 5 shards.*at least 6 shards",
        lambda: source.make_iterator(global_batch_size=6, seed=0, process_index=5, process_count=6),
    )
    _one_line(DataError, "No WebDataset shards at", lambda: _source(tmp_path / "none"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "shard-000000.tar").write_bytes(b"\x01" * 700)
    _one_line(
        DataError,
        "Cannot read WebDataset shard .*bad/shard-000000.tar",
        lambda: _source(tmp_path / "bad"),
    )
    write_shard(str(tmp_path / "shard-000000.tar"), [("a", {"jpg": b"x", "txt": b"cat"})])
    _one_line(
        DataError,
        r"sample a of .*shard-000000.tar has fields \['jpg', 'txt'\]; expected one of \('npy',\)",
        lambda: _source(tmp_path),
    )
    iterator = source.make_iterator(global_batch_size=1, seed=0, prefetch_batches=0)
    state = {**iterator.get_state(), "num_shards": 4}
    _one_line(DataError, "saved data position is for 4 shards", lambda: iterator.set_state(state))


def test_truncated_shard_is_named_when_read(shards, tmp_path):
    folder, _ = shards
    data = (folder / "shard-000003.tar").read_bytes()
    (tmp_path / "shard-000000.tar").write_bytes((folder / "shard-000000.tar").read_bytes())
    (tmp_path / "shard-000001.tar").write_bytes(data[: len(data) // 2])
    source = _source(tmp_path)
    iterator = source.make_iterator(global_batch_size=1, seed=0, prefetch_batches=0)
    _one_line(DataError, "shard-000001.tar", lambda: [next(iterator) for _ in range(12)])


def test_build_reads_webdataset_config(shards):
    folder, _ = shards
    config = defaults.base_config()
    config.data = defaults.webdataset_data(
        path=str(folder), content="latents", posterior="sample", num_classes=7
    )
    config.autoencoder.shift, config.autoencoder.scale = (1.0,), (0.5,)
    source = build.build_data_source(config)
    assert isinstance(source, WebDatasetSource) and source.shape == (2, 2, 2)
    iterator = make_source_iterator(source, global_batch_size=5, seed=0, prefetch_batches=0)
    batch = next(iterator)
    ids = batch["x"][:, 0, 0, 0] / 0.5 + 1.0  # undo (z - shift) * scale
    np.testing.assert_array_equal(ids.astype(int) % 7, batch["y"])
    config.data.shuffle_buffer = 0
    with pytest.raises(ConfigError, match="data.shuffle_buffer=0"):
        build.build_data_source(config)
