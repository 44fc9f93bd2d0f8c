"""The one place where config names become objects.

Every builder is a ``match`` over a closed set of names; an unknown name raises a
`ConfigError` that lists the valid ones. Config sections hold a ``name`` plus the keyword
arguments of what it builds (``defaults.py`` documents them). Library objects come from the
public ``__all__`` of nnx-nets, nnx-objectives, nnx-samplers and nnx-sharding.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from ml_collections import ConfigDict

from nnx_train.errors import ConfigError

__all__ = [
    "build_data_source",
    "build_grid",
    "build_mesh_and_rules",
    "build_model_factory",
    "build_optimizer",
    "build_solver",
    "build_task",
    "check_data_fits_model",
]

log = logging.getLogger(__name__)

DATA_NAMES = ("digits", "synthetic", "latents", "imagefolder", "arrayrecord", "webdataset")
DATA_CONTENTS = ("pixels", "latents")
MODEL_NAMES = ("DiT", "MeanFlowDiT", "LightningDiT", "DiTDH", "EDM2UNet", "RAEDecoder")
OBJECTIVE_NAMES = ("interpolant", "meanflow", "edm2", "repa", "rae_decoder")
SOLVER_NAMES = (
    "euler",
    "heun",
    "euler_maruyama",
    "euler_jump",
    "dpm_solver_2m",
    "dpm_solver_3m",
    "edm_stochastic",
)
GRID_NAMES = ("uniform", "edm", "logsnr")
DIFFUSION_NAMES = ("sigma", "constant", "linear", "sbdm", "decreasing", "increasing_decreasing")
STRATEGY_NAMES = ("replicate", "fsdp", "tensor", "fsdp_tensor", "sequence")
DTYPE_NAMES = ("float32", "bfloat16", "float16")


def _unknown(section: str, name: Any, valid: tuple[str, ...]) -> ConfigError:
    return ConfigError(f"Unknown {section}={name!r}; valid names: {', '.join(valid)}.")


def _kwargs(section: ConfigDict, *, drop: tuple[str, ...] = ("name",)) -> dict:
    return {k: v for k, v in section.to_dict().items() if k not in drop}


def _parameters(cls: Any) -> dict:
    """Keyword parameters of a constructor (classes: of ``__init__``, minus ``self``)."""
    target = cls.__init__ if isinstance(cls, type) else cls
    parameters = dict(inspect.signature(target).parameters)
    parameters.pop("self", None)
    return parameters


def _call(cls: Callable, section_name: str, kwargs: dict, **extra: Any) -> Any:
    """Calls a constructor, turning a wrong keyword into a message listing the valid ones."""
    try:
        parameters = _parameters(cls)
    except (TypeError, ValueError):
        parameters = {}
    if parameters and not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        unknown = sorted(set(kwargs) - set(parameters))
        if unknown:
            valid = sorted(k for k in parameters if k not in ("rngs", "self"))
            raise ConfigError(
                f"{section_name}: {getattr(cls, '__name__', cls)} takes no argument(s) {unknown}; "
                f"its arguments are {valid}."
            )
    return cls(**kwargs, **extra)


def dtype_from_name(name: str) -> jnp.dtype:
    """``"bfloat16"`` -> ``jnp.bfloat16`` (parameters stay float32; this is the compute dtype)."""
    if name not in DTYPE_NAMES:
        raise _unknown("model.dtype", name, DTYPE_NAMES)
    return jnp.dtype(name)


# ----------------------------------------------------------------------------- data


def build_data_source(config: ConfigDict, *, split: str = "train") -> Any:
    """Record source of ``config.data`` (`nnx_train.data`); latents are normalised with
    ``config.autoencoder.shift/scale``."""
    from nnx_train import data as sources

    data, autoencoder = config.data, config.autoencoder
    match data.name:
        case "digits":
            return sources.DigitsSource(
                split=split, holdout_fraction=data.holdout_fraction, split_seed=data.split_seed
            )
        case "synthetic":
            return sources.SyntheticSource(**_kwargs(data))
        case "latents":
            if not data.path:
                raise ConfigError(
                    "data.path is empty: set --config.data.path to a latent folder or zip written "
                    "by tools/extract_latents.py."
                )
            return sources.LatentSource(
                **_kwargs(data), shift=tuple(autoencoder.shift), scale=tuple(autoencoder.scale)
            )
        case "imagefolder":
            if not data.path:
                raise ConfigError(
                    "data.path is empty: set --config.data.path to an ImageFolder root "
                    "(root/<class>/<image>)."
                )
            return sources.ImageFolderSource(**_kwargs(data))
        case "arrayrecord" | "webdataset":
            return _build_container_source(data, autoencoder)
        case _:
            raise _unknown("data.name", data.name, DATA_NAMES)


def _build_container_source(data: ConfigDict, autoencoder: ConfigDict) -> Any:
    """ArrayRecord / WebDataset sources: ``data.content`` picks the codec of the records."""
    from nnx_train import data as sources

    if not data.path:
        raise ConfigError(
            f"data.path is empty: set --config.data.path to the {data.name} files (a folder, "
            "a glob or, for webdataset, a range such as /data/shard-{000000..000146}.tar)."
        )
    match data.content:
        case "pixels":
            codec = sources.PixelCodec(
                resolution=data.resolution, horizontal_flip=data.horizontal_flip
            )
        case "latents":
            codec = sources.LatentCodec(
                posterior=data.posterior,
                shift=tuple(autoencoder.shift),
                scale=tuple(autoencoder.scale),
            )
        case _:
            raise _unknown("data.content", data.content, DATA_CONTENTS)
    codec_keys = ("name", "content", "resolution", "horizontal_flip", "posterior")
    if data.name == "arrayrecord":
        return sources.ArrayRecordSource(codec=codec, **_kwargs(data, drop=codec_keys))
    return sources.WebDatasetSource(codec=codec, **_kwargs(data, drop=codec_keys))


def check_data_fits_model(
    shape: tuple[int, int, int], num_classes: int, config: ConfigDict
) -> None:
    """Raises a `ConfigError` when the data's shape or classes do not fit the model.

    Args:
      shape: ``(H, W, C)`` of one record in model space (after any latent encoder).
      num_classes: number of classes of the data.
      config: the run config.
    """
    model = config.model
    height, width, channels = shape
    size = model.get("input_size", model.get("img_resolution", None))
    if size is not None and (height, width) != (size, size):
        raise ConfigError(
            f"The data has {height}x{width} inputs but the model is built for {size}x{size} "
            f"(model.input_size / img_resolution); set it to {height} (or change the data)."
        )
    patch = model.get("patch_size", None)
    if patch and (height % patch or width % patch):
        raise ConfigError(
            f"Image size {height}x{width} is not divisible by model.patch_size={patch}; choose a "
            "patch size that divides it."
        )
    expected = model.get("in_channels", model.get("img_channels", None))
    if expected is not None and channels != expected:
        raise ConfigError(
            f"The data has {channels} channels but the model takes {expected} "
            f"(model.in_channels / img_channels); set it to {channels}."
        )
    model_classes = model.get("num_classes", None)
    if model_classes is not None and num_classes > model_classes:
        raise ConfigError(
            f"The data has {num_classes} classes but model.num_classes={model_classes}; labels "
            "would be out of range. Set model.num_classes to at least the data's classes."
        )


# ----------------------------------------------------------------------------- model


def build_model_factory(model: ConfigDict, *, seed: int) -> Callable[[], nnx.Module]:
    """Zero-argument constructor of the network (creates its own ``nnx.Rngs(seed)``)."""
    import nnx_nets

    if model.name not in MODEL_NAMES:
        raise _unknown("model.name", model.name, MODEL_NAMES)
    cls = getattr(nnx_nets, model.name, None)
    if cls is None:
        raise ConfigError(
            f"model.name={model.name!r} is not exported by nnx_nets in this installation "
            f"(nnx_nets.__all__ = {sorted(nnx_nets.__all__)})."
        )
    kwargs = _kwargs(model)
    if "dtype" in kwargs:
        kwargs["dtype"] = dtype_from_name(kwargs["dtype"])
    parameters = _parameters(cls)
    unknown = sorted(set(kwargs) - set(parameters))
    if unknown:
        raise ConfigError(
            f"model: {model.name} takes no argument(s) {unknown}; its arguments are "
            f"{sorted(k for k in parameters if k != 'rngs')}."
        )

    def factory() -> nnx.Module:
        return cls(**kwargs, rngs=nnx.Rngs(seed))

    return factory


def _require_file(path: str, what: str, key: str) -> None:
    import os

    if not path or not os.path.isfile(path):
        raise ConfigError(
            f"{key}={path!r}: the {what} weights file is missing. Pass the published file "
            f"with --config.{key}=/path/to/file (.safetensors or .pt)."
        )


def _load_pretrained(module: nnx.Module, path: str, *, loader: str, key: str, what: str) -> None:
    """Fills ``module`` from a PyTorch/safetensors file through nnx-weightconv."""
    import nnx_weightconv as wc

    _require_file(path, what, key)
    try:
        _fill(module, wc, wc.read_state_dict(path), loader)
    except (wc.ConversionError, OSError) as err:
        # ConversionError lists every missing / unexpected / mis-shaped key, one per line.
        problems = "; ".join(line.strip() for line in str(err).splitlines() if line.strip())
        raise ConfigError(
            f"{key}={path!r} cannot fill the {what} network: {problems}. Pass the published "
            f"{what} weights (.safetensors or .pt) with --config.{key}=/path/to/file."
        ) from err


def _fill(module: nnx.Module, wc: Any, state_dict: dict, loader: str) -> None:
    match loader:
        case "dinov2":
            wc.load_dinov2(module, state_dict)
        case "sd_vae":  # old ("query"/"key") and new ("to_q"/"to_k") attention names
            wc.load_sd_vae(module, state_dict)
        case _:
            raise _unknown("weights loader", loader, ("dinov2", "sd_vae"))


def _representation_encoder(encoder: ConfigDict, *, seed: int, section: str) -> nnx.Module:
    """Frozen DINOv2 (REPA target, RAE encoder), filled from ``encoder.weights`` when set.

    Empty ``weights`` keeps random weights: only for smoke tests (a warning is logged).
    """
    import nnx_nets

    match encoder.name:
        case "DINOv2":
            cls = nnx_nets.DINOv2
        case _:
            raise _unknown(f"{section}.name", encoder.name, ("DINOv2",))
    kwargs = _kwargs(encoder, drop=("name", "weights", "resolution"))
    if "dtype" in kwargs:
        kwargs["dtype"] = dtype_from_name(kwargs["dtype"])
    module = _call(cls, section, kwargs, rngs=nnx.Rngs(seed + 7))
    if encoder.weights:
        _load_pretrained(
            module, encoder.weights, loader="dinov2", key=f"{section}.weights", what="DINOv2"
        )
    else:
        log.warning(
            "%s.weights is empty: the DINOv2 encoder keeps RANDOM weights (smoke tests only).",
            section,
        )
    return module


def build_autoencoder(config: ConfigDict) -> nnx.Module | None:
    """The SD-VAE of ``config.autoencoder`` with its weights, or ``None`` (``name="none"``)."""
    import nnx_nets

    section = config.autoencoder
    match section.name:
        case "none":
            return None
        case "sdvae":
            _require_file(section.weights, "SD-VAE", "autoencoder.weights")  # before 84M params
            module = nnx_nets.SDVAE(rngs=nnx.Rngs(0))
            _load_pretrained(
                module, section.weights, loader="sd_vae", key="autoencoder.weights", what="SD-VAE"
            )
            return module
        case _:
            raise _unknown("autoencoder.name", section.name, ("none", "sdvae"))


# ----------------------------------------------------------------------------- optimiser


def build_optimizer(config: ConfigDict) -> tuple[Any, Any]:
    """``(optax transformation, schedule)`` from ``config.optimizer`` and ``config.schedule``."""
    from nnx_train.optim import make_optimizer, make_schedule

    opt = config.optimizer
    if opt.name != "adamw":
        raise _unknown("optimizer.name", opt.name, ("adamw",))
    sched = config.schedule
    schedule = make_schedule(
        name=sched.name,
        peak_learning_rate=opt.learning_rate,
        warmup_steps=sched.warmup_steps,
        decay_steps=sched.decay_steps,
        end_learning_rate=sched.end_learning_rate,
    )
    tx = make_optimizer(
        schedule=schedule,
        b1=opt.b1,
        b2=opt.b2,
        eps=opt.eps,
        weight_decay=opt.weight_decay,
        grad_clip_norm=opt.grad_clip_norm,
    )
    return tx, schedule


# ----------------------------------------------------------------------------- sharding


def build_mesh_and_rules(sharding: ConfigDict) -> tuple[Any, Any]:
    """``(mesh, rules)`` of ``config.sharding`` (nnx-sharding), over every device of every
    process.

    Raises:
      ConfigError: the axis sizes do not multiply to the device count (or a -1 cannot be
        filled), in one line that names the sizes and the fix.
    """
    import nnx_sharding as ns

    mesh_config = ns.MeshConfig(
        data=sharding.data,
        fsdp=sharding.fsdp,
        sequence=sharding.sequence,
        tensor=sharding.tensor,
    )
    try:
        mesh_config.resolve(jax.device_count())
    except ValueError as error:
        raise ConfigError(
            f"sharding: {error} Set the sizes with --config.sharding.data, .fsdp, .sequence "
            "and .tensor."
        ) from None
    mesh = ns.make_mesh(mesh_config)
    match sharding.strategy:
        case "replicate":
            rules = ns.replicate_rules()
        case "fsdp":
            rules = ns.fsdp_rules()
        case "tensor":
            rules = ns.tensor_rules()
        case "fsdp_tensor":
            rules = ns.fsdp_tensor_rules()
        case "sequence":
            rules = ns.sequence_rules(ns.fsdp_rules())
        case _:
            raise _unknown("sharding.strategy", sharding.strategy, STRATEGY_NAMES)
    return mesh, rules


# ----------------------------------------------------------------------------- sampler


def build_solver(sampler: ConfigDict) -> Any:
    """The nnx-samplers solver named by ``sampler.solver``."""
    import nnx_samplers as sp

    match sampler.solver:
        case "euler":
            return sp.Euler()
        case "heun":
            return sp.Heun()
        case "euler_maruyama":
            return sp.EulerMaruyama(diffusion=_build_diffusion(sampler.diffusion))
        case "euler_jump":
            return sp.EulerJump()
        case "dpm_solver_2m":
            return sp.DPMSolverPlusPlus2M()
        case "dpm_solver_3m":
            return sp.DPMSolverPlusPlus3M()
        case "edm_stochastic":
            return sp.EDMStochastic()
        case _:
            raise _unknown("sampler.solver", sampler.solver, SOLVER_NAMES)


def _build_diffusion(name: str) -> Any:
    import nnx_samplers as sp

    match name:
        case "sigma":
            return sp.SigmaDiffusion()
        case "constant":
            return sp.ConstantDiffusion()
        case "linear":
            return sp.LinearDiffusion()
        case "sbdm":
            return sp.SBDMDiffusion()
        case "decreasing":
            return sp.DecreasingDiffusion()
        case "increasing_decreasing":
            return sp.IncreasingDecreasingDiffusion()
        case _:
            raise _unknown("sampler.diffusion", name, DIFFUSION_NAMES)


def build_grid(sampler: ConfigDict, *, time_shift: float) -> Any:
    """The time grid, shifted by the same ``time_shift`` that shifted the training times."""
    import nnx_samplers as sp

    match sampler.grid:
        case "uniform":
            grid = sp.UniformGrid(sampler.num_steps, t_start=sampler.t_start)
        case "edm":
            grid = sp.EDMGrid(sampler.num_steps)
        case "logsnr":
            grid = sp.LogSNRGrid(sampler.num_steps)
        case _:
            raise _unknown("sampler.grid", sampler.grid, GRID_NAMES)
    if time_shift != 1.0:
        grid = sp.ShiftedGrid(grid, time_shift)
    return grid


# ----------------------------------------------------------------------------- objective

PATH_NAMES = ("linear", "gvp", "vp")
PREDICTION_NAMES = ("velocity", "noise", "score", "x0")
TIME_NAMES = ("uniform", "logit_normal")


def _objective_path(name: str) -> Any:
    """The path of ``objective.path``; objectives and samplers share it (nnx_samplers.paths)."""
    import nnx_samplers as sp

    match name:
        case "linear":
            return sp.LinearPath()
        case "gvp":
            return sp.GVPPath()
        case "vp":
            return sp.VPPath()
        case _:
            raise _unknown("objective.path", name, PATH_NAMES)


_sampler_path = _objective_path


def _prediction(name: str) -> Any:
    import nnx_objectives as no

    match name:
        case "velocity":
            return no.VelocityPrediction()
        case "noise":
            return no.NoisePrediction()
        case "score":
            return no.ScorePrediction()
        case "x0":
            return no.X0Prediction()
        case _:
            raise _unknown("objective.prediction", name, PREDICTION_NAMES)


def _velocity_adapter(prediction: str, path: str) -> Callable[[Callable], Callable]:
    """Prediction ``g(x, t)`` in the network's parameterisation -> velocity field."""
    import nnx_samplers as sp

    match prediction:
        case "velocity":
            return lambda predict: predict
        case "noise":
            return lambda predict: sp.VelocityFromNoise(predict, _sampler_path(path))
        case "score":
            return lambda predict: sp.VelocityFromScore(predict, _sampler_path(path))
        case "x0":
            return lambda predict: sp.VelocityFromData(predict, _sampler_path(path))
        case _:
            raise _unknown("objective.prediction", prediction, PREDICTION_NAMES)


