"""PyTorch <-> Flax NNX weight conversion for the networks of nnx-nets."""

from nnx_weightconv.core import (
    ConversionError,
    Rule,
    conv_kernel,
    conv_kernel_inv,
    conv_rules,
    export_state_dict,
    identity,
    linear_kernel,
    linear_kernel_inv,
    linear_rules,
    load_into,
    norm_rules,
    squeeze_conv1x1,
    squeeze_conv1x1_inv,
)
from nnx_weightconv.io import read_state_dict, restore_orbax, save_orbax
from nnx_weightconv.published import (
    PUBLISHED_FILES,
    PublishedFile,
    check_published_sha256,
    file_sha256,
)
from nnx_weightconv.specs.conventions import (
    CHECKPOINT_CONVENTIONS,
    CheckpointConvention,
    checkpoint_convention,
)
from nnx_weightconv.specs.diffusers_dit import (
    check_tied_copies,
    diffusers_dit_buffer_keys,
    diffusers_dit_rules,
    dit_kwargs_from_diffusers_config,
)
from nnx_weightconv.specs.dinov2 import (
    DINOV2_LAYOUTS,
    dinov2_kwargs_from_transformers_config,
    dinov2_layout,
    dinov2_rules,
    load_dinov2,
)
from nnx_weightconv.specs.dit import (
    dit_buffer_keys,
    dit_rules,
    fused_linear_rules,
    meanflow_dit_rules,
)
from nnx_weightconv.specs.dit_dh import dit_dh_buffer_keys, dit_dh_rules
from nnx_weightconv.specs.edm import (
    edm_prefix,
    edm_resample_filters,
    edm_unet_rules,
    edm_variables,
    export_edm_unet,
    load_edm_unet,
)
from nnx_weightconv.specs.edm2 import (
    edm2_prefix,
    edm2_unet_rules,
    edm2_variables,
    export_edm2_unet,
    load_edm2_unet,
)
from nnx_weightconv.specs.lightning_dit import lightning_dit_buffer_keys, lightning_dit_rules
from nnx_weightconv.specs.rae_decoder import (
    RAE_DECODER_LAYOUTS,
    export_rae_decoder,
    load_rae_decoder,
    rae_decoder_layout,
    rae_decoder_rules,
    rae_latent_stats,
)
from nnx_weightconv.specs.sd_vae import (
    SD_VAE_ATTENTION_NAMES,
    load_sd_vae,
    sd_vae_attention_names,
    sd_vae_kwargs_from_diffusers_config,
    sd_vae_rules,
)
from nnx_weightconv.torch_zip import (
    OpaqueObject,
    TorchFileError,
    flatten_state_dict,
    read_torch_file,
)

__version__ = "0.1.0"

__all__: list[str] = [
    "ConversionError",
    "Rule",
    "conv_kernel",
    "conv_kernel_inv",
    "conv_rules",
    "export_state_dict",
    "identity",
    "linear_kernel",
    "linear_kernel_inv",
    "linear_rules",
    "load_into",
    "norm_rules",
    "read_state_dict",
    "read_torch_file",
    "PUBLISHED_FILES",
    "PublishedFile",
    "check_published_sha256",
    "file_sha256",
    "flatten_state_dict",
    "OpaqueObject",
    "TorchFileError",
    "restore_orbax",
    "save_orbax",
    "squeeze_conv1x1",
    "squeeze_conv1x1_inv",
]

__all__ += [  # specs: one per checkpoint family (rules, buffer keys, loaders, config readers)
    "CHECKPOINT_CONVENTIONS",
    "CheckpointConvention",
    "checkpoint_convention",
    "DINOV2_LAYOUTS",
    "RAE_DECODER_LAYOUTS",
    "SD_VAE_ATTENTION_NAMES",
    "check_tied_copies",
    "diffusers_dit_buffer_keys",
    "diffusers_dit_rules",
    "dinov2_kwargs_from_transformers_config",
    "dinov2_layout",
    "dinov2_rules",
    "dit_buffer_keys",
    "dit_dh_buffer_keys",
    "dit_dh_rules",
    "dit_kwargs_from_diffusers_config",
    "dit_rules",
    "edm2_prefix",
    "edm_prefix",
    "edm_resample_filters",
    "edm_unet_rules",
    "edm_variables",
    "export_edm_unet",
    "load_edm_unet",
    "edm2_unet_rules",
    "edm2_variables",
    "export_edm2_unet",
    "export_rae_decoder",
    "fused_linear_rules",
    "lightning_dit_buffer_keys",
    "lightning_dit_rules",
    "load_dinov2",
    "load_edm2_unet",
    "load_rae_decoder",
    "load_sd_vae",
    "meanflow_dit_rules",
    "rae_decoder_layout",
    "rae_decoder_rules",
    "rae_latent_stats",
    "sd_vae_attention_names",
    "sd_vae_kwargs_from_diffusers_config",
    "sd_vae_rules",
]
