"""The benchmarks time the same mathematics on every JAX path.

``tools/bench`` compares the library's train step with a plain ``jax.jit`` baseline and with
``nnx.jit``; the ratios mean something only if the three compute the same update. Here each
path takes two steps from the same weights on a tiny DiT, and the parameters must agree.
Tolerance: 1e-6 absolute on parameters of scale ~0.1 after two AdamW steps of size 1e-4.
The programs differ only in structure, so XLA may reorder float32 sums (measured: 0 to
1e-7), while drawing the step noise from another key moves the parameters by 4e-4.
"""

from __future__ import annotations

import importlib.util
import pathlib

import jax
import numpy as np
import pytest
from flax import nnx

# tools/bench is a folder of scripts, not a package: load the one this test needs by path.
_spec = importlib.util.spec_from_file_location(
    "dit_steps", pathlib.Path(__file__).resolve().parents[1] / "tools" / "bench" / "dit_steps.py"
)
dit_steps = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dit_steps)

TOLERANCE = 1e-6


def _tiny() -> dict:
    return dit_steps.dit_kwargs("tiny", resolution=8, channels=1, patch=2, classes=10)


def _two_steps(build, **options) -> list[np.ndarray]:
    x0, y = dit_steps.batch_arrays(4, 8, 1, 10)
    run = build(_tiny(), x0, y, **options)
    losses = [float(run()), float(run())]
    assert all(np.isfinite(losses))
    return [np.asarray(leaf) for leaf in jax.tree.leaves(run.params())]


@pytest.fixture(scope="module")
def library_params() -> list[np.ndarray]:
    return _two_steps(dit_steps.library_step)


def _max_difference(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    assert [x.shape for x in a] == [x.shape for x in b]
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))


def test_paths_reach_the_same_parameters(library_params):
    initial = dit_steps.build_model(_tiny(), scan_blocks=False)
    start = [np.asarray(leaf) for leaf in jax.tree.leaves(nnx.state(initial, nnx.Param))]
    assert _max_difference(library_params, start) > 1e-5  # the steps moved the weights
    for build in (dit_steps.jax_pure_step, dit_steps.nnx_jit_step):
        assert _max_difference(_two_steps(build), library_params) < TOLERANCE, build.__name__


def test_scanned_blocks_reach_the_same_parameters(library_params):
    scanned = _two_steps(dit_steps.library_step, scan_blocks=True)
    assert _max_difference(scanned, library_params) < TOLERANCE
