"""The config schema: every key a config file may set, with its default.

Config files (``apps/train/configs/<name>.py``) start from `base_config` and replace whole
sections with the helpers below, so that each section holds exactly the keys its ``name``
needs; ``build.py`` and ``recipes/`` turn the names into objects. The returned configs are locked by the
command line, so a misspelled key (``--config.train.num_step=...``) fails with a
"did you mean" message instead of being ignored.

Sections:

| section      | what it builds                                                    |
|--------------|-------------------------------------------------------------------|
| `data`       | a record source (`digits`, `synthetic`, `latents`, `imagefolder`, `arrayrecord`, `webdataset`) |
| `loader`     | Grain reader threads and prefetch                                  |
| `model`      | the network: ``name`` + its constructor's keyword arguments       |
| `objective`  | the training objective (`interpolant`, `ddpm`, `meanflow`, `edm`, `edm2`, `repa`, `rae_decoder`, `diffusion_forcing`) |
| `optimizer`  | AdamW and gradient clipping                                        |
| `schedule`   | learning-rate warm-up and decay                                    |
| `ema`        | EMA decays; EDM2 power-function EMAs and their snapshots (post hoc)  |
| `train`      | batch size, steps, logging interval, non-finite policy             |
| `checkpoint` | where, how often, how many                                          |
| `sharding`   | strategy and mesh axis sizes                                        |
| `distributed`| joining several processes (hosts) into one run (`nnx_train.multihost`) |
| `sampler`    | solver and time grid for pictures and evaluation                   |
| `guidance`   | classifier-free guidance of the sampling field (`cfg`, `none`)     |
| `samples`    | the sample-grid PNG                                                 |
| `eval`       | periodic evaluation (`digits` classifier metrics, `fid`, `none`)   |
| `autoencoder`| decoder of latents for pictures and FID (`none`, `sdvae`)          |
| `logging`    | wandb and the progress bar                                          |
"""

from __future__ import annotations

from ml_collections import ConfigDict

from nnx_train.sections import (
    arrayrecord_data,
    ddpm_objective,
    diffusion_forcing_objective,
    digits_data,
    dinov2_encoder,
    edm2_objective,
    edm_objective,
    imagefolder_data,
    interpolant_objective,
    latent_data,
    meanflow_objective,
    moving_digits_data,
    rae_decoder_objective,
    repa_objective,
    synthetic_data,
    time_distribution,
    webdataset_data,
)

__all__ = [
    "XL_ONE_GPU_POLICY",
    "arrayrecord_data",
    "base_config",
    "ddpm_objective",
    "digits_data",
    "diffusion_forcing_objective",
    "dinov2_encoder",
    "edm2_objective",
    "edm_objective",
    "imagefolder_data",
    "interpolant_objective",
    "latent_data",
    "make_tiny",
    "sdvae_latents",
    "sibling_config",
    "meanflow_objective",
    "moving_digits_data",
    "rae_decoder_objective",
    "repa_objective",
    "synthetic_data",
    "time_distribution",
    "webdataset_data",
]


def sdvae_latents(
    config: ConfigDict, *, resolution: int = 256, edm2: bool = False, horizontal_flip: bool = False
) -> ConfigDict:
    """Sets ImageNet SD-VAE latents (``tools/extract_latents.py``) and the SD-VAE decoder.

    ``horizontal_flip`` needs latents extracted with ``--flip`` (`nnx_train.data.LatentSource`).

    DiT / SiT / REPA scale latents by 0.18215; EDM2 standardises them per channel with
    ``raw_mean [5.81, 3.25, 0.12, -2.15]`` and ``raw_std [4.17, 4.62, 3.71, 3.28]`` to std 0.5
    (NVlabs/edm2 ``training/encoders.py``; never mix the two).
    """
    side = resolution // 8
    config.data = latent_data(
        num_classes=1000, posterior="mean_std", horizontal_flip=horizontal_flip
    )
    config.autoencoder.name = "sdvae"
    if edm2:
        config.autoencoder.shift = (5.81, 3.25, 0.12, -2.15)
        config.autoencoder.scale = tuple(0.5 / s for s in (4.17, 4.62, 3.71, 3.28))
    else:
        config.autoencoder.shift = (0.0,)
        config.autoencoder.scale = (0.18215,)
    config.model.input_size = side
    config.model.in_channels = 4
    return config


