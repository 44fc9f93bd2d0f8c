"""An independent digits classifier: the judge of the embedded default's samples.

A small CNN trained by the app on the real training split only (never on generated data, never
on the held-out split). Its held-out accuracy says how far it can be trusted; its accuracy on
generated images with requested labels measures class fidelity, and its penultimate features
give a Frechet distance between generated and held-out real images (Heusel et al. 2017).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

__all__ = [
    "DigitsClassifier",
    "classifier_accuracy",
    "classifier_features",
    "classifier_outputs",
    "train_classifier",
]


class DigitsClassifier(nnx.Module):
    """conv3x3(width) -> conv3x3 stride 2 (2 width) -> dense(feature_size) -> dense(classes).

    Args:
      num_classes: output classes.
      in_channels: image channels.
      image_size: input side (8 for digits); must be even.
      width: channels of the first convolution.
      feature_size: width of the penultimate layer (the Frechet-distance features).
      rngs: initialisation.
    """

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int = 8,
        width: int = 32,
        feature_size: int = 64,
        rngs: nnx.Rngs,
    ) -> None:
        self.conv1 = nnx.Conv(in_channels, width, (3, 3), rngs=rngs)
        self.conv2 = nnx.Conv(width, 2 * width, (3, 3), strides=(2, 2), rngs=rngs)
        flat = (image_size // 2) ** 2 * 2 * width
        self.dense = nnx.Linear(flat, feature_size, rngs=rngs)
        self.head = nnx.Linear(feature_size, num_classes, rngs=rngs)

    def features(self, images: jax.Array) -> jax.Array:
        """``(B, H, W, C)`` in [-1, 1] -> ``(B, feature_size)`` penultimate activations."""
        h = jax.nn.gelu(self.conv1(images))
        h = jax.nn.gelu(self.conv2(h))
        return jax.nn.gelu(self.dense(h.reshape(h.shape[0], -1)))

    def __call__(self, images: jax.Array) -> jax.Array:
        """``(B, H, W, C)`` -> ``(B, num_classes)`` logits."""
        return self.head(self.features(images))


def _shift_augment(key: jax.Array, images: jax.Array) -> jax.Array:
    """Random translation by -1, 0 or +1 pixel per axis (background value -1 fills in)."""
    padded = jnp.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-1.0)
    offsets = jax.random.randint(key, (images.shape[0], 2), 0, 3)
    size = images.shape[1:3]

    def crop(image, offset):
        return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (*size, image.shape[-1]))

    return jax.vmap(crop)(padded, offsets)


def train_classifier(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    num_classes: int = 10,
    num_steps: int = 400,
    batch_size: int = 128,
    learning_rate: float = 2e-3,
    seed: int = 0,
) -> DigitsClassifier:
    """Trains a `DigitsClassifier` with AdamW and cross-entropy on shifted copies.

    Args:
      images: ``(N, H, W, C)`` float32 in [-1, 1] (the real training split).
      labels: ``(N,)`` int labels.
      num_classes: number of classes.
      num_steps: optimiser steps.
      batch_size: images per step (sampled with replacement per epoch permutation).
      learning_rate: AdamW peak rate (cosine decay to 0).
      seed: initialisation, batch order and augmentation seed.

    Returns:
      The trained classifier.
    """
    images = jnp.asarray(images, jnp.float32)
    labels = jnp.asarray(labels, jnp.int32)
    model = DigitsClassifier(
        num_classes=num_classes,
        in_channels=images.shape[-1],
        image_size=images.shape[1],
        rngs=nnx.Rngs(seed),
    )
    graphdef, params = nnx.split(model, nnx.Param)
    tx = optax.adamw(optax.cosine_decay_schedule(learning_rate, num_steps), weight_decay=1e-4)
    opt_state = tx.init(params)

    # One jitted step driven from Python: XLA:CPU runs convolutions inside a compiled loop
    # (lax.fori_loop) about 10x slower than as separate calls (60 s against 5 s here).
    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def train_step(params, opt_state, key):
        k_batch, k_aug = jax.random.split(key)
        index = jax.random.randint(k_batch, (batch_size,), 0, images.shape[0])
        x = _shift_augment(k_aug, images[index])

        def loss_fn(p):
            logits = nnx.merge(graphdef, p)(x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels[index]).mean()

        grads = jax.grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    key = jax.random.key(seed)
    for step in range(num_steps):
        params, opt_state = train_step(params, opt_state, jax.random.fold_in(key, step))
    return nnx.merge(graphdef, params)


def classifier_outputs(
    model: DigitsClassifier, *, batch_size: int = 512
) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """A function ``images (N, H, W, C) -> (logits (N, classes), features (N, F) float64)``.

    One jitted function fed fixed-size batches (the last one padded), so every call of the
    returned function reuses one compilation whatever the number of images.
    """
    graphdef, state = nnx.split(model)

    @jax.jit
    def outputs(state, x):  # weights as an argument: closed-over arrays would become
        network = nnx.merge(graphdef, state)  # constants that XLA folds (a minute on CPU)
        features = network.features(x)
        return network.head(features), features

    def run(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        images = np.asarray(images, np.float32)
        logits, features = [], []
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            filler = np.zeros((batch_size - len(chunk), *chunk.shape[1:]), chunk.dtype)
            out_logits, out_features = outputs(state, jnp.asarray(np.concatenate([chunk, filler])))
            logits.append(np.asarray(out_logits)[: len(chunk)])
            features.append(np.asarray(out_features)[: len(chunk)])
        return np.concatenate(logits), np.concatenate(features).astype(np.float64)

    return run


def classifier_accuracy(model: DigitsClassifier, images: np.ndarray, labels: np.ndarray) -> float:
    """Share of ``images`` whose arg-max class equals ``labels``."""
    logits, _ = classifier_outputs(model)(images)
    return float(np.mean(np.argmax(logits, axis=-1) == np.asarray(labels)))


def classifier_features(model: DigitsClassifier, images: np.ndarray) -> np.ndarray:
    """``(N, feature_size)`` float64 penultimate features (host, for statistics)."""
    return classifier_outputs(model)(images)[1]
