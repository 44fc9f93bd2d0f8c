"""Config sections: one function per ``name`` of the ``data`` and ``objective`` sections.

Each returns a `ConfigDict` holding the section's ``name`` plus exactly the keys that its
builder reads (`nnx_train.data.from_config`, `nnx_train.recipes`); `nnx_train.defaults`
re-exports them for config files.
"""

from __future__ import annotations

from ml_collections import ConfigDict

__all__ = [
    "arrayrecord_data",
    "ddpm_objective",
    "digits_data",
    "dinov2_encoder",
    "edm2_objective",
    "edm_objective",
    "imagefolder_data",
    "interpolant_objective",
    "latent_data",
    "meanflow_objective",
    "rae_decoder_objective",
    "repa_objective",
    "synthetic_data",
    "webdataset_data",
]


def digits_data(*, holdout_fraction: float = 0.15, split_seed: int = 0) -> ConfigDict:
    """scikit-learn digits, 8x8x1, 10 classes, stratified held-out split."""
    return ConfigDict(
        {"name": "digits", "holdout_fraction": holdout_fraction, "split_seed": split_seed}
    )


def moving_digits_data(
    *,
    num_frames: int = 4,
    frame_size: int = 16,
    motions_per_digit: int = 8,
    grid: int = 1,
    motion: str = "random",
    holdout_fraction: float = 0.15,
    split_seed: int = 0,
    seed: int = 0,
) -> ConfigDict:
    """Clips of a digit bouncing in a ``frame_size`` square (`nnx_train.data.MovingDigitsSource`)."""
    return ConfigDict(
        {
            "name": "moving_digits",
            "num_frames": num_frames,
            "frame_size": frame_size,
            "motions_per_digit": motions_per_digit,
            "grid": grid,
            "motion": motion,
            "holdout_fraction": holdout_fraction,
            "split_seed": split_seed,
            "seed": seed,
        }
    )


def diffusion_forcing_objective(
    *, class_dropout: float = 0.1, rollout_frames: int = 8, pyramid_stride: int = 0
) -> ConfigDict:
    """Diffusion Forcing (nnx_objectives.DiffusionForcingObjective) + class dropout; samples
    ``rollout_frames`` frames, the first window along a pyramid of ``pyramid_stride``."""
    return ConfigDict(
        {
            "name": "diffusion_forcing",
            "class_dropout": class_dropout,
            "rollout_frames": rollout_frames,
            "pyramid_stride": pyramid_stride,
        }
    )


def synthetic_data(
    *, shape=(8, 8, 4), num_classes: int = 10, num_examples: int = 256, seed: int = 0
) -> ConfigDict:
    """Deterministic synthetic records of ``shape`` (tests and smoke runs)."""
    return ConfigDict(
        {
            "name": "synthetic",
            "shape": tuple(shape),
            "num_classes": num_classes,
            "num_examples": num_examples,
            "seed": seed,
        }
    )


def latent_data(
    *,
    path: str = "",
    num_classes: int = 1000,
    posterior: str = "mean_std",
    horizontal_flip: bool = False,
) -> ConfigDict:
    """EDM2-format latents (``tools/extract_latents.py``); see `nnx_train.data.LatentSource`.

    Their normalisation ``(z - shift) * scale`` is ``config.autoencoder.shift/scale``: one
    value for reading the data and for decoding samples. ``horizontal_flip`` reads the stored
    latent of the flipped image with probability 1/2 (a dataset extracted with ``--flip``).
    """
    return ConfigDict(
        {
            "name": "latents",
            "path": path,
            "num_classes": num_classes,
            "posterior": posterior,
            "horizontal_flip": horizontal_flip,
        }
    )


def imagefolder_data(
    *, path: str = "", resolution: int = 256, num_classes: int = 1000, horizontal_flip: bool = False
) -> ConfigDict:
    """Pixels in class sub-folders, ADM centre crop, optional flips."""
    return ConfigDict(
        {
            "name": "imagefolder",
            "path": path,
            "resolution": resolution,
            "num_classes": num_classes,
            "horizontal_flip": horizontal_flip,
        }
    )


