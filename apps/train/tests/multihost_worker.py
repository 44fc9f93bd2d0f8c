"""One process of ``test_multihost.py``: trains, stops, resumes, samples and evaluates.

Run as ``python multihost_worker.py SCENARIO PROCESS_ID NUM_PROCESSES PORT WORKDIR OUT`` with
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` and ``JAX_PLATFORMS=cpu`` (the test
sets them). The process joins the job through the trainer's own ``distributed.*`` keys,
trains `CONFIG_OVERRIDES` for `STOP_AFTER` steps (the checkpoint written then is the last
one), then runs ``train`` again, which resumes from that checkpoint and finishes: sample
grid, evaluation (SCENARIO ``digits``: the digits classifier metrics; ``fid``: FID of a tiny
SiT on RGB data), ``metrics.json``. Process 0 then writes the final parameters and
EMA (gathered from both processes) to ``OUT/final_params.npz``.

The test imports `scenario` and `final_arrays` for its one-process reference.
"""

from __future__ import annotations

import os
import sys

# Width 128: the MLP kernels (128 x 512 float32 = 256 KiB) reach FSDP's 256 KiB threshold
# and are split over all 8 devices, i.e. over both processes (asserted below).
CONFIG_OVERRIDES = (
    "model.hidden_size=128",
    "model.depth=1",
    "train.batch_size=16",
    "train.num_steps=4",
    "train.log_every=1",
    "checkpoint.every_steps=2",
    "loader.read_threads=0",
    "sharding.strategy=fsdp",
    "sharding.data=1",
    "sharding.fsdp=8",
    "sampler.num_steps=2",
    "samples.num_images=10",
    "eval.num_samples=25",  # 3 batches of 10, the last one padded and trimmed
    "eval.batch_size=10",
    "logging.progress_bar=False",
)
# The FID scenario: a tiny SiT on 16x16 RGB synthetic data, the same FSDP split, scored at the
# end with the trainer's FID evaluator (a random-weight FID Inception and random reference
# statistics that the test writes to OUT: `fid_files`).
FID_CONFIG = ("sit_b2.py", "tiny")
FID_OVERRIDES = (
    "model.hidden_size=128",
    "model.num_heads=2",
    "data.shape=(16,16,3)",
    "model.input_size=16",
    "model.in_channels=3",
    "train.batch_size=16",
    "train.num_steps=4",
    "train.log_every=1",
    "checkpoint.every_steps=2",
    "loader.read_threads=0",
    "sharding.strategy=fsdp",
    "sharding.data=1",
    "sharding.fsdp=8",
    "sampler.num_steps=2",
    "samples.num_images=8",
    "eval.name=fid",
    "eval.num_samples=12",  # 2 batches of 8, the last one padded and trimmed
    "eval.batch_size=8",
    "eval.ema=0.9999",
    "logging.progress_bar=False",
)
STOP_AFTER = 2


def fid_files(out: str) -> tuple[str, str]:
    """Paths of the Inception weights and reference statistics of the FID scenario."""
    return os.path.join(out, "inception.safetensors"), os.path.join(out, "reference.npz")


def scenario(name: str, out: str) -> tuple[str, tuple[str, ...]]:
    """``(config path, overrides)`` of the scenario ``"digits"`` or ``"fid"``."""
    configs = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "configs")
    if name == "digits":
        return os.path.join(configs, "digits.py"), CONFIG_OVERRIDES
    weights, reference = fid_files(out)
    path = os.path.join(configs, FID_CONFIG[0]) + ":" + FID_CONFIG[1]
    files = (f"eval.inception_weights={weights}", f"eval.reference_stats={reference}")
    return path, (*FID_OVERRIDES, *files)


def final_arrays(config, workdir: str) -> tuple[dict, object]:
    """``({"params/...": array, "ema/...": array}, run)`` of the newest checkpoint.

    Restores it with the trainer's own `Run` (mesh, shardings, checkpoint) and gathers
    every array to the host (a collective: every process calls it).
    """
    import jax

    from nnx_train.multihost import host_array
    from nnx_train.run import Run

    run = Run(config, workdir)
    arrays = {}
    for group in ("params", "ema"):
        leaves = jax.tree_util.tree_leaves_with_path(getattr(run.state, group))
        for path, leaf in leaves:
            arrays[group + jax.tree_util.keystr(path)] = host_array(leaf)
    return arrays, run


def _spans_both_processes(leaf) -> bool:
    """True when ``leaf`` is split (not replicated) and both processes hold parts of it."""
    slices = {}
    for device, index in leaf.sharding.devices_indices_map(leaf.shape).items():
        slices.setdefault(str(index), set()).add(device.process_index)
    owners = set().union(*slices.values())
    return len(slices) > 1 and owners == {0, 1}


def main(name: str, process_id: int, num_processes: int, port: int, workdir: str, out: str) -> None:
    import jax
    import numpy as np

    from nnx_train.cli import load_config

    # The resumed call compiles the same programs again: read them from a per-process cache.
    jax.config.update("jax_compilation_cache_dir", os.path.join(out, f"jax_cache_{process_id}"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    from nnx_train.multihost import process_batch_rows
    from nnx_train.train import train

    path, base = scenario(name, out)
    overrides = (
        *base,
        f"distributed.coordinator_address=127.0.0.1:{port}",
        f"distributed.num_processes={num_processes}",
        f"distributed.process_id={process_id}",
        "distributed.initialization_timeout_s=60",
    )
    config = load_config(path, overrides)
    # The interrupted call stops before any evaluation: skip building its classifier (~5 s).
    first = train(load_config(path, (*overrides, "eval.name=none")), workdir, stop_after=STOP_AFTER)
    assert (jax.process_count(), jax.device_count(), jax.local_device_count()) == (2, 8, 4)
    assert first["step"] == STOP_AFTER and not first["finished"], first

    final = train(config, workdir)  # resumes from the checkpoint of step STOP_AFTER
    assert final["resumed_from"] == STOP_AFTER and final["finished"], final

    arrays, run = final_arrays(config, workdir)
    spanning = [
        jax.tree_util.keystr(path)
        for path, leaf in jax.tree_util.tree_leaves_with_path(run.state.params)
        if _spans_both_processes(leaf)
    ]
    assert spanning, "no parameter is split across the two processes"
    rows = process_batch_rows(run.mesh, run.rules, config.train.batch_size)
    np.testing.assert_array_equal(rows, np.arange(8) + 8 * process_id)
    if process_id == 0:
        np.savez(os.path.join(out, "final_params.npz"), **arrays)
        with open(os.path.join(out, "spanning.txt"), "w") as handle:
            handle.write("\n".join(spanning))
    run.checkpointer.close()


if __name__ == "__main__":
    name, numbers, folders = sys.argv[1], sys.argv[2:5], sys.argv[5:7]
    main(name, *(int(n) for n in numbers), *folders)
