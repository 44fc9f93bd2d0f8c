"""The trainer on WebDataset shards: stop at step 2, resume, and continue the same data order.

A tiny SiT-B/2 recipe reads latent shards (``data.name="webdataset"``) for 2 + 2 steps in
two calls of `train`; the iterator position saved at step 4 (through
`nnx_train.checkpointing.Checkpointer`, ``grain.checkpoint``) must be the position of a fresh
iterator after 4 batches, which a restart from the first batch would not reach.
(Bitwise equality of the whole resumed state is `test_resume.py`'s subject.)
"""

import json

import numpy as np
from readers_testlib import npy_bytes, write_shard
from train_testlib import load

from nnx_train import build, defaults
from nnx_train.data import make_source_iterator
from nnx_train.train import train


def _shards(folder):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for shard in range(3):
        samples = [
            (
                f"s{shard}_{i}",
                {
                    "npy": npy_bytes(rng.standard_normal((4, 8, 8)).astype(np.float32)),
                    "cls": str(i % 10).encode(),
                },
            )
            for i in range(7)
        ]
        write_shard(str(folder / f"shard-{shard:06d}.tar"), samples)


def test_webdataset_run_resumes_the_data_order(tmp_path):
    _shards(tmp_path / "shards")
    config = load("sit_b2", "train.num_steps=4", "checkpoint.every_steps=2", arg="tiny")
    with config.unlocked():
        config.data = defaults.webdataset_data(
            path=str(tmp_path / "shards"),
            content="latents",
            posterior="sample",
            num_classes=10,
            shuffle_buffer=5,
        )
        config.samples.num_images = 0
        config.loader.read_threads = 2
    first = train(config, str(tmp_path / "run"), stop_after=2)
    second = train(config, str(tmp_path / "run"))
    assert first["step"] == 2 and second["resumed_from"] == 2 and second["step"] == 4

    saved = json.loads(
        (tmp_path / "run" / "checkpoints" / "4" / "data" / "process_0-of-1.json").read_text()
    )
    source = build.build_data_source(config)
    iterator = make_source_iterator(
        source, global_batch_size=8, seed=config.seed, prefetch_batches=0
    )
    for _ in range(4):
        next(iterator)
    assert saved == iterator.get_state()
    # 4 steps x batch 8 = 32 records: past the first epoch (21 records) into window 2.
    assert saved["epoch"] == 1 and saved["window"] == 2