def sibling_config(this_file: str, name: str, arg: str | None = None) -> ConfigDict:
    """``get_config(arg)`` of the config file ``name``.py next to ``this_file``.

    Lets a recipe variant start from its parent (``sit_xl2`` from ``sit_b2``) although config
    files are loaded by path, not as a package.
    """
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(os.path.abspath(this_file)), f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"nnx_train_config_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def dit_model() -> ConfigDict:
    """DiT-B/2 on 32x32x4 latents, SiT-style continuous time (``time_scale`` 1)."""
    return ConfigDict(
        {
            "name": "DiT",
            "input_size": 32,
            "patch_size": 2,
            "in_channels": 4,
            "hidden_size": 768,
            "depth": 12,
            "num_heads": 12,
            "mlp_ratio": 4.0,
            "num_classes": 1000,
            "learn_sigma": False,
            "time_scale": 1.0,
            "dtype": "float32",
            "remat": "none",  # "none" | "dots_saveable" | "full" (nnx_nets.REMAT_POLICIES)
        }
    )


def optimization_sections(config: ConfigDict) -> None:
    """``optimizer``, ``schedule``, ``ema``, ``train`` and ``checkpoint``: AdamW at 1e-4,
    constant, one EMA of decay 0.9999, batch 256 for 400k steps."""
    config.optimizer = ConfigDict(
        {
            "name": "adamw",
            "learning_rate": 1e-4,
            "b1": 0.9,
            "b2": 0.999,
            "eps": 1e-8,
            "weight_decay": 0.0,
            "grad_clip_norm": 0.0,
        }
    )
    config.schedule = ConfigDict(
        {
            "name": "constant",
            "warmup_steps": 0,
            "decay_steps": 0,
            "end_learning_rate": 0.0,
            # False: the warm-up holds the peak rate instead of ramping from 0 (RAE stage 2)
            "warmup_from_zero": True,
        }
    )
    # Fixed-decay EMAs, plus EDM2's power-function EMAs (nnx_train.ema; off when sigma_rels is
    # empty) whose snapshots, every snapshot_every_steps steps, feed tools/posthoc_ema.py;
    # snapshot_directory "" is phema_snapshots/ beside the checkpoint folder.
    config.ema = ConfigDict(
        {
            "decays": (0.9999,),
            "sigma_rels": (),
            "snapshot_every_steps": 0,
            "snapshot_directory": "",
        }
    )
    config.train = ConfigDict(
        {
            "batch_size": 256,
            "num_steps": 400_000,
            "log_every": 100,
            "nonfinite": "skip",
            "max_nonfinite_steps": 100,
        }
    )
    config.checkpoint = ConfigDict(
        {
            "directory": "",
            "every_steps": 50_000,
            "keep": 8,
            "keep_period": 100_000,
            "async_save": True,
        }
    )


def scale_out_sections(config: ConfigDict) -> None:
    """``sharding`` (the mesh) and ``distributed`` (joining several hosts)."""
    config.sharding = ConfigDict(
        # The mesh spans every device of every process; data x fsdp x sequence x tensor must
        # equal the device count (one axis may be -1: inferred).
        {"strategy": "replicate", "data": -1, "fsdp": 1, "sequence": 1, "tensor": 1}
    )
    # Several hosts: nnx_train.multihost. "auto" joins when the three keys below are set or a
    # cluster (TPU VM, SLURM, Open MPI) is detected; "" / 0 / -1 mean "detect".
    config.distributed = ConfigDict(
        {
            "initialize": "auto",
            "coordinator_address": "",
            "num_processes": 0,
            "process_id": -1,
            "initialization_timeout_s": 300,
        }
    )


def sampling_sections(config: ConfigDict) -> None:
    """``sampler``, ``guidance``, ``samples`` (pictures) and ``eval`` (metrics)."""
    config.sampler = ConfigDict(
        {
            "solver": "heun",
            "num_steps": 32,
            "grid": "uniform",
            "t_start": 1.0,
            "diffusion": "sigma",
        }
    )
    # Guidance of the sampling field (nnx_samplers.ClassifierFreeGuidance): name "cfg" or
    # "none", weight, the (t_lo, t_hi) interval where it applies, and the number of guided
    # leading channels (0: all; 3: DiT / SiT's 3 of 4 and LightningDiT's 3 of 32).
    config.guidance = ConfigDict(
        {"name": "cfg", "scale": 1.0, "interval": (0.0, 1.0), "guided_channels": 0}
    )
    config.samples = ConfigDict({"every_steps": 25_000, "num_images": 64, "ema": 0.9999})
    config.eval = ConfigDict(
        {
            "name": "none",
            "every_steps": 0,
            "num_samples": 10_000,
            "batch_size": 256,
            "ema": 0.9999,
            "inception_weights": "",
            "reference_stats": "",
            # keep the scored samples as workdir/eval_samples_<step>.npz (ADM sample batch)
            "save_samples": False,
            # () evaluates sampler.num_steps; (1, 2) reports every metric per step count as
            # <metric>_steps<n> (MeanFlow: one network evaluation per step)
            "sampler_steps": (),
            # rows to report, "cfg<scale>/<count>" each (e.g. "cfg1.5/50k"): metrics are keyed
            # "<metric>@<row>"; periodic evaluations score the rows of at most num_samples
            # images, the final one every row. Empty: one row at guidance.scale, num_samples.
            "settings": (),
        }
    )