def _record_content(
    content: str, resolution: int, horizontal_flip: bool, posterior: str
) -> dict[str, object]:
    return {
        "content": content,
        "resolution": resolution,
        "horizontal_flip": horizontal_flip,
        "posterior": posterior,
    }


def arrayrecord_data(
    *,
    path: str = "",
    split: str = "train",
    content: str = "pixels",
    resolution: int = 256,
    horizontal_flip: bool = False,
    posterior: str = "mean_std",
    num_classes: int = 1000,
    image_key: str = "image",
    label_key: str = "label",
) -> ConfigDict:
    """ArrayRecord files of ``tf.train.Example`` records; see `nnx_train.data.ArrayRecordSource`.

    TFDS-prepared ImageNet: ``path=<data_dir>/imagenet2012/5.1.0``, ``split="train"``.
    ``content`` is ``"pixels"`` (encoded images: ADM crop to ``resolution``, optional flips)
    or ``"latents"`` (``.npy`` bytes, ``posterior`` as `latent_data`, normalised with
    ``config.autoencoder.shift/scale``).
    """
    return ConfigDict(
        {
            "name": "arrayrecord",
            "path": path,
            "split": split,
            **_record_content(content, resolution, horizontal_flip, posterior),
            "num_classes": num_classes,
            "image_key": image_key,
            "label_key": label_key,
        }
    )


def webdataset_data(
    *,
    path: str = "",
    content: str = "pixels",
    resolution: int = 256,
    horizontal_flip: bool = False,
    posterior: str = "mean_std",
    num_classes: int = 1000,
    shuffle_buffer: int = 1000,
) -> ConfigDict:
    """WebDataset tar shards (``{key}.jpg|png|npy`` + ``{key}.cls``), streamed per host; see
    `nnx_train.data.WebDatasetSource`. ``content`` as in `arrayrecord_data`; ``shuffle_buffer``
    records are shuffled together (memory: that many encoded records per host)."""
    return ConfigDict(
        {
            "name": "webdataset",
            "path": path,
            **_record_content(content, resolution, horizontal_flip, posterior),
            "num_classes": num_classes,
            "shuffle_buffer": shuffle_buffer,
        }
    )


def time_distribution(name: str = "uniform", *, mean: float = 0.0, std: float = 1.0) -> dict:
    """The training-time law, one constructor of nnx-objectives: ``"uniform"``
    (`UniformTime`) or ``"logit_normal"`` (`LogitNormalTime(mean, std)`: t = sigmoid(N(mean,
    std^2)), Esser et al. 2024, eq. 19); ``mean`` / ``std`` are read by logit_normal only."""
    return {"name": name, "mean": mean, "std": std}


def interpolant_objective(
    *,
    path: str = "linear",
    prediction: str = "velocity",
    times: dict | None = None,
    class_dropout: float = 0.1,
) -> ConfigDict:
    """SiT's interpolant objective (nnx_objectives.InterpolantObjective) + class dropout;
    ``times`` is a `time_distribution` section (default uniform)."""
    return ConfigDict(
        {
            "name": "interpolant",
            "path": path,
            "prediction": prediction,
            "time_distribution": times or time_distribution(),
            "class_dropout": class_dropout,
        }
    )


def meanflow_objective(
    *,
    times: dict | None = None,
    equal_times_fraction: float = 0.75,
    adaptive_power: float = 1.0,
    adaptive_constant: float = 0.01,
    omega: float = 1.0,
    kappa: float = 0.5,
    guidance_t_min: float = 0.0,
    guidance_t_max: float = 1.0,
    class_dropout: float = 0.1,
    drop_placement: str = "first_rows",
) -> ConfigDict:
    """MeanFlow (nnx_objectives.MeanFlowObjective) with CFG folded into training; ``times``
    is a logit-normal `time_distribution` section (default MeanFlow's mean -0.4, std 1.0).

    Defaults are the official ones (Gsunshine/meanflow ``meanflow.py``); ``drop_placement``
    ``"first_rows"`` drops the labels of the leading rows (those with ``r = t``) as the
    official code does, ``"independent"`` drops each row on its own.
    """
    return ConfigDict(
        {
            "name": "meanflow",
            "time_distribution": times or time_distribution("logit_normal", mean=-0.4, std=1.0),
            "equal_times_fraction": equal_times_fraction,
            "adaptive_power": adaptive_power,
            "adaptive_constant": adaptive_constant,
            "omega": omega,
            "kappa": kappa,
            "guidance_t_min": guidance_t_min,
            "guidance_t_max": guidance_t_max,
            "class_dropout": class_dropout,
            "drop_placement": drop_placement,
        }
    )


