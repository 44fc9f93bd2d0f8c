"""One process of the 2-process test: joins the job, takes one FSDP step, saves it.

Run as ``python sharding_multiprocess_worker.py PROCESS_ID PORT WORKDIR`` with
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` and ``JAX_PLATFORMS=cpu`` (the test
sets them). WORKDIR holds ``initial.npz`` (the starting state, keyed like
``sharding_tiny_dit.flat``) and receives ``ckpt/`` (the state after the step, written by both
processes) and ``loss.npy`` (from process 0).
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import numpy as np
import sharding_tiny_dit as tiny  # the script's folder is on sys.path

import nnx_sharding as ns


def main(process_id: int, port: int, workdir: Path) -> None:
    info = ns.initialize_distributed(
        coordinator_address=f"127.0.0.1:{port}",
        num_processes=2,
        process_id=process_id,
        initialization_timeout_s=60,
    )
    assert (info.process_count, info.device_count, info.local_device_count) == (2, 8, 4), info

    config, rules = tiny.STRATEGIES["fsdp"]
    mesh = ns.make_mesh(config)  # one global 8-device mesh over both processes
    graphdef, target = ns.abstract_state(tiny.build, mesh=mesh, rules=rules)

    # Global arrays from the starting values: each process fills only its own shards.
    initial = np.load(workdir / "initial.npz")

    def to_global(path, leaf: jax.ShapeDtypeStruct) -> jax.Array:
        values = initial[tiny.key_of(path)]
        return jax.make_array_from_callback(leaf.shape, leaf.sharding, lambda i: values[i])

    state = jax.tree_util.tree_map_with_path(to_global, target)

    # Each process loads its own half of the batch rows.
    batch = tiny.make_batch()
    rows = len(batch["t"]) // info.process_count
    local = {
        key: value[process_id * rows : (process_id + 1) * rows] for key, value in batch.items()
    }
    global_batch = ns.global_batch(local, mesh=mesh, rules=rules)
    assert global_batch["x0"].shape == batch["x0"].shape

    shardings = ns.named_shardings(target, mesh=mesh, rules=rules)
    with ns.activation_sharding(mesh, rules):
        new_state, loss, _ = tiny.make_step(graphdef, state_shardings=shardings)(
            state, global_batch
        )

    # Sharded save from both processes (each writes only its own shards). The test restores
    # it in one process and compares with its own 8-device step: no gather here.
    ns.save_state(workdir / "ckpt", new_state)
    if process_id == 0:
        np.save(workdir / "loss.npy", np.asarray(loss))  # a replicated scalar


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]))
