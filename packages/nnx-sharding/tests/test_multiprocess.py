"""Two local processes with 4 CPU devices each, joined by jax.distributed, take the same FSDP
step as one process with 8 devices.

The workers save the new state shard by shard (a multi-host orbax save); this process restores
it on 4 devices and compares it with its own 8-device step, so nothing is gathered in the
workers.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
import sharding_tiny_dit as tiny
from flax import nnx
from jax.sharding import PartitionSpec as P

import nnx_sharding as ns

WORKER = Path(__file__).with_name("sharding_multiprocess_worker.py")
# Each worker used ~17 s of CPU here (imports 7 s, step compile 7 s, orbax save 3 s); the
# limit leaves room for a loaded 2-core CI machine.
TIMEOUT_S = 240

# Same reasoning as test_step_parity: only the order of the cross-device sums differs
# (gloo all-reduce across processes versus in-process reductions); AdamW's second moment gets
# twice the tolerance there as well. Measured: loss exact, state 3.0e-7, second moment 4.3e-7.
RELATIVE_TOLERANCE = 1e-6


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run_workers(workdir: Path) -> list[subprocess.CompletedProcess]:
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
        "JAX_PLATFORMS": "cpu",
    }
    port = _free_port()
    processes = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(process_id), str(port), str(workdir)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for process_id in range(2)
    ]
    outputs = []
    try:
        for process in processes:
            stdout, _ = process.communicate(timeout=TIMEOUT_S)
            outputs.append(subprocess.CompletedProcess(process.args, process.returncode, stdout))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return outputs


@pytest.mark.multiprocess
def test_two_processes_take_the_same_step_as_one(tmp_path, initial, sharded_step):
    graphdef, state = initial
    np.savez(tmp_path / "initial.npz", **tiny.flat(state))

    results = _run_workers(tmp_path)
    for process_id, result in enumerate(results):
        assert result.returncode == 0, f"process {process_id} failed:\n{result.stdout[-4000:]}"

    # The single-process reference: the same FSDP step on the 8 devices of this process.
    reference_state, reference_loss, _, _, _ = sharded_step("fsdp")
    loss = float(np.load(tmp_path / "loss.npy"))
    assert abs(loss - reference_loss) <= RELATIVE_TOLERANCE * abs(reference_loss)

    # The checkpoint the two processes wrote shard by shard, restored here on 4 devices.
    config, rules = tiny.STRATEGIES["fsdp"]
    mesh = ns.make_mesh(ns.MeshConfig(data=1, fsdp=4), devices=jax.devices()[:4])
    _, target = ns.abstract_state(tiny.build, mesh=mesh, rules=rules)
    restored = ns.restore_state(tmp_path / "ckpt", target)
    (error, where), (nu_error, nu_where) = tiny.state_errors(
        tiny.flat(restored), tiny.flat(reference_state)
    )
    assert error <= RELATIVE_TOLERANCE, (where, error)
    assert nu_error <= 2 * RELATIVE_TOLERANCE, (nu_where, nu_error)  # nu ~ g^2
    model, optimizer = nnx.merge(graphdef, restored)
    assert model.blocks[0].fc1.kernel[...].sharding.spec == P("fsdp", None)
    assert int(optimizer.step[...]) == 1