def dinov2_encoder(
    *,
    hidden_size: int = 768,
    depth: int = 12,
    num_heads: int = 12,
    patch_size: int = 14,
    image_size: int = 518,
    num_register_tokens: int = 0,
    final_norm_affine: bool = True,
    resolution: int = 224,
    weights: str = "",
) -> ConfigDict:
    """A frozen DINOv2 (``nnx_nets.DINOv2`` kwargs) + its weights file and input side."""
    return ConfigDict(
        {
            "name": "DINOv2",
            "hidden_size": hidden_size,
            "depth": depth,
            "num_heads": num_heads,
            "patch_size": patch_size,
            "image_size": image_size,
            "num_register_tokens": num_register_tokens,
            "final_norm_affine": final_norm_affine,
            "resolution": resolution,
            "weights": weights,
        }
    )


def ddpm_objective(
    *,
    num_train_steps: int = 1000,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    vlb_weight: float = 1.0,
    class_dropout: float = 0.1,
) -> ConfigDict:
    """DiT's DDPM (nnx_objectives.ImprovedDDPMObjective on nnx_samplers.DDPMSchedule):
    linear betas, epsilon plus learned variance, hybrid loss; class dropout."""
    return ConfigDict(
        {
            "name": "ddpm",
            "num_train_steps": num_train_steps,
            "beta_start": beta_start,
            "beta_end": beta_end,
            "vlb_weight": vlb_weight,
            "class_dropout": class_dropout,
        }
    )


def repa_objective(
    *, depth: int = 8, coefficient: float = 0.5, projector_width: int = 2048, encoder=None
) -> ConfigDict:
    """REPA (nnx_objectives.REPAModel / REPAObjective) on SiT's linear-velocity objective."""
    section = interpolant_objective()
    section.name = "repa"
    section.depth = depth
    section.coefficient = coefficient
    section.projector_width = projector_width
    section.encoder = encoder if encoder is not None else dinov2_encoder()
    return section


def rae_decoder_objective(
    *, noise_max: float = 0.8, l1_weight: float = 1.0, l2_weight: float = 0.0, encoder=None
) -> ConfigDict:
    """RAE stage 1: decoder on frozen DINOv2-B-with-registers tokens, noise augmentation."""
    return ConfigDict(
        {
            "name": "rae_decoder",
            "noise_max": noise_max,
            "l1_weight": l1_weight,
            "l2_weight": l2_weight,
            "encoder": encoder
            if encoder is not None
            else dinov2_encoder(num_register_tokens=4, final_norm_affine=False),
        }
    )


def edm_objective(
    *, P_mean: float = -1.2, P_std: float = 1.2, sigma_data: float = 0.5
) -> ConfigDict:
    """EDM (Karras et al. 2022): preconditioning, ``ln sigma ~ N(P_mean, P_std^2)``, Table 1 loss."""
    return ConfigDict({"name": "edm", "P_mean": P_mean, "P_std": P_std, "sigma_data": sigma_data})


def edm2_objective(
    *, P_mean: float = -0.4, P_std: float = 1.0, sigma_data: float = 0.5, logvar_channels: int = 128
) -> ConfigDict:
    """EDM2: EDM loss with the learned log-variance weighting (EDM2 Eq. 21)."""
    return ConfigDict(
        {
            "name": "edm2",
            "P_mean": P_mean,
            "P_std": P_std,
            "sigma_data": sigma_data,
            "logvar_channels": logvar_channels,
        }
    )
