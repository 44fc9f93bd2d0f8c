"""``config.sampler`` and ``config.guidance`` -> nnx-samplers solver, time grid, guidance
and velocity adapter.

Keys a choice does not read must keep their defaults: ``sampler.diffusion`` belongs to
``euler_maruyama``, ``sampler.t_start`` to the ``uniform`` grid, and the guidance scale,
interval and channels to ``guidance.name="cfg"``; anything else is a `ConfigError`. The DDPM
solvers (``ddpm``, ``ddim``) and their respaced ``ddpm`` grid belong to ``objective.name="ddpm"``
(:func:`ddpm_generate`); the flow recipes refuse them.
"""

from __future__ import annotations

from collections.abc import Callable

from ml_collections import ConfigDict

import nnx_samplers as sp
from nnx_train.constructors import reject_ignored, unknown_name
from nnx_train.errors import ConfigError
from nnx_train.sampling import GuidanceSpec, make_flow_generate

__all__ = [
    "GRID_NAMES",
    "PATH_NAMES",
    "SOLVER_NAMES",
    "build_grid",
    "build_guidance",
    "build_solver",
    "ddpm_generate",
    "flow_generate",
    "sampler_path",
]

PATH_NAMES = ("linear", "gvp", "vp")

SOLVERS: dict[str, Callable[[], sp.Solver]] = {
    "euler": sp.Euler,
    "heun": sp.Heun,
    "euler_maruyama": sp.EulerMaruyama,
    "euler_jump": sp.EulerJump,
    "dpm_solver_2m": sp.DPMSolverPlusPlus2M,
    "dpm_solver_3m": sp.DPMSolverPlusPlus3M,
    # The weight 1/2 - phi2/h of the official dpm-solver code, k-diffusion and diffusers
    # (order about 2.3): to reproduce a published DPM-Solver++(3M) number.
    "dpm_solver_3m_reference": lambda: sp.DPMSolverPlusPlus3M(variant="reference"),
    # REPA's Heun: whether the corrector is guided is decided at the step's start time.
    "heun_repa": lambda: sp.Heun(guidance_decision="step_start"),
    "edm_stochastic": sp.EDMStochastic,
}
# Discrete DDPM samplers of predictions (eps, learned variance), not velocity fields.
DDPM_SOLVERS: dict[str, Callable[[sp.DDPMSchedule], sp.Solver]] = {
    "ddpm": lambda schedule: sp.DDPMAncestral(schedule),  # learned-range variance, DiT
    "ddim": lambda schedule: sp.DDIM(schedule),  # eta = 0
}
SOLVER_NAMES = (*SOLVERS, *DDPM_SOLVERS)
DIFFUSIONS: dict[str, Callable[[], sp.Diffusion]] = {
    "sigma": sp.SigmaDiffusion,
    "constant": sp.ConstantDiffusion,
    "linear": sp.LinearDiffusion,
    "sbdm": sp.SBDMDiffusion,
    "decreasing": sp.DecreasingDiffusion,
    "increasing_decreasing": sp.IncreasingDecreasingDiffusion,
}
GRID_NAMES = ("uniform", "edm", "logsnr", "repa", "ddpm")
PREDICTION_NAMES = ("velocity", "noise", "score", "x0")
# The values under which a key that the chosen solver / grid / guidance does not read is inert.
INERT = {"diffusion": "sigma", "t_start": 1.0}
GUIDANCE_INERT = {"scale": 1.0, "interval": (0.0, 1.0), "guided_channels": 0}


def build_solver(sampler: ConfigDict) -> sp.Solver:
    """The nnx-samplers solver named by ``sampler.solver``."""
    if sampler.solver in DDPM_SOLVERS:
        raise ConfigError(
            f"sampler.solver={sampler.solver!r} samples a DDPM network: it needs "
            "objective.name='ddpm' (see configs/dit_xl2.py); flow recipes use "
            f"{', '.join(SOLVERS)}."
        )
    if sampler.solver not in SOLVERS:
        raise unknown_name("sampler.solver", sampler.solver, SOLVER_NAMES)
    if sampler.diffusion not in DIFFUSIONS:
        raise unknown_name("sampler.diffusion", sampler.diffusion, tuple(DIFFUSIONS))
    if sampler.solver == "euler_maruyama":
        return sp.EulerMaruyama(diffusion=DIFFUSIONS[sampler.diffusion]())
    reject_ignored(
        "sampler", sampler, f"sampler.solver={sampler.solver!r}", diffusion=INERT["diffusion"]
    )
    return SOLVERS[sampler.solver]()


