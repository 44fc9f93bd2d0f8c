"""RAE at 256 px as published: DINOv2-B (registers) encoder, ViT-XL decoder, DiT-DH-XL stage 2.

Variants (``--config apps/rae_eval/configs/rae_dinov2b_256.py:<variant>``):

- ``autoguidance`` (default): autoguidance with DiT-DH-S at 14 epochs, scale 1.42 on the
  whole path (RAE ``DiTDHXL-DINOv2-B_AG.yaml``; paper FID 1.13).
- ``cfg``: classifier-free guidance with an interval. The published file uses scale 1.0 on
  [0, 1], which is no guidance (paper FID 1.51, and like RAE no null pass is run at scale 1);
  set ``--config.guidance.scale`` and ``--config.guidance.interval`` to guide.
- ``reconstruct``: rFID / PSNR / SSIM of the autoencoder on ``reconstruction.image_folder``
  (ImageNet val centre-cropped to 256 in the paper: rFID 0.57).

Every published file is looked up under ``checkpoints.directory``; a missing one stops the run
with its HF path (``hf download nyu-visionx/RAE-collections --local-dir models`` fetches all).
"""

import math

import ml_collections

_RAE_HF = "hf://nyu-visionx/RAE-collections"
_LATENT_CHANNELS, _LATENT_SIZE = 768, 16


def _checkpoint(path: str, url: str) -> dict:
    return {"path": path, "url": url}


def _dit_dh(hidden_size: int, depth: int, num_heads: int) -> dict:
    """nnx_nets.DiTDH keyword arguments (RAE configs/stage2/.../DiTDH-*_DINOv2-B.yaml)."""
    return {
        "name": "DiTDH",
        "input_size": _LATENT_SIZE,
        "patch_size": 1,
        "in_channels": _LATENT_CHANNELS,
        "hidden_size": hidden_size,
        "depth": depth,
        "num_heads": num_heads,
        "head_hidden_size": 2048,
        "head_depth": 2,
        "head_num_heads": 16,
        "mlp_ratio": 4.0,
        "num_classes": 1000,
        # RAE feeds t in [0, 1] with t = 0 data (its ICPlan has alpha = 1 - t): no rescaling.
        "time_scale": 1.0,
        "precision": "float32",  # nnx_nets.Precision name: "float32" or "bfloat16"
        "scan_blocks": True,
    }


def _checkpoints() -> dict:
    """Every published file the run reads: local path under ``directory`` and its source."""
    return {
        "directory": "models",
        "encoder": _checkpoint(
            "encoders/dinov2-with-registers-base/model.safetensors",
            "hf://facebook/dinov2-with-registers-base/model.safetensors",
        ),
        "decoder": _checkpoint(
            "decoders/dinov2/wReg_base/ViTXL_n08/model.pt",
            f"{_RAE_HF}/decoders/dinov2/wReg_base/ViTXL_n08/model.pt",
        ),
        "latent_stats": _checkpoint(
            "stats/dinov2/wReg_base/imagenet1k/stat.pt",
            f"{_RAE_HF}/stats/dinov2/wReg_base/imagenet1k/stat.pt",
        ),
        "stage2": _checkpoint(
            "DiTs/Dinov2/wReg_base/ImageNet256/DiTDH-XL/stage2_model.pt",
            f"{_RAE_HF}/DiTs/Dinov2/wReg_base/ImageNet256/DiTDH-XL/stage2_model.pt",
        ),
        "guide": _checkpoint(
            "DiTs/Dinov2/wReg_base/ImageNet256/DiTDH-S_ep14/stage2_model.pt",
            f"{_RAE_HF}/DiTs/Dinov2/wReg_base/ImageNet256/DiTDH-S_ep14/stage2_model.pt",
        ),
        "inception": _checkpoint(
            "fid/pt_inception-2015-12-05-6726825d.pth",
            "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
            "pt_inception-2015-12-05-6726825d.pth",
        ),
        "reference_batch": _checkpoint(
            "fid/VIRTUAL_imagenet256_labeled.npz",
            "https://openaipublic.blob.core.windows.net/diffusion/jul-2021/ref_batches/"
            "imagenet/256/VIRTUAL_imagenet256_labeled.npz",
        ),
    }


