"""Feature extractors: uint8 images in, host float32 features out, in fixed-shape jitted batches.

An extractor is any callable ``extractor(images_uint8 (B, H, W, 3)) -> dict[str, np.ndarray]``
with a ``front_end`` attribute (written into every result). Two are provided:

- :class:`InceptionFeatures`: ``{"pool": (B, 2048), "spatial": (B, 2023), "logits": (B, 1008)}``
  from the FID Inception behind the ``"tf1"`` or ``"pytorch_fid"`` front end;
- :class:`DINOv2Features`: ``{"dinov2": (B, D)}``, the CLS token after the final norm of
  nnx-nets' ``DINOv2`` behind EDM2's front end (FD-DINOv2).

The network forward is compiled once per (architecture, batch shape) and shared by every
extractor instance and front end (the resize runs in its own small jitted function), so
switching front ends does not recompile the network. With a ``mesh`` the batch is split over
its ``data_axis`` and the parameters are replicated.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Iterable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from nnx_fid.images import check_uint8_images
from nnx_fid.preprocess import FrontEnd, check_front_end, dinov2_preprocess, inception_preprocess
from nnx_fid.statistics import GaussianStats, StatsAccumulator

Extractor = Callable[[np.ndarray], dict[str, np.ndarray]]


@functools.partial(jax.jit, static_argnums=0)
def _apply(graphdef: nnx.GraphDef, state: nnx.State, x: jax.Array):
    return nnx.merge(graphdef, state)(x)


_inception_input = jax.jit(inception_preprocess, static_argnums=1)
_dinov2_input = jax.jit(dinov2_preprocess)


class _ShardedForward:
    """Holds a split model, places inputs on a mesh (or the default device) and runs it."""

    def __init__(self, model: nnx.Module, mesh: Mesh | None, data_axis: str):
        self.graphdef, state = nnx.split(model)
        if mesh is not None:
            if data_axis not in mesh.axis_names:
                raise ValueError(
                    f"mesh has axes {mesh.axis_names}, not the data axis {data_axis!r}"
                )
            # Extraction is plain data parallelism: let the compiler propagate the batch
            # sharding (Auto axes) instead of type-checking it (Explicit axes, the default of
            # jax.make_mesh), under which a broadcast CLS token cannot meet sharded patches.
            auto = (AxisType.Auto,) * len(mesh.axis_names)
            mesh = Mesh(mesh.devices, mesh.axis_names, axis_types=auto)
            state = jax.device_put(state, NamedSharding(mesh, PartitionSpec()))
        self.mesh, self.data_axis, self.state = mesh, data_axis, state

    @property
    def num_shards(self) -> int:
        return 1 if self.mesh is None else self.mesh.shape[self.data_axis]

    def place(self, images: np.ndarray) -> jax.Array:
        if self.mesh is None:
            return jnp.asarray(images)
        return jax.device_put(images, NamedSharding(self.mesh, PartitionSpec(self.data_axis)))

    def pad(self, images: np.ndarray) -> tuple[np.ndarray, int]:
        count = images.shape[0]
        padded = math.ceil(count / self.num_shards) * self.num_shards
        if padded == count:
            return images, count
        filler = np.zeros((padded - count, *images.shape[1:]), images.dtype)
        return np.concatenate([images, filler]), count

    def __call__(self, network_input: jax.Array) -> dict[str, jax.Array]:
        return _apply(self.graphdef, self.state, network_input)


class InceptionFeatures:
    """FID Inception features of uint8 images (pool3, sFID spatial, IS logits).

    Args:
      model: a loaded :class:`nnx_fid.InceptionV3` (see :func:`nnx_fid.load_inception`).
      front_end: ``"tf1"`` (ADM evaluator; default) or ``"pytorch_fid"``
        (see :mod:`nnx_fid.preprocess`).
      mesh: optional mesh; batches are split over ``data_axis`` (padded to a multiple of its size).
      data_axis: mesh axis name for the batch.
    """

    def __init__(
        self,
        model: nnx.Module,
        *,
        front_end: FrontEnd = "tf1",
        mesh: Mesh | None = None,
        data_axis: str = "data",
    ):
        check_front_end(front_end)
        self.front_end = front_end
        self._forward = _ShardedForward(model, mesh, data_axis)

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """``(B, H, W, 3)`` uint8 -> ``{"pool", "spatial", "logits"}`` float32 numpy arrays."""
        check_uint8_images(images)
        padded, count = self._forward.pad(np.asarray(images))
        x = _inception_input(self._forward.place(padded), self.front_end)
        out = self._forward(x)
        return {name: np.asarray(value)[:count] for name, value in out.items()}


class DINOv2Features:
    """FD-DINOv2 features (EDM2): CLS token after the final norm of a DINOv2 ViT-L/14.

    EDM2 uses torch-hub ``dinov2_vitl14`` (no registers), whose position table is resized in
    scale-factor mode: build the nnx-nets ``DINOv2`` with
    ``pos_embed_interpolation="bicubic_offset"`` (a warning is raised otherwise).

    Args:
      model: a loaded nnx-nets ``DINOv2`` (any module ``model(x) -> {"cls": (B, D), ...}``
        taking ImageNet-normalised NHWC images).
      mesh: as in :class:`InceptionFeatures`.
      data_axis: as in :class:`InceptionFeatures`.
    """

    front_end = "edm2_dinov2"

    def __init__(self, model: nnx.Module, *, mesh: Mesh | None = None, data_axis: str = "data"):
        interpolation = getattr(model, "pos_embed_interpolation", "bicubic_offset")
        if interpolation != "bicubic_offset":
            warnings.warn(
                f"DINOv2 position embeddings use {interpolation!r}; EDM2's FD-DINOv2 (torch-hub "
                "dinov2_vitl14) uses 'bicubic_offset', and the modes differ by up to 35% at 224 px",
                stacklevel=2,
            )
        self._forward = _ShardedForward(model, mesh, data_axis)

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """``(B, H, W, 3)`` uint8 -> ``{"dinov2": (B, D)}`` float32 numpy."""
        check_uint8_images(images)
        padded, count = self._forward.pad(np.asarray(images))
        out = self._forward(_dinov2_input(self._forward.place(padded)))
        if not isinstance(out, dict) or "cls" not in out:
            raise TypeError(
                "the DINOv2 model must return a dict with a 'cls' entry (nnx-nets DINOv2)"
            )
        return {"dinov2": np.asarray(out["cls"])[:count]}


def _batches(images: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    for start in range(0, images.shape[0], batch_size):
        yield images[start : start + batch_size]


def iterate_features(
    extractors: Iterable[Extractor],
    images: np.ndarray | Iterable[np.ndarray],
    *,
    batch_size: int = 100,
    progress: bool = True,
) -> Iterator[dict[str, np.ndarray]]:
    """Yield the extractors' features batch by batch.

    The last (short) batch is zero-padded to ``batch_size`` so that one compiled shape serves
    every batch; the padded rows are dropped before anything is yielded, never counted.

    Args:
      extractors: e.g. ``[InceptionFeatures(...), DINOv2Features(...)]``.
      images: ``(N, H, W, 3)`` uint8 array, or an iterable of such batches (each at most
        ``batch_size`` long, e.g. read from disk on the fly).
      batch_size: images per forward pass.
      progress: show a tqdm bar.

    Yields:
      ``{name: (B, ...)}`` float32 numpy features of each batch.
    """
    extractors = list(extractors)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if isinstance(images, np.ndarray):
        check_uint8_images(images)
        total = images.shape[0]
        batches: Iterable[np.ndarray] = _batches(images, batch_size)
    else:
        total, batches = None, images
    with tqdm(total=total, disable=not progress, desc="features", unit="img") as bar:
        for batch in batches:
            batch = np.asarray(batch)
            count = batch.shape[0]
            if count > batch_size:
                raise ValueError(f"a batch of {count} images exceeds batch_size={batch_size}")
            if count < batch_size:
                filler = np.zeros((batch_size - count, *batch.shape[1:]), batch.dtype)
                batch = np.concatenate([batch, filler])
            features: dict[str, np.ndarray] = {}
            for extractor in extractors:
                features.update({k: v[:count] for k, v in extractor(batch).items()})
            bar.update(count)
            yield features


def extract_features(
    extractors: Iterable[Extractor],
    images: np.ndarray | Iterable[np.ndarray],
    *,
    batch_size: int = 100,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """All features of all images, ``{name: (N, ...)}`` float32 (arguments as
    :func:`iterate_features`)."""
    parts: dict[str, list[np.ndarray]] = {}
    for features in iterate_features(extractors, images, batch_size=batch_size, progress=progress):
        for name, value in features.items():
            parts.setdefault(name, []).append(value)
    if not parts:
        raise ValueError("no images were given")
    return {name: np.concatenate(values) for name, values in parts.items()}


def feature_statistics(
    extractors: Iterable[Extractor],
    images: np.ndarray | Iterable[np.ndarray],
    *,
    names: Iterable[str] = ("pool", "spatial"),
    batch_size: int = 100,
    progress: bool = True,
) -> dict[str, GaussianStats]:
    """Streaming float64 Gaussian statistics of the named features, without keeping them.

    Memory stays at one batch of features plus a ``D x D`` float64 sum per name, so a
    1.28M-image training set is as cheap as 50k samples. Other arguments as
    :func:`iterate_features`.

    Returns:
      ``{name: GaussianStats}`` for each of ``names``.
    """
    accumulators = {name: StatsAccumulator() for name in names}
    for features in iterate_features(extractors, images, batch_size=batch_size, progress=progress):
        for name, accumulator in accumulators.items():
            if name not in features:
                raise KeyError(f"no extractor produces {name!r}; they produce {sorted(features)}")
            accumulator.update(features[name])
    return {name: accumulator.result() for name, accumulator in accumulators.items()}
