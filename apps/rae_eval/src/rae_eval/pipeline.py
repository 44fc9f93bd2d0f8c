"""From a config to filled networks: which files a run needs, shape checks, loading.

Networks are always built abstractly (``nnx.eval_shape``: no memory, no initialisation), then
filled either from their published checkpoint (``weights="published"``) or with random values
drawn on the host (``weights="random"``, for demos and tests).
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping

import numpy as np
from flax import nnx

from nnx_nets import LatentNormalizer
from nnx_nets.testing import randomise_parameters
from rae_eval.autoencoder import RepresentationAutoencoder
from rae_eval.build import build_decoder, build_dit, build_encoder, construct
from rae_eval.checkpoints import CheckpointFile, require_files
from rae_eval.weights import (
    check_concrete,
    load_decoder,
    load_dit_dh,
    load_encoder,
    load_latent_normalizer,
)

__all__ = [
    "WEIGHT_SOURCES",
    "build_autoencoder",
    "build_stage2",
    "check_config",
    "latent_shape",
    "needs_guide",
    "required_files",
]

WEIGHT_SOURCES = ("published", "random")


def latent_shape(config) -> tuple[int, int, int]:
    """NHWC latent shape ``(h, w, C)`` of ``config.latent``."""
    return (config.latent.size, config.latent.size, config.latent.channels)


def needs_guide(config) -> bool:
    """Whether the run evaluates the autoguidance network."""
    return config.guidance.name == "autoguidance" and float(config.guidance.scale) != 1.0


def check_config(config) -> None:
    """Cross-section consistency checks; each error names the keys to fix."""
    if config.weights not in WEIGHT_SOURCES:
        raise ValueError(f"config.weights={config.weights!r}; choose one of {WEIGHT_SOURCES}")
    h, _, channels = latent_shape(config)
    problems = []
    decoder = config.decoder
    if (decoder.grid_size, decoder.latent_dim) != (h, channels):
        problems.append(
            f"decoder grid_size/latent_dim {decoder.grid_size}/{decoder.latent_dim} != latent "
            f"size/channels {h}/{channels}"
        )
    if config.task == "reconstruct":
        encoder = config.encoder
        grid = encoder.input_size // encoder.patch_size
        if (grid, encoder.hidden_size) != (h, channels):
            problems.append(
                f"encoder input_size // patch_size = {grid} and hidden_size "
                f"{encoder.hidden_size} != latent size/channels {h}/{channels}"
            )
    else:
        sections = [("stage2", config.stage2)]
        if needs_guide(config):
            sections.append(("guide", config.guide))
        for name, section in sections:
            if (section.input_size, section.in_channels) != (h, channels):
                problems.append(
                    f"{name} input_size/in_channels {section.input_size}/{section.in_channels} "
                    f"!= latent size/channels {h}/{channels}"
                )
            if section.num_classes != config.num_classes:
                problems.append(f"{name}.num_classes != num_classes ({config.num_classes})")
    image = decoder.grid_size * decoder.patch_size
    if image != config.image_size:
        problems.append(
            f"decoder grid_size * patch_size = {image} != image_size {config.image_size}"
        )
    if problems:
        raise ValueError("inconsistent config: " + "; ".join(problems))


def _file(config, role: str) -> CheckpointFile:
    return CheckpointFile.from_config(role, config.checkpoints[role], config.checkpoints.directory)


def required_files(config) -> dict[str, CheckpointFile]:
    """Every file the run will read, by role, after checking that each exists.

    Raises:
      MissingCheckpointError: naming each missing file and where it is published.
    """
    published = config.weights == "published"
    roles: list[str] = []
    if config.task in ("generate", "sample"):
        if published:
            roles += ["decoder", "latent_stats", "stage2"]
            roles += ["guide"] if needs_guide(config) else []
        if config.task == "generate":
            if published:
                roles += ["inception", "reference_batch"]
            elif config.checkpoints.reference_batch.path:
                roles.append("reference_batch")
    elif config.task == "reconstruct":
        if published:
            roles += ["encoder", "decoder", "latent_stats", "inception"]
    else:
        raise ValueError(
            f"unknown task {config.task!r}; choose 'generate', 'sample' or 'reconstruct'"
        )
    files = {role: _file(config, role) for role in roles}
    require_files(files.values())
    return files


def _fill(
    model: nnx.Module, config, files: Mapping[str, CheckpointFile], role: str, load, seed: int
):
    if config.weights == "published":
        load(model, files[role])
    else:
        randomise_parameters(model, seed)
    check_concrete(model, role)
    return model


def build_autoencoder(
    config, files: Mapping[str, CheckpointFile], *, with_encoder: bool
) -> RepresentationAutoencoder:
    """Decoder, latent normalisation and (for reconstruction) the encoder, filled."""
    seed = config.seed
    decoder = construct(build_decoder(config.decoder), abstract=True, seed=seed)
    _fill(decoder, config, files, "decoder", load_decoder, seed + 1)
    shape = latent_shape(config)
    if config.weights == "published":
        normalizer = load_latent_normalizer(
            files["latent_stats"], shape, eps=config.latent_norm_eps
        )
    else:  # random positive variances around 1, no mean (as the published DINOv2-B file)
        variance = np.random.default_rng(seed + 2).uniform(0.5, 2.0, shape).astype(np.float32)
        normalizer = LatentNormalizer(variance, None, eps=config.latent_norm_eps)
    encoder = None
    if with_encoder:
        encoder = construct(build_encoder(config.encoder), abstract=True, seed=seed)
        _fill(encoder, config, files, "encoder", load_encoder, seed + 3)
    return RepresentationAutoencoder(
        encoder=encoder,
        normalizer=normalizer,
        decoder=decoder,
        encoder_input_size=config.encoder.input_size,
    )


def build_stage2(config, files: Mapping[str, CheckpointFile], role: str) -> nnx.Module:
    """The stage-2 network (``role="stage2"``) or the autoguidance guide (``role="guide"``)."""
    model = construct(build_dit(config[role]), abstract=True, seed=config.seed)
    offset = 4 if role == "stage2" else 5
    return _fill(model, config, files, role, load_dit_dh, config.seed + offset)


def workdir_path(workdir: str | pathlib.Path) -> pathlib.Path:
    """The work directory, created if needed."""
    path = pathlib.Path(workdir).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path