def build_time_distribution(section: ConfigDict, *, time_shift: float) -> Any:
    """Training-time law of ``objective`` followed by the shared ``time_shift``."""
    import nnx_objectives as no

    match section.time_distribution:
        case "uniform":
            law = no.UniformTime()
        case "logit_normal":
            law = no.LogitNormalTime(mean=section.time_mean, std=section.time_std)
        case _:
            raise _unknown("objective.time_distribution", section.time_distribution, TIME_NAMES)
    if time_shift != 1.0:
        law = no.ShiftedTime(law, time_shift)
    return law


def build_interpolant(section: ConfigDict, *, time_shift: float) -> Any:
    """nnx-objectives' `InterpolantObjective` (SiT) of ``config.objective``."""
    import nnx_objectives as no

    return no.InterpolantObjective(
        path=_objective_path(section.path),
        prediction=_prediction(section.prediction),
        time_distribution=build_time_distribution(section, time_shift=time_shift),
    )


def build_guidance(sampler: ConfigDict, *, null_label: int) -> Any:
    """CFG settings of ``config.sampler`` (``guidance="none"`` gives ``None``)."""
    from nnx_train.sampling import GuidanceSpec

    match sampler.guidance:
        case "none":
            return None
        case "cfg":
            return GuidanceSpec(
                scale=float(sampler.guidance_scale),
                interval=tuple(float(v) for v in sampler.guidance_interval),
                guided_channels=int(sampler.guided_channels) or None,
                null_label=null_label,
            )
        case _:
            raise _unknown("sampler.guidance", sampler.guidance, ("none", "cfg"))


