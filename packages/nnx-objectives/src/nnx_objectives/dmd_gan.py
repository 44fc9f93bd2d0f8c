"""DMD2's GAN term: a classifier head on the fake score's features, non-saturating losses.

Yin et al. 2024, "Improved Distribution Matching Distillation for Fast Image Synthesis"
(DMD2, arXiv 2405.14867, Sec. 4.3, Eq. 5): a discriminator ``D`` reads the bottleneck
features of the fake-score network at a noised input ``x_t`` and is trained to tell noised
real images from noised generator samples,

    L_D = E_x [ -log D(F(x_t^real, t)) ] + E_z [ -log (1 - D(F(x_t^fake, t))) ],
    L_G = E_z [ -log D(F(x_t^fake, t)) ]                       (non-saturating generator loss)

With logits ``l`` (``D = sigmoid(l)``): ``-log D = softplus(-l)`` and
``-log (1 - D) = softplus(l)``, as in DMD2's code (tianweiy/DMD2
``main/edm/edm_guidance.py``: ``F.softplus(-pred_realism_on_real)`` and
``F.softplus(pred_realism_on_fake)`` for the classifier, ``F.softplus(-pred_realism_on_fake)``
for the generator). DMD2 ImageNet weights: generator GAN loss 3e-3, classifier loss 1e-2
(``experiments/imagenet`` scripts of the same repository).

Time convention: ``t`` in [0, 1], 0 = data, 1 = noise. Shapes: features ``(B, N, D)`` tokens
(a DiT block's output, ``model(x, t, y, return_features=True)``) or ``(B, H, W, C)`` maps.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jax import Array

__all__ = ["GANHead", "gan_discriminator_loss", "gan_generator_loss"]


def gan_generator_loss(fake_logits: Array) -> Array:
    """Non-saturating generator loss ``softplus(-l_fake)`` per example: ``(B,) -> (B,)``."""
    return jax.nn.softplus(-fake_logits.astype(jnp.float32))


def gan_discriminator_loss(real_logits: Array, fake_logits: Array) -> Array:
    """Classifier loss ``softplus(-l_real) + softplus(l_fake)`` per example: ``(B,), (B,) -> (B,)``."""
    real = jax.nn.softplus(-real_logits.astype(jnp.float32))
    return real + jax.nn.softplus(fake_logits.astype(jnp.float32))


class GANHead(nnx.Module):
    """DMD2's classifier branch: features -> one realism logit per example.

    Mean-pools the token (or spatial) axes, then LayerNorm, Linear(width), SiLU, Linear(1).
    DMD2 puts a few strided convolutions on the U-Net bottleneck (``cls_pred_branch``); on a
    transformer's tokens a pooled MLP is the counterpart.

    Args:
      in_features: feature width ``D`` (or ``C``).
      width: hidden width of the MLP.
      rngs: ``nnx.Rngs`` with a ``params`` stream.
    """

    def __init__(self, in_features: int, width: int = 256, *, rngs: nnx.Rngs) -> None:
        self.norm = nnx.LayerNorm(
            in_features,
            scale_metadata={"logical_axes": ("embed",)},
            bias_metadata={"logical_axes": ("embed",)},
            rngs=rngs,
        )
        self.hidden = nnx.Linear(
            in_features,
            width,
            kernel_metadata={"logical_axes": ("embed", "mlp")},
            bias_metadata={"logical_axes": ("mlp",)},
            rngs=rngs,
        )
        self.out = nnx.Linear(
            width,
            1,
            kernel_metadata={"logical_axes": ("mlp", None)},
            bias_metadata={"logical_axes": (None,)},
            rngs=rngs,
        )

    def __call__(self, features: Array) -> Array:
        """``(B, N, D)`` or ``(B, H, W, C)`` float features -> ``(B,)`` float32 logits."""
        pooled = jnp.mean(
            features.astype(jnp.float32).reshape(features.shape[0], -1, features.shape[-1]),
            axis=1,
        )
        return self.out(jax.nn.silu(self.hidden(self.norm(pooled))))[:, 0]
