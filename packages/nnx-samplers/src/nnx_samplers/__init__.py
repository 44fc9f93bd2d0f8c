"""nnx_samplers: ODE and SDE solvers, time grids and guidance for flow and diffusion models.

A sampler sees only a vector field ``f(x, t) -> dx/dt`` (or ``u(x, r, t)`` for MeanFlow),
with ``t = 0`` data and ``t = 1`` noise. Solvers are stateless objects with ``init``/``step``;
grids are objects; :func:`sample` runs the loop with ``lax.scan`` and counts NFE.
"""

from nnx_samplers.adapters import (
    NETWORK_ADAPTERS,
    FirstHalfChannels,
    TimeFlippedVelocity,
    VelocityFromData,
    VelocityFromEDMDenoiser,
    VelocityFromNoise,
    VelocityFromScore,
    adapt_network,
    data_from_velocity,
    edm_from_linear,
    edm_sigma_from_t,
    linear_from_edm,
    noise_from_velocity,
    score_from_velocity,
    t_from_edm_sigma,
    velocity_from_data,
    velocity_from_noise,
    velocity_from_score,
)
from nnx_samplers.causal_frames import FrameDenoiser, few_step_rollout, next_frame_denoiser
from nnx_samplers.consistency import (
    SCM_TWO_STEP_MID_T,
    Denoiser,
    backward_simulation,
    consistency_sample,
    uniform_step_times,
)
from nnx_samplers.ddpm import DDIM, DDPMAncestral, DDPMSchedule, ddpm_grid, dit_respaced_steps
from nnx_samplers.diffusion import (
    ConstantDiffusion,
    DecreasingDiffusion,
    Diffusion,
    IncreasingDecreasingDiffusion,
    LinearDiffusion,
    SBDMDiffusion,
    SigmaDiffusion,
)
from nnx_samplers.dpm_solver import DPMSolverPlusPlus2M, DPMSolverPlusPlus3M, MultistepState
from nnx_samplers.driver import Solution, Solver, sample
from nnx_samplers.edm_sampler import EDMStochastic
from nnx_samplers.euler import Euler, EulerJump
from nnx_samplers.euler_maruyama import EulerMaruyama
from nnx_samplers.fields import (
    ConditionalField,
    ConditionalTwoTimeField,
    Network,
    TwoTimeField,
    TwoTimeNetwork,
    VectorField,
    batch_time,
    expand_time,
)
from nnx_samplers.frame_schedules import (
    FrameField,
    pyramid_times,
    rollout_frames,
    sample_frames,
)
from nnx_samplers.grids import (
    ArrayGrid,
    EDMGrid,
    LogSNRGrid,
    REPAGrid,
    ShiftedGrid,
    TimeGrid,
    UniformGrid,
    shift_time,
)
from nnx_samplers.guidance import (
    DIT_LEGACY_GUIDED_CHANNELS,
    AutoGuidance,
    ClassifierFreeGuidance,
    GuidanceInterval,
    combine_guidance,
)
from nnx_samplers.heun import Heun
from nnx_samplers.paths import (
    GVPPath,
    LinearPath,
    Path,
    VPPath,
    conditional_velocity,
    interpolate,
    log_snr,
    score_coefficient,
)

__version__ = "0.1.0"

__all__ = [
    # driver and protocols
    "sample",
    "Solution",
    "Solver",
    "VectorField",
    "TwoTimeField",
    "Network",
    "TwoTimeNetwork",
    "ConditionalField",
    "ConditionalTwoTimeField",
    "batch_time",
    "expand_time",
    # per-frame schedules (video, Diffusion Forcing)
    "FrameField",
    "pyramid_times",
    "rollout_frames",
    "sample_frames",
    "FrameDenoiser",
    "few_step_rollout",
    "next_frame_denoiser",
    # few-step sampling (consistency models, DMD2 generators)
    "Denoiser",
    "consistency_sample",
    "backward_simulation",
    "uniform_step_times",
    "SCM_TWO_STEP_MID_T",
    # solvers
    "Euler",
    "Heun",
    "EulerJump",
    "EulerMaruyama",
    "EDMStochastic",
    "DPMSolverPlusPlus2M",
    "DPMSolverPlusPlus3M",
    "MultistepState",
    # discrete DDPM (integer steps, eps / learned-variance predictions)
    "DDPMSchedule",
    "DDPMAncestral",
    "DDIM",
    "ddpm_grid",
    "dit_respaced_steps",
    # diffusion coefficients for Euler-Maruyama
    "Diffusion",
    "ConstantDiffusion",
    "SigmaDiffusion",
    "LinearDiffusion",
    "SBDMDiffusion",
    "DecreasingDiffusion",
    "IncreasingDecreasingDiffusion",
    # grids
    "TimeGrid",
    "UniformGrid",
    "EDMGrid",
    "LogSNRGrid",
    "ShiftedGrid",
    "ArrayGrid",
    "REPAGrid",
    "shift_time",
    # paths and conversions
    "Path",
    "LinearPath",
    "GVPPath",
    "VPPath",
    "conditional_velocity",
    "interpolate",
    "score_coefficient",
    "log_snr",
    "data_from_velocity",
    "noise_from_velocity",
    "score_from_velocity",
    "velocity_from_data",
    "velocity_from_noise",
    "velocity_from_score",
    "edm_sigma_from_t",
    "t_from_edm_sigma",
    "edm_from_linear",
    "linear_from_edm",
    "VelocityFromNoise",
    "VelocityFromData",
    "VelocityFromScore",
    "VelocityFromEDMDenoiser",
    # adapters for converted checkpoints
    "NETWORK_ADAPTERS",
    "FirstHalfChannels",
    "TimeFlippedVelocity",
    "adapt_network",
    # guidance
    "ClassifierFreeGuidance",
    "AutoGuidance",
    "GuidanceInterval",
    "combine_guidance",
    "DIT_LEGACY_GUIDED_CHANNELS",
]
