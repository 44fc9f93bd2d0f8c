"""Jitted, device-sharded batch functions: generate (noise -> sample -> decode) and reconstruct.

Both take host arrays, place the batch over the mesh's ``data`` axis (parameters replicated),
run one compiled program and return uint8 images on the host.

Generation of sample ``i`` with label ``y_i`` (time convention: t = 0 data, t = 1 noise)::

    eps_i = normal(fold_in(key(seed), i), (h, w, D))    # depends on i only
    z_i   = sample(field, eps_i, solver, grid)          # Euler on the shifted grid, t: 1 -> ~0
    x_i   = decoder(denormalise(z_i))                   # [-1, 1]
    u_i   = nnx_fid.to_uint8(x_i)                       # rounding (recorded in the results)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from nnx_fid import from_uint8, to_uint8
from nnx_samplers import sample
from rae_eval.autoencoder import RepresentationAutoencoder
from rae_eval.build import build_field

__all__ = [
    "DATA_AXIS",
    "data_mesh",
    "make_generate_batch",
    "make_reconstruct_batch",
    "sample_noise",
]

DATA_AXIS = "data"


def data_mesh() -> Mesh:
    """A 1-D mesh over every device, axis ``"data"`` (sampling is data-parallel).

    The axis is ``Auto`` (``jax.make_mesh`` defaults to ``Explicit``, under which the label
    embedding's gather of data-sharded indices is rejected): XLA propagates the batch
    sharding through the networks.
    """
    return jax.make_mesh(
        (jax.device_count(),), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,)
    )


def sample_noise(
    seed: int | jax.Array, indices: jax.Array, latent_shape: tuple[int, ...]
) -> jax.Array:
    """Starting noise of the given global sample indices, ``(B, *latent_shape)`` float32.

    Sample ``i`` always gets ``normal(fold_in(key(seed), i))``, whatever batch or device it
    lands on, which is what makes generation resumable and device-count independent.
    """
    base = jax.random.key(jnp.asarray(seed, jnp.uint32))
    keys = jax.vmap(lambda index: jax.random.fold_in(base, index))(indices)
    return jax.vmap(lambda key: jax.random.normal(key, latent_shape, jnp.float32))(keys)


def _split_replicated(modules: Mapping[str, nnx.Module], mesh: Mesh):
    graphdef, state = nnx.split(dict(modules))
    state = jax.device_put(state, NamedSharding(mesh, PartitionSpec()))
    return graphdef, state


def _place(mesh: Mesh) -> Callable[[np.ndarray], jax.Array]:
    sharding = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
    return lambda array: jax.device_put(np.asarray(array), sharding)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _generate(graphdef, static, state, seed, indices, labels):
    """Module-level so that equal networks and settings reuse one compiled program."""
    guidance, solver, grid, latent_shape, null_label = static
    nets = nnx.merge(graphdef, state)
    field = build_field(
        dict(guidance),
        model=nets["model"],
        guide=nets.get("guide"),
        labels=labels,
        null_label=null_label,
    )
    noise = sample_noise(seed, indices, latent_shape)
    latents = sample(field, noise, solver, grid).sample
    return to_uint8(nets["autoencoder"].decode(latents))


@functools.partial(jax.jit, static_argnums=0)
def _reconstruct(graphdef, state, batch):
    autoencoder = nnx.merge(graphdef, state)["autoencoder"]
    return to_uint8(autoencoder.decode(autoencoder.encode(from_uint8(batch))))


def make_generate_batch(
    *,
    autoencoder: RepresentationAutoencoder,
    model: nnx.Module,
    guide: nnx.Module | None,
    guidance: Mapping,
    solver,
    grid,
    latent_shape: tuple[int, int, int],
    null_label: int,
    seed: int,
    mesh: Mesh,
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``(indices (B,), labels (B,)) -> uint8 images (B, H, W, 3)`` for the generation loop.

    Args:
      autoencoder: holds the latent statistics and the decoder.
      model: stage-2 network ``model(x_t, t, y)`` predicting the velocity.
      guide: the autoguidance network, or ``None``.
      guidance: ``config.guidance`` (name, scale, interval).
      solver / grid: nnx-samplers solver and time grid (hashable: they are compile-time).
      latent_shape: ``(h, w, D)``.
      null_label: the CFG null class (``num_classes``).
      seed: the run seed (noise of sample ``i`` is ``fold_in(key(seed), i)``); a traced
        argument, so another seed does not recompile.
      mesh: devices; the batch is split over ``"data"``, parameters replicated.
    """
    modules = {"autoencoder": autoencoder, "model": model}
    if guide is not None:
        modules["guide"] = guide
    graphdef, state = _split_replicated(modules, mesh)
    frozen_guidance = tuple(
        (key, tuple(value) if isinstance(value, (list, tuple)) else value)
        for key, value in sorted(dict(guidance).items())
    )
    static = (frozen_guidance, solver, grid, tuple(latent_shape), int(null_label))
    place = _place(mesh)
    seed_array = jnp.asarray(seed, jnp.uint32)

    def generate_batch(indices: np.ndarray, labels: np.ndarray) -> np.ndarray:
        images = _generate(
            graphdef, static, state, seed_array, place(indices), place(labels.astype(np.int32))
        )
        return np.asarray(images)

    return generate_batch


def make_reconstruct_batch(
    *, autoencoder: RepresentationAutoencoder, images: np.ndarray, mesh: Mesh
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``(indices (B,), unused labels) -> uint8 reconstructions of images[indices]``.

    Args:
      autoencoder: encoder, statistics and decoder.
      images: ``(N, H, W, 3)`` uint8 inputs (centre-cropped).
      mesh: devices; the batch is split over ``"data"``.
    """
    graphdef, state = _split_replicated({"autoencoder": autoencoder}, mesh)
    place = _place(mesh)

    def reconstruct_batch(indices: np.ndarray, labels: np.ndarray) -> np.ndarray:
        del labels
        return np.asarray(_reconstruct(graphdef, state, place(images[indices])))

    return reconstruct_batch
