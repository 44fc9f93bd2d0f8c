"""A tiny RAE with random weights: the whole pipeline in seconds on a CPU (tests and demo).

Same structure as ``rae_dinov2b_256.py``, with 16 px images, a 4 x 4 x 32 latent, one- or
two-block networks and ``weights="random"`` (no checkpoint files). Generation metrics are
computed against a synthetic reference batch, and reconstruction reads the PNG/JPEG images of
``reconstruction.image_folder``.

    python apps/rae_eval --config apps/rae_eval/configs/tiny.py --workdir runs/tiny
    python apps/rae_eval --config apps/rae_eval/configs/tiny.py:reconstruct \
        --config.reconstruction.image_folder=<folder> --workdir runs/tiny
"""

import math

import ml_collections

_CHANNELS, _SIZE, _PATCH = 32, 4, 4


def _dit_dh(hidden_size: int, depth: int) -> dict:
    return {
        "name": "DiTDH",
        "input_size": _SIZE,
        "patch_size": 1,
        "in_channels": _CHANNELS,
        "hidden_size": hidden_size,
        "depth": depth,
        "num_heads": 2,
        "head_hidden_size": 48,
        "head_depth": 1,
        "head_num_heads": 2,
        "mlp_ratio": 2.0,
        "num_classes": 10,
        "time_scale": 1.0,
        "precision": "float32",
        "scan_blocks": False,
    }


def _networks(config: ml_collections.ConfigDict) -> None:
    """One- or two-block encoder, decoder, stage-2 model and guide of the tiny RAE."""
    config.encoder = {
        "name": "DINOv2",
        "input_size": _SIZE * _PATCH,
        "hidden_size": _CHANNELS,
        "depth": 1,
        "num_heads": 2,
        "patch_size": _PATCH,
        "image_size": 2 * _SIZE * _PATCH,  # 8 x 8 position table, interpolated to 4 x 4
        "num_register_tokens": 4,
        "final_norm_affine": False,
        "pos_embed_interpolation": "bicubic_antialias",
    }
    config.decoder = {
        "name": "RAEDecoder",
        "hidden_size": 32,
        "depth": 1,
        "num_heads": 2,
        "intermediate_size": 64,
        "latent_dim": _CHANNELS,
        "grid_size": _SIZE,
        "patch_size": _PATCH,
        "layer_norm_eps": 1e-12,
        "scan": False,
    }
    config.latent_norm_eps = 1e-5
    config.stage2 = _dit_dh(hidden_size=32, depth=1)
    config.guide = _dit_dh(hidden_size=32, depth=1)


def get_config(variant: str = "autoguidance") -> ml_collections.ConfigDict:
    if variant not in ("autoguidance", "cfg", "reconstruct"):
        raise ValueError(f"unknown variant {variant!r}; choose autoguidance, cfg or reconstruct")
    config = ml_collections.ConfigDict()
    config.task = "reconstruct" if variant == "reconstruct" else "generate"
    config.seed = 0
    config.progress = True
    config.weights = "random"
    config.image_size = _SIZE * _PATCH
    config.num_classes = 10
    config.latent = {"channels": _CHANNELS, "size": _SIZE}
    config.time_shift = math.sqrt(_CHANNELS * _SIZE**2 / 4096)  # same rule as the paper: 0.35
    config.checkpoints = {
        "directory": "",
        # Empty path: a synthetic reference batch (demo only). Point it at an ADM .npz to use one.
        "reference_batch": {"path": "", "url": ""},
    }
    _networks(config)
    config.sampler = {"solver": "euler", "num_steps": 4, "t_start": 1.0, "t_end": 0.0}
    if variant == "cfg":
        config.guidance = {"name": "cfg", "scale": 1.5, "interval": (0.0, 0.7)}
    else:
        config.guidance = {"name": "autoguidance", "scale": 1.42, "interval": (0.0, 1.0)}
    config.generation = {
        "num_samples": 8,
        "per_device_batch": 1,
        "shard_size": 4,
        "write_npz": True,
        "grid_images": 8,
        "grid_columns": 4,
    }
    config.metrics = {"front_end": "tf1", "batch_size": 8}
    config.reconstruction = {
        "image_folder": "",
        "max_images": 0,
        "per_device_batch": 1,
        "shard_size": 4,
        "grid_images": 4,
    }
    return config
