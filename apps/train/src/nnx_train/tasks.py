"""What is trained and how its results are looked at: generator and autoencoder tasks.

A task bundles the constructors of the trainable and frozen modules, the loss
``loss_fn(model, frozen, batch, key) -> (loss (B,), aux)`` the train step differentiates, and
``preview(model, frozen, batch, key) -> images in data space`` used for sample grids and
evaluation. ``build.py`` creates tasks from the config; the loop never branches on a recipe.

- `GeneratorTask`: class-conditional generation (SiT, REPA, LightningDiT, MeanFlow, EDM2,
  RAE stage 2). ``preview`` samples with the configured solver, grid and guidance for the
  labels in ``batch["y"]``.
- `AutoencoderTask`: decoder training (RAE stage 1). ``preview`` reconstructs
  ``batch["x"]``.

Pixels arrive as uint8 or float in [-1, 1]; `to_model_space` converts uint8 with
``nnx_fid.from_uint8`` (the one conversion) and, when the task has a frozen latent encoder
(SD-VAE on ImageNet pixels), encodes them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nnx_nets import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "AutoencoderTask",
    "FrozenModules",
    "GeneratorTask",
    "Task",
    "encoder_input",
    "pixels_to_float",
    "resize_bicubic_torch",
    "torch_bicubic_matrix",
]


class FrozenModules(nnx.Module):
    """Modules that are used but never trained (their parameters are not in the optimiser).

    Args:
      latent_encoder: pixel -> latent encoder applied to pixel batches (``None``: data is
        already in model space).
      representation: REPA's target encoder or RAE's encoder (``None`` if unused).
    """

    def __init__(self, *, latent_encoder: Any = None, representation: Any = None) -> None:
        self.latent_encoder = latent_encoder
        self.representation = representation


def pixels_to_float(x: jax.Array) -> jax.Array:
    """uint8 pixels -> [-1, 1] float32 through ``nnx_fid.from_uint8``; floats pass through."""
    if x.dtype == jnp.uint8:
        from nnx_fid import from_uint8

        return from_uint8(x)
    return x.astype(jnp.float32)


Preview = Callable[[nnx.Module, Any, dict, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class GeneratorTask:
    """Class-conditional generation.

    Attributes:
      build_trainable: zero-argument constructor of the trained module (own ``nnx.Rngs``).
      build_frozen: zero-argument constructor of `FrozenModules`, or ``None``.
      loss_fn: ``(model, frozen, batch, key) -> (loss (B,), aux)``.
      generate: ``(model, frozen, labels (B,), key) -> (B, H, W, C)`` samples in data space.
      num_classes: number of real classes (labels for previews are drawn from them).
      wrap_optimizer: ``tx -> tx`` applied to the configured optimiser (DMD2's two-time-scale
        rule steps the generator's part less often), or ``None``.
      report: figures added to ``metrics.json`` (e.g. the sampler's NFE and, for a distilled
        model, its teacher's accuracy and NFE).
    """

    build_trainable: Callable[[], nnx.Module]
    build_frozen: Callable[[], FrozenModules] | None
    loss_fn: Callable[..., tuple[jax.Array, dict]]
    generate: Callable[[nnx.Module, Any, jax.Array, jax.Array], jax.Array]
    num_classes: int
    wrap_optimizer: Callable[[Any], Any] | None = None
    report: dict = dataclasses.field(default_factory=dict)

    def preview(self, model: nnx.Module, frozen: Any, batch: dict, key: jax.Array) -> jax.Array:
        """Samples for the labels ``batch["y"]`` (the images of ``batch`` are ignored)."""
        return self.generate(model, frozen, batch["y"], key)


@dataclasses.dataclass(frozen=True)
class AutoencoderTask:
    """Decoder training (RAE stage 1): the frozen encoder's latents are decoded to pixels.

    Attributes:
      build_trainable: constructor of the decoder.
      build_frozen: constructor of `FrozenModules` holding the encoder.
      loss_fn: ``(decoder, frozen, batch, key) -> (loss (B,), aux)``.
      reconstruct: ``(decoder, frozen, pixels) -> pixels`` without noise augmentation.
      num_classes: classes of the data (unused by the loss).
    """

    build_trainable: Callable[[], nnx.Module]
    build_frozen: Callable[[], FrozenModules] | None
    loss_fn: Callable[..., tuple[jax.Array, dict]]
    reconstruct: Callable[[nnx.Module, Any, jax.Array], jax.Array]
    num_classes: int

    def preview(self, model: nnx.Module, frozen: Any, batch: dict, key: jax.Array) -> jax.Array:
        """Reconstructions of ``batch["x"]``."""
        del key
        return self.reconstruct(model, frozen, pixels_to_float(batch["x"]))


Task = GeneratorTask | AutoencoderTask


def generator_loss(objective: Callable) -> Callable[..., tuple[jax.Array, dict]]:
    """``loss_fn`` of an nnx-objectives objective on ``batch["x"]`` (model space) and labels."""

    def loss_fn(model: nnx.Module, frozen: Any, batch: dict, key: jax.Array):
        del frozen
        return objective(model, pixels_to_float(batch["x"]), batch["y"], key)

    return loss_fn


def _torch_cubic_weights(frac: np.float32) -> list[np.float32]:
    """Keys' cubic (``a = -0.75``) at the four taps, in float32 as PyTorch's
    ``get_cubic_upsample_coefficients`` (``aten/src/ATen/native/UpSample.h``)."""
    a, one = np.float32(-0.75), np.float32(1.0)

    def near(x):
        return ((a + 2) * x - (a + 3)) * x * x + one

    def far(x):
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return [far(frac + one), near(frac), near(one - frac), far(one - frac + one)]


def torch_bicubic_matrix(in_size: int, out_size: int) -> np.ndarray:
    """``(out_size, in_size)`` weights of PyTorch's bicubic resize along one axis.

    Source coordinate ``(i + 1/2) * in / out - 1/2`` and weights in float32, the taps
    ``floor - 1 .. floor + 2`` clamped to the border, as PyTorch's CPU kernel computes them
    (``area_pixel_compute_source_index``, ``align_corners=False``, no antialias).
    """
    matrix = np.zeros((out_size, in_size), np.float32)
    scale = np.float32(in_size) / np.float32(out_size)
    for i in range(out_size):
        source = scale * (np.float32(i) + np.float32(0.5)) - np.float32(0.5)
        floor = int(np.floor(source))
        frac = np.clip(source - np.float32(floor), np.float32(0.0), np.float32(1.0))
        for j, weight in enumerate(_torch_cubic_weights(frac)):
            matrix[i, min(max(floor - 1 + j, 0), in_size - 1)] += weight
    return matrix


def resize_bicubic_torch(images: jax.Array, size: int) -> jax.Array:
    """PyTorch's ``F.interpolate(x, size, mode="bicubic", align_corners=False)``, NHWC.

    No antialias; Keys' cubic with ``a = -0.75`` on the four neighbours of each source
    coordinate, indices clamped at the border, values not clamped. Separable: one
    ``(size, H)`` and one ``(size, W)`` matrix (`torch_bicubic_matrix`, built on the host from
    the static shapes) applied in float32 at HIGHEST precision.

    Args:
      images: ``(B, H, W, C)`` float.
      size: output side.

    Returns:
      ``(B, size, size, C)`` float32.
    """
    rows = jnp.asarray(torch_bicubic_matrix(images.shape[1], size))
    cols = jnp.asarray(torch_bicubic_matrix(images.shape[2], size))
    return jnp.einsum(
        "hi,wj,bijc->bhwc",
        rows,
        cols,
        images.astype(jnp.float32),
        precision=jax.lax.Precision.HIGHEST,
    )


def encoder_input(images: jax.Array, resolution: int) -> jax.Array:
    """[-1, 1] RGB images ``(B, H, W, 3 or 1)`` -> the input of a DINOv2 encoder
    ``(B, resolution, resolution, 3)``.

    ``[0, 1]``, then `resize_bicubic_torch` to ``resolution`` (224 for 256-px images) as both
    REPA (``train.py``, ``preprocess_raw_image``: ``F.interpolate(x, 224, mode='bicubic')``)
    and RAE (``src/stage1/rae.py``) do: PyTorch bicubic, ``a = -0.75``, no antialias. Then
    ImageNet mean/std. Grey images are repeated to three channels.
    """
    x = (images.astype(jnp.float32) + 1.0) / 2.0
    if x.shape[-1] == 1:
        x = jnp.repeat(x, 3, axis=-1)
    if x.shape[1:3] != (resolution, resolution):
        x = resize_bicubic_torch(x, resolution)
    return (x - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)


def encode_latents(vae: Any, pixels: jax.Array, key: jax.Array, *, scale, shift) -> jax.Array:
    """Pixels -> normalised latents ``(z - shift) * scale`` with ``z`` a posterior sample."""
    z = vae.encode(pixels).sample(key)
    return (z - jnp.asarray(shift, jnp.float32)) * jnp.asarray(scale, jnp.float32)


@dataclasses.dataclass(frozen=True)
class REPAWithFrozenEncoder:
    """nnx-objectives' `REPAObjective` whose encoder is the frozen DINOv2 of the run.

    ``__call__(model, x0, y, key, *, images, representation)`` builds the objective with
    ``encoder = patch tokens of representation(encoder_input(images))`` and applies it.

    Attributes:
      coefficient: REPA's lambda (0.5).
      flow: the interpolant objective (linear, velocity, uniform t in REPA).
      encoder_resolution: side of the encoder's input (224 for 256-px images).
    """

    coefficient: float
    flow: Any
    encoder_resolution: int

    def __call__(self, model, x0, y, key, *, images, representation):
        from nnx_objectives import REPAObjective

        def encoder(pixels):
            inputs = encoder_input(pixels, self.encoder_resolution)
            return representation(inputs)["patch_tokens"]

        objective = REPAObjective(encoder=encoder, coefficient=self.coefficient, flow=self.flow)
        return objective(model, x0, y, key, images=images)


def repa_loss(objective: Callable, *, scale, shift) -> Callable[..., tuple[jax.Array, dict]]:
    """REPA on pixel batches: the model sees latents (encoded on the fly when the run has a
    latent encoder) or the pixels themselves; DINOv2 always sees the pixels."""

    def loss_fn(model: nnx.Module, frozen: FrozenModules, batch: dict, key: jax.Array):
        pixels = pixels_to_float(batch["x"])
        key_encode, key_loss = jax.random.split(key)
        if frozen.latent_encoder is not None:
            x0 = encode_latents(frozen.latent_encoder, pixels, key_encode, scale=scale, shift=shift)
        else:
            x0 = pixels
        return objective(
            model, x0, batch["y"], key_loss, images=pixels, representation=frozen.representation
        )

    return loss_fn


@dataclasses.dataclass(frozen=True)
class RAEStage1:
    """RAE stage 1: train a decoder on a frozen DINOv2's tokens with noise augmentation.

    ``tokens = DINOv2(encoder_input(x))["patch_tokens"]`` (grid ``g x g``), then
    ``tokens + sigma eps`` with ``sigma ~ noise_max * U(0, 1)`` per image (RAE stage 1,
    off at inference), decoded to pixels and compared with ``l1_weight |.|_1 +
    l2_weight |.|_2^2`` (per-pixel means). RAE adds LPIPS and a GAN loss with a DINO-S/8
    discriminator; their weights are not available offline and they are not part of this
    objective.

    Attributes:
      noise_max: upper end of the noise level (0.8).
      l1_weight: weight of the L1 reconstruction loss.
      l2_weight: weight of the squared-error loss.
      encoder_resolution: side of the encoder's input (224 for 256-px images).
    """

    noise_max: float
    l1_weight: float
    l2_weight: float
    encoder_resolution: int

    def tokens(self, frozen: FrozenModules, pixels: jax.Array) -> jax.Array:
        inputs = encoder_input(pixels, self.encoder_resolution)
        tokens = representation_tokens(frozen.representation, inputs)
        side = int(round(tokens.shape[1] ** 0.5))
        return jax.lax.stop_gradient(tokens.reshape(tokens.shape[0], side, side, tokens.shape[-1]))

    def loss(self, decoder: nnx.Module, frozen: FrozenModules, batch: dict, key: jax.Array):
        pixels = pixels_to_float(batch["x"])
        tokens = self.tokens(frozen, pixels)
        key_sigma, key_noise = jax.random.split(key)
        sigma = self.noise_max * jax.random.uniform(key_sigma, (tokens.shape[0], 1, 1, 1))
        noisy = tokens + sigma * jax.random.normal(key_noise, tokens.shape, tokens.dtype)
        recon = decoder(noisy).astype(jnp.float32)
        if recon.shape != pixels.shape:
            raise ValueError(
                f"The decoder makes {recon.shape[1:]} images from the encoder's tokens but the data "
                f"is {pixels.shape[1:]}; set model.grid_size * model.patch_size to the image size."
            )
        error = recon - pixels
        l1 = jnp.mean(jnp.abs(error), axis=(1, 2, 3))
        l2 = jnp.mean(error**2, axis=(1, 2, 3))
        loss = self.l1_weight * l1 + self.l2_weight * l2
        return loss, {"l1": l1, "l2": l2, "noise_sigma": sigma[:, 0, 0, 0]}

    def reconstruct(self, decoder: nnx.Module, frozen: FrozenModules, pixels: jax.Array):
        return decoder(self.tokens(frozen, pixels))


def representation_tokens(encoder: Any, inputs: jax.Array) -> jax.Array:
    """Patch tokens ``(B, N, D)`` of a DINOv2 (CLS and registers dropped)."""
    return encoder(inputs)["patch_tokens"]
