"""nnx_nets."""

# One import block for all families (ruff sorts it); __all__ below is sectioned.
from nnx_nets.activation_axes import TOKEN_AXES, constrain_activation, constrain_tokens
from nnx_nets.adaln import AdaLNModulation, modulate
from nnx_nets.attention import SelfAttention
from nnx_nets.dhariwal_unet import DHARIWAL_UNET_PRESETS, DhariwalUNet, dhariwal_unet_from_preset
from nnx_nets.dinov2 import DINOV2_PRESETS, DINOv2, DINOv2Block, dinov2_from_preset
from nnx_nets.dinov2_pos_embed import POS_EMBED_INTERPOLATIONS, resize_pos_grid
from nnx_nets.dit import DIT_PRESETS, DiT, DiTBlock, DiTFinalLayer, dit_from_preset
from nnx_nets.dit_dh import DIT_DH_PRESETS, DiTDH, dit_dh_from_preset
from nnx_nets.edm2_unet import EDM2_PRESETS, EDM2Block, EDM2UNet, edm2_unet_from_preset
from nnx_nets.edm_layers import EDMConv, EDMUNetBlock, FourierEmbedding, PositionalEmbedding
from nnx_nets.embeddings import (
    GaussianFourierEmbedder,
    LabelEmbedder,
    PatchEmbed,
    TimestepEmbedder,
    sincos_pos_embed_1d,
    sincos_pos_embed_2d,
    sinusoidal_embedding,
    unpatchify,
)
from nnx_nets.lightning_dit import (
    LIGHTNING_DIT_PRESETS,
    LightningDiT,
    LightningDiTBlock,
    LightningFinalLayer,
    lightning_dit_from_preset,
)
from nnx_nets.linen import (
    LinenNetwork,
    as_linen,
    linen_variables_from_nnx,
    nnx_from_linen_variables,
)
from nnx_nets.meanflow_dit import MeanFlowDiT, meanflow_dit_from_preset
from nnx_nets.mlp import Mlp, SwiGLU, swiglu_hidden_size
from nnx_nets.mp_layers import (
    MPConv,
    MPFourier,
    force_weight_normalization,
    mp_cat,
    mp_silu,
    mp_sum,
)
from nnx_nets.norms import RMSNorm, layer_norm
from nnx_nets.patch_transformer import PatchTransformer, TrunkParts, make_time_embedder
from nnx_nets.precision import (
    PRECISION_NAMES,
    REMAT_POLICIES,
    Precision,
    RematPolicy,
    remat_policy,
    resolve_precision,
)
from nnx_nets.rope import apply_rope, axial_rope_tables
from nnx_nets.sd_vae import SD_VAE_PRESETS, SDVAE, VAEDecoder, VAEEncoder, sd_vae_from_preset
from nnx_nets.sd_vae_blocks import DiagonalGaussian
from nnx_nets.song_unet import SONG_UNET_PRESETS, SongUNet, song_unet_from_preset
from nnx_nets.video_dit import VideoDiT, VideoDiTBlock
from nnx_nets.vit_decoder import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    RAE_DECODER_PRESETS,
    LatentNormalizer,
    RAEDecoder,
    mae_sincos_pos_embed,
    rae_decoder_from_preset,
)

__version__ = "0.1.0"

# ruff resolves only literal __all__ lists and `+=`, so each section extends it.
__all__: list[str] = [  # DiT family
    "AdaLNModulation",
    "DIT_DH_PRESETS",
    "DIT_PRESETS",
    "DiT",
    "DiTBlock",
    "DiTDH",
    "DiTFinalLayer",
    "GaussianFourierEmbedder",
    "LIGHTNING_DIT_PRESETS",
    "LabelEmbedder",
    "LightningDiT",
    "LightningDiTBlock",
    "LightningFinalLayer",
    "MeanFlowDiT",
    "Mlp",
    "PatchEmbed",
    "PatchTransformer",
    "RMSNorm",
    "SelfAttention",
    "SwiGLU",
    "TimestepEmbedder",
    "TrunkParts",
    "apply_rope",
    "axial_rope_tables",
    "dit_dh_from_preset",
    "dit_from_preset",
    "layer_norm",
    "lightning_dit_from_preset",
    "make_time_embedder",
    "meanflow_dit_from_preset",
    "modulate",
    "sincos_pos_embed_2d",
    "sinusoidal_embedding",
    "swiglu_hidden_size",
    "unpatchify",
]

__all__ += [  # precision and remat policies
    "PRECISION_NAMES",
    "Precision",
    "REMAT_POLICIES",
    "RematPolicy",
    "remat_policy",
    "resolve_precision",
]

__all__ += [  # vision networks
    "DINOV2_PRESETS",
    "DINOv2",
    "DINOv2Block",
    "DiagonalGaussian",
    "EDM2Block",
    "EDM2UNet",
    "EDM2_PRESETS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LatentNormalizer",
    "MPConv",
    "MPFourier",
    "POS_EMBED_INTERPOLATIONS",
    "RAEDecoder",
    "RAE_DECODER_PRESETS",
    "SDVAE",
    "SD_VAE_PRESETS",
    "VAEDecoder",
    "VAEEncoder",
    "dinov2_from_preset",
    "edm2_unet_from_preset",
    "force_weight_normalization",
    "mae_sincos_pos_embed",
    "mp_cat",
    "mp_silu",
    "mp_sum",
    "rae_decoder_from_preset",
    "resize_pos_grid",
    "sd_vae_from_preset",
]

__all__ += [  # EDM (Karras et al. 2022) U-Nets
    "DHARIWAL_UNET_PRESETS",
    "DhariwalUNet",
    "EDMConv",
    "EDMUNetBlock",
    "FourierEmbedding",
    "PositionalEmbedding",
    "SONG_UNET_PRESETS",
    "SongUNet",
    "dhariwal_unet_from_preset",
    "song_unet_from_preset",
]

__all__ += [  # linen interop
    "LinenNetwork",
    "as_linen",
    "linen_variables_from_nnx",
    "nnx_from_linen_variables",
]

__all__ += [  # activation sharding hints (identities outside a mesh + logical-axis-rules context)
    "TOKEN_AXES",
    "constrain_activation",
    "constrain_tokens",
]

__all__ += [  # video
    "VideoDiT",
    "VideoDiTBlock",
    "sincos_pos_embed_1d",
]
