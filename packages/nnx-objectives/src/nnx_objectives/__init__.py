"""nnx_objectives: training objectives for diffusion and flow-matching models in JAX / Flax NNX.

Time convention: ``t`` in [0, 1], ``t = 0`` is data, ``t = 1`` is noise,
``x_t = alpha(t) x0 + sigma(t) eps``, velocity ``v = dx_t/dt``.
Every objective is ``objective(model, x0, y, key) -> (loss (B,), aux dict)``.
"""

from nnx_objectives.class_dropout import ClassDropout, drop_labels
from nnx_objectives.consistency import (
    ConditionalTangent,
    ConsistencyObjective,
    TangentSource,
    TeacherTangent,
)
from nnx_objectives.ddpm import (
    ImprovedDDPMObjective,
    discretized_gaussian_log_likelihood,
    normal_kl,
)
from nnx_objectives.diffusion_forcing import DiffusionForcingObjective
from nnx_objectives.dmd import (
    DataPredictor,
    DistributionMatchingLoss,
    FakeScoreLoss,
    data_predictor,
)
from nnx_objectives.dmd_gan import GANHead, gan_discriminator_loss, gan_generator_loss
from nnx_objectives.edm import (
    EDMCoefficients,
    EDMObjective,
    EDMPrecond,
    edm_loss_weight,
    edm_preconditioning,
)
from nnx_objectives.edm_precond import IDDPMPrecond, VEPrecond, VPPrecond, iddpm_sigma_levels
from nnx_objectives.interpolant import InterpolantObjective, mean_over_elements
from nnx_objectives.meanflow import (
    MeanFlowGuidance,
    MeanFlowObjective,
    drop_first_rows,
    meanflow_target,
    sample_two_times,
)
from nnx_objectives.model_jvp import network_jvp
from nnx_objectives.predictions import (
    NoisePrediction,
    Prediction,
    ScorePrediction,
    VelocityPrediction,
    X0Prediction,
    convert_prediction,
)
from nnx_objectives.protocols import Network, Objective, TimeDistribution, TwoTimeNetwork
from nnx_objectives.repa import (
    REPAModel,
    REPAObjective,
    REPAProjector,
    negative_cosine_similarity,
    resize_token_grid,
)
from nnx_objectives.self_forcing import SelfForcingLoss, clip_at_one_time, self_forcing_rollout
from nnx_objectives.sit_intervals import sit_default_eps, sit_time_interval
from nnx_objectives.time_distributions import (
    LogitNormalTime,
    ShiftedTime,
    TimeInterval,
    UniformTime,
    resolution_shift,
    shift_time,
)
from nnx_objectives.trigflow import (
    TrigFlowTime,
    trigflow_angle,
    trigflow_consistency_function,
    trigflow_state,
)
from nnx_objectives.trigflow_teacher import LinearVelocityAsTrigFlow
from nnx_objectives.uncertainty import (
    LogVarHead,
    UncertaintyWeighted,
    WithLogVar,
)
from nnx_objectives.weightings import LikelihoodWeight, LossWeight, NoWeight, VelocityWeight
from nnx_samplers import (  # the shared path, time and EDM maths, re-exported
    DDPMSchedule,
    GVPPath,
    LinearPath,
    Path,
    VPPath,
    conditional_velocity,
    edm_from_linear,
    edm_sigma_from_t,
    expand_time,
    interpolate,
    linear_from_edm,
    score_coefficient,
    t_from_edm_sigma,
)

__version__ = "0.1.0"

__all__ = [
    "ClassDropout",
    "ConditionalTangent",
    "ConsistencyObjective",
    "DDPMSchedule",
    "DiffusionForcingObjective",
    "SelfForcingLoss",
    "clip_at_one_time",
    "self_forcing_rollout",
    "DataPredictor",
    "DistributionMatchingLoss",
    "EDMCoefficients",
    "EDMObjective",
    "EDMPrecond",
    "FakeScoreLoss",
    "GANHead",
    "GVPPath",
    "ImprovedDDPMObjective",
    "IDDPMPrecond",
    "InterpolantObjective",
    "LikelihoodWeight",
    "LinearPath",
    "LinearVelocityAsTrigFlow",
    "LogVarHead",
    "LogitNormalTime",
    "LossWeight",
    "MeanFlowGuidance",
    "MeanFlowObjective",
    "Network",
    "NoWeight",
    "NoisePrediction",
    "Objective",
    "Path",
    "Prediction",
    "REPAModel",
    "REPAObjective",
    "REPAProjector",
    "ScorePrediction",
    "ShiftedTime",
    "TangentSource",
    "TeacherTangent",
    "TimeDistribution",
    "TimeInterval",
    "TrigFlowTime",
    "TwoTimeNetwork",
    "UncertaintyWeighted",
    "UniformTime",
    "VEPrecond",
    "VPPath",
    "VPPrecond",
    "VelocityPrediction",
    "VelocityWeight",
    "WithLogVar",
    "X0Prediction",
    "conditional_velocity",
    "convert_prediction",
    "discretized_gaussian_log_likelihood",
    "drop_first_rows",
    "data_predictor",
    "drop_labels",
    "edm_from_linear",
    "edm_loss_weight",
    "edm_preconditioning",
    "edm_sigma_from_t",
    "gan_discriminator_loss",
    "gan_generator_loss",
    "expand_time",
    "iddpm_sigma_levels",
    "interpolate",
    "linear_from_edm",
    "mean_over_elements",
    "meanflow_target",
    "negative_cosine_similarity",
    "network_jvp",
    "normal_kl",
    "resize_token_grid",
    "resolution_shift",
    "sample_two_times",
    "score_coefficient",
    "shift_time",
    "sit_default_eps",
    "sit_time_interval",
    "t_from_edm_sigma",
    "trigflow_angle",
    "trigflow_consistency_function",
    "trigflow_state",
]