# ----------------------------------------------------------------------------- task


def build_task(config: ConfigDict, *, data_shape: tuple[int, int, int]) -> Any:
    """The `GeneratorTask` or `AutoencoderTask` of ``config.objective``.

    Args:
      config: the run config.
      data_shape: ``(H, W, C)`` of one training example in model space.
    """
    name = config.objective.name
    if name not in OBJECTIVE_NAMES:
        raise _unknown("objective.name", name, OBJECTIVE_NAMES)
    try:
        return _build_task(config, data_shape=data_shape)
    except (KeyError, AttributeError) as err:
        raise ConfigError(
            f"objective {name!r} is missing a config key ({err}); start from a config file whose "
            f"objective section is {name!r} (see apps/train/configs/)."
        ) from err


def _build_task(config: ConfigDict, *, data_shape: tuple[int, int, int]) -> Any:
    import nnx_objectives as no
    import nnx_samplers as sp
    from nnx_train import tasks

    section = config.objective
    make_network = build_model_factory(config.model, seed=config.seed)
    num_classes = int(config.model.get("num_classes", config.data.get("num_classes", 0)))
    null_label = num_classes
    match section.name:
        case "interpolant":
            if config.model.get("learn_sigma", False):
                raise ConfigError(
                    "model.learn_sigma=True has no use in the interpolant objective (it trains a "
                    "single output); set --config.model.learn_sigma=False."
                )
            objective = no.ClassDropout(
                build_interpolant(section, time_shift=config.time_shift),
                probability=section.class_dropout,
                null_label=null_label,
            )
            generate = make_flow_generate_from_config(
                config, data_shape, section.prediction, section.path
            )
            return tasks.GeneratorTask(
                build_trainable=make_network,
                build_frozen=None,
                loss_fn=tasks.generator_loss(objective),
                generate=generate,
                num_classes=num_classes,
            )
        case "meanflow":
            from nnx_train.sampling import make_meanflow_generate

            guidance = None
            if section.omega != 1.0 or section.kappa != 0.0 or section.class_dropout > 0:
                guidance = no.MeanFlowGuidance(
                    null_label=null_label,
                    omega=section.omega,
                    kappa=section.kappa,
                    t_min=section.guidance_t_min,
                    t_max=section.guidance_t_max,
                    label_dropout=section.class_dropout,
                )
            objective = no.MeanFlowObjective(
                time_distribution=no.LogitNormalTime(mean=section.time_mean, std=section.time_std),
                equal_times_fraction=section.equal_times_fraction,
                adaptive_power=section.adaptive_power,
                adaptive_constant=section.adaptive_constant,
                guidance=guidance,
            )
            grid = sp.UniformGrid(config.sampler.num_steps)
            return tasks.GeneratorTask(
                build_trainable=make_network,
                build_frozen=None,
                loss_fn=tasks.generator_loss(objective),
                generate=make_meanflow_generate(grid=grid, data_shape=data_shape),
                num_classes=num_classes,
            )
        case "edm2":
            objective = no.UncertaintyWeighted(
                no.EDMObjective(
                    P_mean=section.P_mean, P_std=section.P_std, sigma_data=section.sigma_data
                )
            )

            def make_edm2() -> nnx.Module:
                precond = no.EDMPrecond(make_network(), sigma_data=section.sigma_data)
                head = no.LogVarHead(section.logvar_channels, rngs=nnx.Rngs(config.seed + 3))
                return no.WithLogVar(precond, head)

            return tasks.GeneratorTask(
                build_trainable=make_edm2,
                build_frozen=None,
                loss_fn=tasks.generator_loss(objective),
                generate=make_flow_generate_from_config(config, data_shape, "x0", "linear"),
                num_classes=num_classes,
            )
        case "repa":
            encoder_section = section.encoder
            flow = build_interpolant(section, time_shift=config.time_shift)
            repa = no.ClassDropout(
                tasks.REPAWithFrozenEncoder(
                    coefficient=section.coefficient,
                    flow=flow,
                    encoder_resolution=encoder_section.resolution,
                ),
                probability=section.class_dropout,
                null_label=null_label,
            )

            def make_repa() -> nnx.Module:
                return no.REPAModel(
                    make_network(),
                    depth=section.depth,
                    backbone_width=config.model.hidden_size,
                    encoder_width=encoder_section.hidden_size,
                    projector_width=section.projector_width,
                    rngs=nnx.Rngs(config.seed + 5),
                )

            def make_frozen() -> tasks.FrozenModules:
                return tasks.FrozenModules(
                    representation=_representation_encoder(
                        encoder_section, seed=config.seed, section="objective.encoder"
                    ),
                    latent_encoder=_latent_encoder(config),
                )

            return tasks.GeneratorTask(
                build_trainable=make_repa,
                build_frozen=make_frozen,
                loss_fn=tasks.repa_loss(
                    repa, scale=config.autoencoder.scale, shift=config.autoencoder.shift
                ),
                generate=make_flow_generate_from_config(
                    config, data_shape, section.prediction, section.path
                ),
                num_classes=num_classes,
            )
        case "rae_decoder":
            encoder_section = section.encoder

            def make_frozen() -> tasks.FrozenModules:
                return tasks.FrozenModules(
                    representation=_representation_encoder(
                        encoder_section, seed=config.seed, section="objective.encoder"
                    )
                )

            stage1 = tasks.RAEStage1(
                noise_max=section.noise_max,
                l1_weight=section.l1_weight,
                l2_weight=section.l2_weight,
                encoder_resolution=encoder_section.resolution,
            )
            return tasks.AutoencoderTask(
                build_trainable=make_network,
                build_frozen=make_frozen,
                loss_fn=stage1.loss,
                reconstruct=stage1.reconstruct,
                num_classes=num_classes,
            )
        case _:
            raise _unknown("objective.name", section.name, OBJECTIVE_NAMES)


def _latent_encoder(config: ConfigDict) -> nnx.Module | None:
    """The SD-VAE that encodes pixel batches on the fly when a latent model reads pixels."""
    if config.data.name in ("imagefolder",) and config.autoencoder.name != "none":
        return build_autoencoder(config)
    return None


def make_flow_generate_from_config(
    config: ConfigDict, data_shape: tuple[int, ...], prediction: str, path: str
) -> Callable:
    """Sampler of ``config.sampler`` for a network predicting ``prediction`` on ``path``."""
    from nnx_train.sampling import make_flow_generate

    return make_flow_generate(
        solver=build_solver(config.sampler),
        grid=build_grid(config.sampler, time_shift=config.time_shift),
        guidance=build_guidance(config.sampler, null_label=int(config.model.num_classes)),
        data_shape=data_shape,
        to_velocity=_velocity_adapter(prediction, path),
    )
