"""Multi-host pieces that run in one process: the data order, the rows each process reads,
the ``distributed`` config and its errors, and the ``python -m nnx_train`` entry point.

The two-process run itself is ``test_multihost.py``.
"""

import os
import socket
import subprocess
import sys
import time

import grain
import jax
import numpy as np
import pytest
from train_testlib import load

import nnx_sharding as ns
from nnx_train.data import DigitsSource, SyntheticSource, make_iterator
from nnx_train.errors import ConfigError
from nnx_train.multihost import (
    DistributedSettings,
    process_batch_rows,
    start_distributed,
    wait_for_coordinator,
)


class _FlipSource(SyntheticSource):
    """Synthetic records with a random augmentation, to check the augmentation seeds."""

    def augment(self, record, rng):
        return {"x": record["x"] * rng.choice([-1.0, 1.0]) + rng.normal(), "y": record["y"]}


def _pipeline_before_multihost(source, *, global_batch_size: int, seed: int):
    """The 1-process pipeline as it was before the global order (kept verbatim as the
    reference: ``source -> [0::1] -> shuffle -> random_map -> repeat -> batch``)."""
    dataset = grain.MapDataset.source(source)[0::1]
    dataset = dataset.shuffle(seed=seed)
    augment = getattr(source, "augment", None)
    if augment is not None:
        dataset = dataset.random_map(augment, seed=seed + 1)
    dataset = dataset.repeat(None).batch(global_batch_size, drop_remainder=True)
    options = grain.ReadOptions(num_threads=0, prefetch_buffer_size=1)
    return iter(dataset.to_iter_dataset(options))


@pytest.mark.parametrize("name", ["digits", "augmented"])
def test_one_process_order_is_unchanged(name):
    # digits: the embedded default (batch 128, 1527 records: batch 12 crosses an epoch);
    # augmented: a source with random augmentation, 3 epochs in 6 batches.
    if name == "digits":
        source, batch, seed, count = DigitsSource(split="train"), 128, 0, 14
    else:
        source, batch, seed, count = _FlipSource(shape=(2, 2, 1), num_examples=20), 10, 5, 6
    old = _pipeline_before_multihost(source, global_batch_size=batch, seed=seed)
    new = make_iterator(source, global_batch_size=batch, seed=seed, read_threads=0)
    for _ in range(count):
        want, got = next(old), next(new)
        np.testing.assert_array_equal(got["x"], want["x"])  # bitwise: the same records
        np.testing.assert_array_equal(got["y"], want["y"])