def build_grid(sampler: ConfigDict, *, time_shift: float) -> sp.TimeGrid:
    """The time grid, shifted by the same ``time_shift`` that shifted the training times."""
    match sampler.grid:
        case "uniform":
            grid = sp.UniformGrid(sampler.num_steps, t_start=sampler.t_start)
        case "edm" | "logsnr" | "repa":
            reject_ignored(
                "sampler", sampler, f"sampler.grid={sampler.grid!r}", t_start=INERT["t_start"]
            )
            make = {"edm": sp.EDMGrid, "logsnr": sp.LogSNRGrid, "repa": sp.REPAGrid}
            grid = make[sampler.grid](sampler.num_steps)
        case "ddpm":
            raise ConfigError(
                "sampler.grid='ddpm' (respaced integer steps) needs objective.name='ddpm'; "
                "flow recipes use uniform, edm, logsnr or repa."
            )
        case _:
            raise unknown_name("sampler.grid", sampler.grid, GRID_NAMES)
    if time_shift != 1.0:
        grid = sp.ShiftedGrid(grid, time_shift)
    return grid


def build_guidance(guidance: ConfigDict, *, null_label: int) -> GuidanceSpec | None:
    """CFG settings of ``config.guidance`` (``name="none"`` gives ``None``)."""
    match guidance.name:
        case "none":
            reject_ignored("guidance", guidance, "guidance.name='none'", **GUIDANCE_INERT)
            return None
        case "cfg":
            return GuidanceSpec(
                scale=float(guidance.scale),
                interval=tuple(float(v) for v in guidance.interval),
                guided_channels=int(guidance.guided_channels) or None,
                null_label=null_label,
            )
        case _:
            raise unknown_name("guidance.name", guidance.name, ("none", "cfg"))


def sampler_path(name: str) -> sp.Path:
    """The path of ``objective.path`` (``nnx_samplers.paths``), which the objective trains on
    and the velocity adapters sample with."""
    match name:
        case "linear":
            return sp.LinearPath()
        case "gvp":
            return sp.GVPPath()
        case "vp":
            return sp.VPPath()
        case _:
            raise unknown_name("objective.path", name, PATH_NAMES)


def _velocity_adapter(prediction: str, path: str) -> Callable[[Callable], Callable]:
    """Prediction ``g(x, t)`` in the network's parameterisation -> velocity field."""
    match prediction:
        case "velocity":
            return lambda predict: predict
        case "noise":
            return lambda predict: sp.VelocityFromNoise(predict, sampler_path(path))
        case "score":
            return lambda predict: sp.VelocityFromScore(predict, sampler_path(path))
        case "x0":
            return lambda predict: sp.VelocityFromData(predict, sampler_path(path))
        case _:
            raise unknown_name("objective.prediction", prediction, PREDICTION_NAMES)


def flow_generate(
    config: ConfigDict,
    data_shape: tuple[int, ...],
    *,
    prediction: str,
    path: str,
    null_label: int,
) -> Callable:
    """Sampler of ``config.sampler`` for a network predicting ``prediction`` on ``path``.

    Returns ``generate(model, frozen, labels (B,), key) -> (B, *data_shape)``.
    """
    return make_flow_generate(
        solver=build_solver(config.sampler),
        grid=build_grid(config.sampler, time_shift=config.time_shift),
        guidance=build_guidance(config.guidance, null_label=null_label),
        data_shape=data_shape,
        to_velocity=_velocity_adapter(prediction, path),
    )


def ddpm_generate(
    config: ConfigDict,
    data_shape: tuple[int, ...],
    *,
    schedule: sp.DDPMSchedule,
    null_label: int,
) -> Callable:
    """DDPM ancestral / DDIM sampling of an (eps, variance) network on the respaced grid.

    ``sampler.solver`` is ``"ddpm"`` or ``"ddim"``, ``sampler.grid`` is ``"ddpm"`` with
    ``sampler.num_steps`` respaced steps (DiT's ``space_timesteps``). Guidance with
    ``guided_channels = 0`` guides every noise channel (never the variance half).

    Returns ``generate(model, frozen, labels (B,), key) -> (B, *data_shape)``.
    """
    sampler = config.sampler
    if sampler.solver not in DDPM_SOLVERS:
        raise ConfigError(
            f"objective.name='ddpm' samples with sampler.solver in {tuple(DDPM_SOLVERS)}; got "
            f"{sampler.solver!r}."
        )
    if sampler.grid != "ddpm":
        raise ConfigError(
            f"objective.name='ddpm' samples on sampler.grid='ddpm'; got {sampler.grid!r}."
        )
    used_by = f"sampler.solver={sampler.solver!r}"
    reject_ignored("sampler", sampler, used_by, **INERT)
    reject_ignored("", config, "objective.name='ddpm'", time_shift=1.0)
    guidance = build_guidance(config.guidance, null_label=null_label)
    if guidance is not None and guidance.guided_channels is None:
        guidance = GuidanceSpec(
            guidance.scale, guidance.interval, data_shape[-1], guidance.null_label
        )
    return make_flow_generate(
        solver=DDPM_SOLVERS[sampler.solver](schedule),
        grid=sp.ddpm_grid(int(sampler.num_steps), schedule),
        guidance=guidance,
        data_shape=data_shape,
        to_velocity=lambda predict: predict,  # the DDPM solvers read the prediction itself
    )