def _networks(config: ml_collections.ConfigDict) -> None:
    """Encoder, decoder, stage-2 model and guide: the published RAE DINOv2-B setup."""
    # nnx_nets.DINOv2 keyword arguments: dinov2-with-registers-base, final LayerNorm without
    # affine (RAE's Dinov2withNorm); images are resized (PyTorch bicubic, no antialias) to
    # input_size and normalised with the ImageNet mean/std; CLS + 4 registers are dropped.
    config.encoder = {
        "name": "DINOv2",
        "input_size": 224,
        "hidden_size": 768,
        "depth": 12,
        "num_heads": 12,
        "patch_size": 14,
        "image_size": 518,
        "num_register_tokens": 4,
        "final_norm_affine": False,
        "pos_embed_interpolation": "bicubic_antialias",
    }
    # RAE ViT-XL decoder (configs/decoder/ViTXL): 1152 wide, 28 layers, 16 heads, MLP 4096,
    # patch 16 over the 16 x 16 token grid -> 256 px. Latent normalisation eps 1e-5.
    config.decoder = {
        "name": "RAEDecoder",
        "hidden_size": 1152,
        "depth": 28,
        "num_heads": 16,
        "intermediate_size": 4096,
        "latent_dim": _LATENT_CHANNELS,
        "grid_size": _LATENT_SIZE,
        "patch_size": 16,
        "layer_norm_eps": 1e-12,
        "scan": True,
    }
    config.latent_norm_eps = 1e-5

    config.stage2 = _dit_dh(hidden_size=1152, depth=28, num_heads=16)
    config.guide = _dit_dh(hidden_size=384, depth=12, num_heads=6)


def get_config(variant: str = "autoguidance") -> ml_collections.ConfigDict:
    if variant not in ("autoguidance", "cfg", "reconstruct"):
        raise ValueError(f"unknown variant {variant!r}; choose autoguidance, cfg or reconstruct")
    config = ml_collections.ConfigDict()
    config.task = "reconstruct" if variant == "reconstruct" else "generate"
    config.seed = 0
    config.progress = True
    # "published": load every network from checkpoints; "random": random non-zero weights.
    config.weights = "published"
    config.image_size = 256
    config.num_classes = 1000

    # Latents are NHWC (16, 16, 768). The one time-shift value of the run (Zheng et al. 2025):
    # s = sqrt(C * H * W / 4096) = sqrt(196608 / 4096) = 6.93, read by the sampling grid.
    config.latent = {"channels": _LATENT_CHANNELS, "size": _LATENT_SIZE}
    config.time_shift = math.sqrt(_LATENT_CHANNELS * _LATENT_SIZE**2 / 4096)

    config.checkpoints = _checkpoints()

    _networks(config)

    # RAE's "Euler 50" is torchdiffeq's euler over 1 - linspace(0, 0.999, 50), shifted: 49
    # steps from t = 1 to t = 0.001 before the shift (0.0069 after it). num_steps=50, t_end=0
    # gives the textbook grid instead.
    config.sampler = {"solver": "euler", "num_steps": 49, "t_start": 1.0, "t_end": 0.001}

    if variant == "cfg":
        config.guidance = {"name": "cfg", "scale": 1.0, "interval": (0.0, 1.0)}
    else:
        config.guidance = {"name": "autoguidance", "scale": 1.42, "interval": (0.0, 1.0)}

    config.generation = {
        "num_samples": 50_000,
        "per_device_batch": 32,
        "shard_size": 1000,
        "write_npz": True,  # samples.npz for the ADM evaluator (about 9.8 GB at 50k x 256 px)
        "grid_images": 64,
        "grid_columns": 8,
    }
    # nnx_fid: Inception front end ("tf1" = the ADM evaluator) and feature batch size.
    config.metrics = {"front_end": "tf1", "batch_size": 200}
    config.reconstruction = {
        "image_folder": "",
        "max_images": 0,  # 0: every image in the folder
        "per_device_batch": 32,
        "shard_size": 1000,
        "grid_images": 16,
    }
    return config