@pytest.mark.parametrize("process_count", [2, 4])
def test_process_rows_concatenate_to_the_one_process_batch(process_count):
    source = _FlipSource(shape=(2, 2, 1), num_classes=1000, num_examples=24)
    whole = make_iterator(source, global_batch_size=8, seed=1, read_threads=0)
    parts = [
        make_iterator(
            source,
            global_batch_size=8,
            seed=1,
            process_index=p,
            process_count=process_count,
            read_threads=0,
        )
        for p in range(process_count)
    ]
    for _ in range(7):  # crosses two epochs; augmentation depends on the global position only
        want = next(whole)
        got = [next(part) for part in parts]
        assert got[0]["y"].shape == (8 // process_count,)
        np.testing.assert_array_equal(np.concatenate([g["x"] for g in got]), want["x"])
        np.testing.assert_array_equal(np.concatenate([g["y"] for g in got]), want["y"])


def test_each_process_reads_only_its_records():
    class Counting(SyntheticSource):
        reads: list[int] = []

        def __getitem__(self, index):
            self.reads.append(int(index))
            return super().__getitem__(index)

    source = Counting(shape=(1, 1, 1), num_examples=16)
    iterator = make_iterator(
        source, global_batch_size=8, seed=0, process_index=1, process_count=2, read_threads=0
    )
    next(iterator)
    assert len(source.reads) == 4  # its 4 rows of the global batch of 8, not all 8


def test_resumed_process_iterator_continues_the_order():
    source = _FlipSource(shape=(1, 1, 1), num_examples=12)

    def part():
        return make_iterator(
            source, global_batch_size=6, seed=2, process_index=1, process_count=3, read_threads=0
        )

    first = part()
    for _ in range(3):
        next(first)
    state = first.get_state()
    expected = [next(first)["x"] for _ in range(3)]
    second = part()
    second.set_state(state)
    for want in expected:
        np.testing.assert_array_equal(next(second)["x"], want)


def test_batch_rows_follow_the_batch_sharding():
    # On one process every row of the batch is local; on a 2 x 4 mesh the rows a process
    # holds are the ones `global_batch` fills from its local rows, in the same order.
    config, rules = ns.MeshConfig(data=2, fsdp=4), ns.fsdp_rules()
    mesh = ns.make_mesh(config)
    np.testing.assert_array_equal(process_batch_rows(mesh, rules, 16), np.arange(16))
    local = {"y": np.arange(16, dtype=np.int32) * 10}
    global_array = ns.global_batch(local, mesh=mesh, rules=rules)["y"]
    rows = process_batch_rows(mesh, rules, 16)
    np.testing.assert_array_equal(np.asarray(global_array)[rows], local["y"])
    # A mesh whose batch axes have size 1 holds every row on every device.
    tensor_mesh = ns.make_mesh(ns.MeshConfig(data=1, tensor=8))
    assert len(process_batch_rows(tensor_mesh, ns.tensor_rules(), 4)) == 4


def test_process_count_must_divide_the_global_batch():
    source = SyntheticSource(shape=(1, 1, 1), num_examples=12)
    with pytest.raises(ConfigError) as info:
        make_iterator(source, global_batch_size=8, seed=0, process_count=3)
    assert str(info.value) == (
        "train.batch_size=8 does not divide among 3 hosts; use a multiple of 3."
    )


def _distributed(**values):
    section = load("digits").distributed
    with section.unlocked():
        section.update(values)
    return section


def test_partial_distributed_config_is_one_line():
    with pytest.raises(ConfigError) as info:
        DistributedSettings.from_config(_distributed(coordinator_address="10.0.0.2:1234"))
    assert str(info.value) == (
        "distributed.coordinator_address set but not distributed.num_processes, "
        "distributed.process_id: give all three (process 0 at coordinator_address, ids 0 .. "
        "num_processes - 1), or none of them to detect the cluster (TPU pod, SLURM, Open MPI)."
    )
    with pytest.raises(ConfigError, match="process_id=2 is not below distributed.num_processes=2"):
        DistributedSettings.from_config(
            _distributed(coordinator_address="h:1", num_processes=2, process_id=2)
        )
    with pytest.raises(ConfigError, match="distributed.initialize='maybe'; use one of"):
        DistributedSettings.from_config(_distributed(initialize="maybe"))


def test_single_process_defaults_do_not_join():
    # The defaults ("auto", nothing set, no cluster here) must leave JAX alone: this process
    # has already started its backend, so a join would raise.
    assert start_distributed(_distributed()) is False
    assert start_distributed(_distributed(initialize="off")) is False
    assert jax.process_count() == 1


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again when the block ends


def test_unreachable_coordinator_is_one_line_after_the_timeout():
    port = _closed_port()
    start = time.monotonic()
    with pytest.raises(ConfigError) as info:
        wait_for_coordinator(f"127.0.0.1:{port}", timeout_s=1.0)
    waited = time.monotonic() - start
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(
        f"The coordinator 127.0.0.1:{port} (distributed.coordinator_address) did not answer "
        "within 1 s (distributed.initialization_timeout_s): "
    )
    assert 1.0 <= waited < 10.0  # it retried until the deadline, then gave up
    with pytest.raises(ConfigError, match="is not 'host:port'"):
        wait_for_coordinator("no-port", timeout_s=1.0)


def test_unreachable_coordinator_from_the_command_line(tmp_path):
    """Through the whole program (a fresh process: JAX must not have started): exit 2, one
    line, no abort from the JAX runtime."""
    port = _closed_port()
    command = [
        sys.executable,
        "-m",
        "nnx_train",
        f"--workdir={tmp_path}",
        f"--config.distributed.coordinator_address=127.0.0.1:{port}",
        "--config.distributed.num_processes=2",
        "--config.distributed.process_id=1",
        "--config.distributed.initialization_timeout_s=1",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"error: The coordinator 127.0.0.1:{port} (distributed.coordinator_address) did not "
        "answer within 1 s"
    ), result.stderr[-2000:]


def test_module_entry_point_finds_the_default(tmp_path):
    # `python -m nnx_train` with no --config: the embedded digits default, shortened.
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    command = [
        sys.executable,
        "-m",
        "nnx_train",
        f"--workdir={tmp_path}",
        "--config.train.num_steps=2",
        "--config.samples.num_images=0",
        "--config.eval.name=none",
        "--config.checkpoint.every_steps=0",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "done: step=2" in result.stdout
    assert '"name": "digits"' in (tmp_path / "config.json").read_text()


def test_streaming_sources_take_only_the_default_rows():
    from nnx_train.data import make_source_iterator

    class Stream:  # a streaming source: builds its own iterator from the options
        def make_iterator(self, **options):
            return options

    options = {"global_batch_size": 8, "seed": 0, "process_index": 1, "process_count": 2}
    assert make_source_iterator(Stream(), **options, batch_rows=range(4, 8)) == options
    with pytest.raises(ConfigError, match="places 8 rows of the batch on process 1"):
        make_source_iterator(Stream(), **options, batch_rows=range(8))
