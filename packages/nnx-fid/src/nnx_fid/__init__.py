"""FID, sFID, IS, precision/recall and FD-DINOv2 in JAX, agreeing with the standard evaluators."""

from nnx_fid.crop import adm_center_crop
from nnx_fid.dinov2_weights import (
    DINOV2_FILE_NAME,
    DINOV2_URL,
    fd_dinov2_network,
    load_fd_dinov2,
)
from nnx_fid.evaluate import compute_metrics, format_adm_report
from nnx_fid.features import (
    DINOv2Features,
    InceptionFeatures,
    extract_features,
    feature_statistics,
    iterate_features,
)
from nnx_fid.frechet import frechet_distance, frechet_distance_sqrtm, trace_sqrt_product
from nnx_fid.images import QUANTISATION, from_uint8, to_uint8
from nnx_fid.inception import InceptionV3
from nnx_fid.inception_score import (
    ADM_SPLIT_SIZE,
    inception_score,
    inception_score_per_split,
    softmax_probabilities,
)
from nnx_fid.inception_weights import (
    INCEPTION_FILE_NAME,
    INCEPTION_SHA256,
    INCEPTION_URL,
    export_inception_state_dict,
    inception_rules,
    inception_stat_rules,
    load_inception,
    load_inception_state_dict,
)
from nnx_fid.precision_recall import manifold_radii, precision_recall
from nnx_fid.preprocess import FRONT_ENDS, dinov2_preprocess, inception_preprocess
from nnx_fid.provenance import git_commit, package_versions
from nnx_fid.resize import RESIZE_MODES, interpolation_matrix, resize_bilinear
from nnx_fid.sampling import balanced_labels, generate_samples, padded_batches, sample_in_batches
from nnx_fid.statistics import GaussianStats, StatsAccumulator
from nnx_fid.stats_io import (
    ReferenceStats,
    StatsFormatError,
    load_reference,
    save_adm_npz,
    save_edm2_pkl,
    save_pytorch_fid_npz,
)

__version__ = "0.1.0"

__all__ = [
    "git_commit",
    "package_versions",
    "adm_center_crop",
    "ADM_SPLIT_SIZE",
    "DINOV2_FILE_NAME",
    "DINOV2_URL",
    "DINOv2Features",
    "FRONT_ENDS",
    "GaussianStats",
    "INCEPTION_FILE_NAME",
    "INCEPTION_SHA256",
    "INCEPTION_URL",
    "InceptionFeatures",
    "InceptionV3",
    "QUANTISATION",
    "RESIZE_MODES",
    "ReferenceStats",
    "StatsAccumulator",
    "StatsFormatError",
    "balanced_labels",
    "compute_metrics",
    "dinov2_preprocess",
    "export_inception_state_dict",
    "extract_features",
    "fd_dinov2_network",
    "feature_statistics",
    "format_adm_report",
    "frechet_distance",
    "frechet_distance_sqrtm",
    "from_uint8",
    "generate_samples",
    "padded_batches",
    "sample_in_batches",
    "inception_preprocess",
    "inception_rules",
    "inception_score",
    "inception_score_per_split",
    "inception_stat_rules",
    "interpolation_matrix",
    "iterate_features",
    "load_fd_dinov2",
    "load_inception",
    "load_inception_state_dict",
    "load_reference",
    "manifold_radii",
    "precision_recall",
    "resize_bilinear",
    "save_adm_npz",
    "save_edm2_pkl",
    "save_pytorch_fid_npz",
    "softmax_probabilities",
    "to_uint8",
    "trace_sqrt_product",
]
