"""Networks of the config: the trained model, pretrained encoders and the autoencoder.

``config.model`` holds ``name`` (a class of ``nnx_nets``) plus its constructor's keyword
arguments. Pretrained networks (DINOv2, SD-VAE) are filled from published PyTorch or
safetensors files through nnx-weightconv.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from flax import nnx
from ml_collections import ConfigDict

import nnx_nets
import nnx_weightconv as wc
from nnx_train.constructors import (
    call_checked,
    dtype_from_name,
    section_kwargs,
    signature_parameters,
    unknown_name,
)
from nnx_train.errors import ConfigError

__all__ = [
    "MODEL_INPUT_KEYS",
    "MODEL_NAMES",
    "build_autoencoder",
    "build_model_factory",
    "latent_encoder",
    "load_pretrained",
    "representation_encoder",
]

log = logging.getLogger(__name__)

# The one rule for what a network takes: name -> (side key, channels key) of its
# constructor, or ``None`` where the input is not an image of the data's shape (the RAE
# decoder reads encoder tokens and writes pixels).
MODEL_INPUT_KEYS: dict[str, tuple[str, str] | None] = {
    "DiT": ("input_size", "in_channels"),
    "MeanFlowDiT": ("input_size", "in_channels"),
    "LightningDiT": ("input_size", "in_channels"),
    "DiTDH": ("input_size", "in_channels"),
    "EDM2UNet": ("img_resolution", "img_channels"),
    "VideoDiT": ("input_size", "in_channels"),
    "SongUNet": ("img_resolution", "in_channels"),
    "DhariwalUNet": ("img_resolution", "in_channels"),
    "RAEDecoder": None,
}
MODEL_NAMES = tuple(MODEL_INPUT_KEYS)
LOADERS = {"dinov2": wc.load_dinov2, "sd_vae": wc.load_sd_vae}


def build_model_factory(model: ConfigDict, *, seed: int) -> Callable[[], nnx.Module]:
    """Zero-argument constructor of the network (creates its own ``nnx.Rngs(seed)``)."""
    if model.name not in MODEL_NAMES:
        raise unknown_name("model.name", model.name, MODEL_NAMES)
    cls = getattr(nnx_nets, model.name, None)
    if cls is None:
        raise ConfigError(
            f"model.name={model.name!r} is not exported by nnx_nets in this installation "
            f"(nnx_nets.__all__ = {sorted(nnx_nets.__all__)})."
        )
    kwargs = section_kwargs(model)
    if "dtype" in kwargs:
        kwargs["dtype"] = dtype_from_name(kwargs["dtype"])
    parameters = signature_parameters(cls)
    if "dtype" in kwargs and "precision" in parameters:
        # The DiT family takes one precision policy (nnx_nets.Precision); model.dtype names it:
        # "float32" (all float32) or "bfloat16" (float32 params, bf16 matmuls and activations).
        kwargs["precision"] = nnx_nets.resolve_precision(kwargs.pop("dtype"))
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
    if not path or not os.path.isfile(path):
        raise ConfigError(
            f"{key}={path!r}: the {what} weights file is missing. Pass the published file "
            f"with --config.{key}=/path/to/file (.safetensors or .pt)."
        )


def load_pretrained(module: nnx.Module, path: str, *, loader: str, key: str, what: str) -> None:
    """Fills ``module`` from a PyTorch/safetensors file through nnx-weightconv.

    Args:
      module: the network to fill in place.
      path: the weights file.
      loader: ``"dinov2"`` or ``"sd_vae"`` (old and new attention names).
      key: the config key that named ``path``, for the message.
      what: the network's name, for the message.
    """
    if loader not in LOADERS:
        raise unknown_name("weights loader", loader, tuple(LOADERS))
    _require_file(path, what, key)
    try:
        LOADERS[loader](module, wc.read_state_dict(path))
    except (wc.ConversionError, OSError) as err:
        # ConversionError lists every missing / unexpected / mis-shaped key, one per line.
        problems = "; ".join(line.strip() for line in str(err).splitlines() if line.strip())
        raise ConfigError(
            f"{key}={path!r} cannot fill the {what} network: {problems}. Pass the published "
            f"{what} weights (.safetensors or .pt) with --config.{key}=/path/to/file."
        ) from err


def representation_encoder(encoder: ConfigDict, *, seed: int, section: str) -> nnx.Module:
    """Frozen DINOv2 (REPA target, RAE encoder), filled from ``encoder.weights`` when set.

    Empty ``weights`` keeps random weights: only for smoke tests (a warning is logged).
    """
    if encoder.name != "DINOv2":
        raise unknown_name(f"{section}.name", encoder.name, ("DINOv2",))
    kwargs = section_kwargs(encoder, drop=("name", "weights", "resolution"))
    if "dtype" in kwargs:
        kwargs["dtype"] = dtype_from_name(kwargs["dtype"])
    module = call_checked(nnx_nets.DINOv2, section, kwargs, rngs=nnx.Rngs(seed + 7))
    if encoder.weights:
        load_pretrained(
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
    section = config.autoencoder
    match section.name:
        case "none":
            return None
        case "sdvae":
            _require_file(section.weights, "SD-VAE", "autoencoder.weights")  # before 84M params
            module = nnx_nets.SDVAE(rngs=nnx.Rngs(0))
            load_pretrained(
                module, section.weights, loader="sd_vae", key="autoencoder.weights", what="SD-VAE"
            )
            return module
        case _:
            raise unknown_name("autoencoder.name", section.name, ("none", "sdvae"))


def latent_encoder(config: ConfigDict) -> nnx.Module | None:
    """The SD-VAE that encodes pixel batches on the fly when a latent model reads pixels."""
    if config.data.name in ("imagefolder",) and config.autoencoder.name != "none":
        return build_autoencoder(config)
    return None