def base_config() -> ConfigDict:
    """Defaults shared by every config file (SiT-style training of a DiT)."""
    config = ConfigDict()
    config.name = "base"
    config.seed = 0
    # One value read by the objective's time distribution and by the sampling grid
    # (Zheng et al. 2025, RAE: training and sampling must agree; 1.0 means no shift).
    config.time_shift = 1.0
    config.data = synthetic_data()
    config.loader = ConfigDict({"read_threads": 4, "prefetch_batches": 4})
    config.model = dit_model()
    config.objective = interpolant_objective()
    optimization_sections(config)
    scale_out_sections(config)
    sampling_sections(config)
    # Latent space: normalisation z_model = (z - shift) * scale (per channel or scalar), used to
    # read latent datasets, to encode pixels on the fly and to decode samples for pictures/FID.
    config.autoencoder = ConfigDict(
        {"name": "none", "weights": "", "shift": (0.0,), "scale": (0.18215,)}
    )
    config.logging = ConfigDict(
        {"wandb_project": "nnx-diffusion", "wandb_mode": "disabled", "progress_bar": True}
    )
    return config


# The XL recipes' precision and remat policy (nnx_nets.precision): float32 master weights and
# AdamW state, bfloat16 matmuls and activations, each scanned block keeping its matmul outputs.
# DiT-XL/2 at batch 256 then compiles to 116.4 GiB (temp + argument + output, XLA:CPU buffer
# assignment; docs/precision.md), under one H200's 141 GB; asserted by
# apps/train/tests/test_memory_model.py.
XL_ONE_GPU_POLICY = {"dtype": "bfloat16", "remat": "dots_saveable", "scan_blocks": True}


def make_tiny(
    config: ConfigDict, *, shape=(8, 8, 4), num_classes: int = 10, **model: object
) -> ConfigDict:
    """Shrinks a recipe for a smoke run on synthetic data; everything else is kept.

    Args:
      config: a recipe config (modified in place and returned).
      shape: ``(H, W, C)`` of the synthetic records.
      num_classes: classes of the synthetic data and the model.
      **model: replacement values for ``config.model`` (small widths and depths);
        the input side and channels (`nnx_train.networks.MODEL_INPUT_KEYS`) follow ``shape``
        and ``num_classes`` follows ``num_classes`` when the model has it.

    Returns:
      ``config`` with synthetic data, a tiny model, 2 steps, batch 8, checkpoint at the end,
      a 4-image sample grid with 2 sampler steps, no periodic evaluation (one unnamed row
      if a test turns it on), on one device.
    """
    config.name = f"{config.name}_tiny"
    config.data = synthetic_data(shape=shape, num_classes=num_classes, num_examples=64)
    config.loader.read_threads = 0
    config.loader.prefetch_batches = 1
    from nnx_train.networks import MODEL_INPUT_KEYS

    input_keys = MODEL_INPUT_KEYS.get(config.model.name)
    if input_keys is not None:
        config.model[input_keys[0]] = shape[0]
        config.model[input_keys[1]] = shape[-1]
    if "num_classes" in config.model:
        config.model.num_classes = num_classes
    for key, value in model.items():
        setattr(config.model, key, value)
    config.train.batch_size = 8
    config.train.num_steps = 2
    config.train.log_every = 1
    config.checkpoint.every_steps = 2
    config.checkpoint.keep = 2
    config.checkpoint.keep_period = 0
    if config.objective.name != "rae_decoder":  # it samples nothing: no sampler key is read
        config.sampler.num_steps = 2
    config.samples.every_steps = 0
    config.samples.num_images = 4
    config.eval.name = "none"
    config.eval.every_steps = 0
    config.eval.settings = ()  # one unnamed row of eval.num_samples if a test turns eval on
    config.autoencoder.name = "none"
    config.logging.progress_bar = False
    return config
