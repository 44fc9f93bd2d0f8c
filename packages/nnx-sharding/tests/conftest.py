"""Fixtures shared by nnx-sharding's tests: one initial state, one batch, one step per strategy.

The suite runs on 8 fake CPU devices with cheap compiles (``nnx_nets.testing``), set here so
that it passes alone (``cd packages/nnx-sharding && uv run --group test pytest``).
``sharding_tiny_dit`` is importable because the pytest configuration (this package's
``pyproject.toml``, and the root's) lists this folder in ``pythonpath``.

Compiling is the expensive part on CPU, so each program (initialiser, reference step, one
sharded step per strategy) is compiled once per session and its results are reused.
"""

from __future__ import annotations

import functools
import os

os.environ.setdefault("EPATH_USE_TF", "false")  # orbax's paths: never probe for TensorFlow

from nnx_nets.testing import configure_cpu_tests  # noqa: E402

configure_cpu_tests()

import jax  # noqa: E402
import pytest  # noqa: E402
import sharding_tiny_dit as tiny  # noqa: E402
from flax import nnx  # noqa: E402

import nnx_sharding as ns  # noqa: E402


@pytest.fixture(scope="session")
def eight_devices() -> list[jax.Device]:
    devices = jax.devices()
    assert len(devices) == 8, "configure_cpu_tests (above) gives 8 fake CPU devices"
    return devices


@pytest.fixture(scope="session")
def fsdp_init(eight_devices):
    """TinyDiT + AdamW made by `sharded_init` under FSDP on 8 devices: (model, optimizer)."""
    config, rules = tiny.STRATEGIES["fsdp"]
    mesh = ns.make_mesh(config)
    objects = ns.sharded_init(
        tiny.build, mesh=mesh, rules=rules, compiler_options=tiny.FAST_COMPILE
    )
    return objects, mesh, rules


@pytest.fixture(scope="session")
def initial(fsdp_init):
    """(graphdef, state with numpy leaves): the common starting point of every step test."""
    graphdef, state = nnx.split(fsdp_init[0])
    return graphdef, tiny.to_host(state)


@pytest.fixture(scope="session")
def batch():
    return tiny.make_batch()


@pytest.fixture(scope="session")
def reference_step(initial, batch):
    """Single-device step: (flat new state, loss, flat grads)."""
    graphdef, state = initial
    state = jax.device_put(state, jax.devices()[0])
    new_state, loss, grads = tiny.make_step(graphdef)(state, batch)
    return tiny.flat(new_state), float(loss), tiny.flat(grads)


@pytest.fixture(scope="session")
def sharded_step(initial, batch, eight_devices):
    """strategy name -> (new state as jax arrays, loss, grads, mesh, rules), cached."""
    graphdef, state = initial

    @functools.cache
    def run(name: str):
        config, rules = tiny.STRATEGIES[name]
        mesh = ns.make_mesh(config)
        shardings = ns.named_shardings(state, mesh=mesh, rules=rules)
        sharded_state = jax.device_put(state, shardings)  # numpy -> shards
        with ns.activation_sharding(mesh, rules):
            global_batch = ns.global_batch(batch, mesh=mesh, rules=rules)
            new_state, loss, grads = tiny.make_step(graphdef, state_shardings=shardings)(
                sharded_state, global_batch
            )
        return new_state, float(loss), grads, mesh, rules

    return run
