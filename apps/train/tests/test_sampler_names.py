"""The named sampler variants of the app's config: DPM-Solver++(3M) reference, REPA's Heun
and grid, each building the nnx-samplers object that its own test pins to the upstream code."""

import numpy as np
from ml_collections import ConfigDict

import nnx_samplers as sp
from nnx_train.sampler_config import build_grid, build_solver


def _sampler(**keys):
    base = {"solver": "heun", "num_steps": 8, "grid": "uniform", "t_start": 1.0}
    return ConfigDict({**base, "diffusion": "sigma", **keys})


def test_named_solver_variants():
    reference = build_solver(_sampler(solver="dpm_solver_3m_reference"))
    assert isinstance(reference, sp.DPMSolverPlusPlus3M) and reference.variant == "reference"
    assert build_solver(_sampler(solver="dpm_solver_3m")).variant == "exact"
    repa_heun = build_solver(_sampler(solver="heun_repa"))
    assert isinstance(repa_heun, sp.Heun) and repa_heun.guidance_decision == "step_start"
    assert build_solver(_sampler()).guidance_decision == "evaluation"


def test_repa_grid_is_the_linspace_then_zero():
    times = np.asarray(build_grid(_sampler(grid="repa"), time_shift=1.0).times())
    assert times[0] == 1.0 and times[-1] == 0.0
    np.testing.assert_allclose(times[-2], 0.04, rtol=1e-6)  # REPA's t_last
    np.testing.assert_allclose(np.diff(times[:-1]), np.diff(times[:-1])[0], rtol=1e-5)
