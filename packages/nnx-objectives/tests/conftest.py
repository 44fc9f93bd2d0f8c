"""Closed-form references and tiny networks for the nnx-objectives tests.

``GaussianMixture`` gives, for data ``x0 ~ sum_k pi_k N(mu_k, s_k^2 I)`` and
``x_t = alpha x0 + sigma eps``, the exact posterior of ``x0`` given ``x_t``:

    x_t | k ~ N(alpha mu_k, v_k I),      v_k = alpha^2 s_k^2 + sigma^2,
    x0 | x_t, k ~ N(m_k, c_k I),         m_k = mu_k + alpha s_k^2 / v_k (x_t - alpha mu_k),
                                         c_k = s_k^2 sigma^2 / v_k,

with responsibilities ``r_k(x_t) ~ pi_k N(x_t; alpha mu_k, v_k I)``. Hence the optimal
denoiser ``E[x0 | x_t] = sum r_k m_k``, ``tr Cov(x0 | x_t) = sum r_k (D c_k + |m_k|^2) -
|sum r_k m_k|^2``, and every optimal prediction (velocity, noise, score) by the affine maps of
``nnx_objectives.predictions``. The functions take the array module (numpy for float64
quadrature, jax.numpy inside objectives) as an argument so that one formula serves both.

Keys: tests draw PRNG keys with ``impl="rbg"``. The objectives accept any key; on XLA:CPU a
threefry key costs ~2 s of extra compile time per objective (measured: 2.8 s vs 1.1 s for one
normal + bernoulli + split), which would dominate this suite.

The suite runs on fake CPU devices with cheap compiles (``nnx_nets.testing``, a test-only
import: nnx-objectives itself does not depend on nnx-nets).

Networks (tests use numpy only here and in assertions; the library uses jax.numpy):
``TinyNet`` (``(x, t, y)`` or ``(x, r, t, y)``), ``TinyBackbone`` (returns REPA features) and
``TinyEncoder`` (a frozen stand-in for DINOv2).
"""

from __future__ import annotations

import functools
import math
from types import ModuleType

from nnx_nets.testing import configure_cpu_tests, random_model

configure_cpu_tests()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from flax import nnx  # noqa: E402


def numpy_path_coefficients(name: str, t: np.ndarray):
    """``(alpha, sigma, alpha', sigma')`` of SiT's paths in float64, written independently."""
    t = np.asarray(t, np.float64)
    if name == "linear":
        return 1 - t, t, -np.ones_like(t), np.ones_like(t)
    if name == "gvp":
        angle = 0.5 * math.pi * t
        return (
            np.cos(angle),
            np.sin(angle),
            -0.5 * math.pi * np.sin(angle),
            0.5 * math.pi * np.cos(angle),
        )
    if name == "vp":
        beta_min, beta_max = 0.1, 20.0
        alpha = np.exp(-0.25 * t**2 * (beta_max - beta_min) - 0.5 * t * beta_min)
        sigma = np.sqrt(1 - alpha**2)
        d_alpha = -0.5 * (beta_min + t * (beta_max - beta_min)) * alpha
        return alpha, sigma, d_alpha, -alpha * d_alpha / sigma
    raise KeyError(name)


@pytest.fixture(scope="session")
def path_coefficients():
    return numpy_path_coefficients


class GaussianMixture:
    """An isotropic Gaussian mixture in ``D`` dimensions with closed-form posteriors."""

    def __init__(self, weights, means, stds):
        self.weights = np.asarray(weights, dtype=np.float64)
        self.means = np.asarray(means, dtype=np.float64)
        self.stds = np.asarray(stds, dtype=np.float64)
        self.dim = self.means.shape[1]

    def sample(self, seed: int, num: int) -> np.ndarray:
        """``num`` float32 samples from a numpy generator (no XLA compilation)."""
        rng = np.random.default_rng(seed)
        k = rng.choice(len(self.weights), size=num, p=self.weights)
        noise = rng.standard_normal((num, self.dim))
        return (self.means[k] + self.stds[k, None] * noise).astype(np.float32)

    def posterior(self, xp: ModuleType, x_t, alpha, sigma, std_scale=1.0):
        """Responsibilities ``(N, K)``, component means ``(N, K, D)``, variances ``(N, K)``.

        ``alpha`` and ``sigma`` broadcast as ``(N, 1)``; ``std_scale != 1`` gives the posterior
        of a wrong model (component stds multiplied), for control experiments.
        """
        dtype = x_t.dtype
        mu = xp.asarray(self.means, dtype=dtype)[None]  # (1, K, D)
        s2 = xp.asarray(self.stds**2, dtype=dtype)[None] * std_scale**2  # (1, K)
        log_pi = xp.asarray(np.log(self.weights), dtype=dtype)[None]
        variance = alpha**2 * s2 + sigma**2  # (N, K)
        diff = x_t[:, None, :] - alpha[..., None] * mu  # (N, K, D)
        log_density = -0.5 * xp.sum(diff**2, axis=-1) / variance - 0.5 * self.dim * xp.log(
            2 * math.pi * variance
        )
        logits = log_pi + log_density
        logits = logits - xp.max(logits, axis=1, keepdims=True)
        resp = xp.exp(logits)
        resp = resp / xp.sum(resp, axis=1, keepdims=True)
        means = mu + (alpha * s2 / variance)[..., None] * diff
        variances = s2 * sigma**2 / variance
        return resp, means, variances

    def mean_x0(self, xp: ModuleType, x_t, alpha, sigma, std_scale=1.0):
        resp, means, _ = self.posterior(xp, x_t, alpha, sigma, std_scale)
        return xp.sum(resp[..., None] * means, axis=1)

    def trace_cov_x0(self, xp: ModuleType, x_t, alpha, sigma):
        resp, means, variances = self.posterior(xp, x_t, alpha, sigma)
        mean = xp.sum(resp[..., None] * means, axis=1)
        second = xp.sum(resp * (self.dim * variances + xp.sum(means**2, axis=-1)), axis=1)
        return second - xp.sum(mean**2, axis=-1)

    def expected_trace_cov(self, alpha: float, sigma: float, num_nodes: int = 40) -> float:
        """``E_{x_t}[tr Cov(x0 | x_t)]`` by tensor Gauss-Hermite quadrature per component (float64)."""
        nodes, node_weights = np.polynomial.hermite_e.hermegauss(num_nodes)
        node_weights = node_weights / math.sqrt(2 * math.pi)
        grid = np.stack(np.meshgrid(*([nodes] * self.dim), indexing="ij"), -1).reshape(-1, self.dim)
        grid_weights = np.prod(
            np.stack(np.meshgrid(*([node_weights] * self.dim), indexing="ij"), -1).reshape(
                -1, self.dim
            ),
            axis=1,
        )
        total = 0.0
        for weight, mu, std in zip(self.weights, self.means, self.stds, strict=True):
            scale = math.sqrt(alpha**2 * std**2 + sigma**2)
            x = alpha * mu[None] + scale * grid
            a = np.full((x.shape[0], 1), alpha)
            s = np.full((x.shape[0], 1), sigma)
            total += weight * np.sum(grid_weights * self.trace_cov_x0(np, x, a, s))
        return float(total)


@pytest.fixture(scope="session")
def mixture() -> GaussianMixture:
    """Three well-separated components in 2-D."""
    return GaussianMixture(
        weights=[0.5, 0.3, 0.2],
        means=[[-1.0, 0.5], [1.0, 1.0], [0.5, -1.0]],
        stds=[0.3, 0.5, 0.4],
    )


class TinyNet(nnx.Module):
    """A small MLP network ``(x, *times, y) -> (B, ...)`` with non-zero random weights."""

    def __init__(
        self,
        shape,
        *,
        num_times: int = 1,
        num_classes: int = 4,
        width: int = 32,
        dropout: float = 0.0,
        rngs: nnx.Rngs,
    ):
        size = int(np.prod(shape))
        self.shape = tuple(shape)
        self.num_times = num_times
        self.inp = nnx.Linear(size + 2 * num_times, width, rngs=rngs)
        self.label = nnx.Embed(num_classes + 1, width, rngs=rngs)
        self.hidden = nnx.Linear(width, width, rngs=rngs)
        self.out = nnx.Linear(width, size, rngs=rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)

    def __call__(self, x, *args):
        *times, y = args
        if len(times) != self.num_times:
            raise TypeError(f"expected {self.num_times} times, got {len(times)}")
        flat = jnp.reshape(x, (x.shape[0], -1))
        time_features = [jnp.stack([jnp.sin(3 * t), jnp.cos(2 * t)], -1) for t in times]
        h = jnp.concatenate([flat, *time_features], axis=-1)
        h = jnp.tanh(self.inp(h) + self.label(y))
        h = self.dropout(jnp.tanh(self.hidden(h)))
        return jnp.reshape(self.out(h), x.shape)


class TinyBackbone(nnx.Module):
    """A two-block token network on ``(B, 8, 8, C)`` with 2x2 patches (16 tokens) and features."""

    def __init__(
        self,
        channels: int,
        *,
        width: int = 32,
        patch: int = 2,
        num_classes: int = 4,
        rngs: nnx.Rngs,
    ):
        self.patch = patch
        self.embed = nnx.Linear(patch * patch * channels, width, rngs=rngs)
        self.time = nnx.Linear(2, width, rngs=rngs)
        self.label = nnx.Embed(num_classes + 1, width, rngs=rngs)
        self.blocks = nnx.List([nnx.Linear(width, width, rngs=rngs) for _ in range(2)])
        self.head = nnx.Linear(width, patch * patch * channels, rngs=rngs)

    def __call__(self, x, t, y, *, return_features: bool = False):
        b, h, w, c = x.shape
        p = self.patch
        tokens = x.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
        tokens = tokens.reshape(b, (h // p) * (w // p), p * p * c)
        cond = self.time(jnp.stack([jnp.sin(t), jnp.cos(t)], -1)) + self.label(y)
        hidden = self.embed(tokens) + cond[:, None]
        features = {}
        for i, block in enumerate(self.blocks):
            hidden = hidden + jnp.tanh(block(hidden))
            features[f"block_{i + 1}"] = hidden
        out = self.head(hidden).reshape(b, h // p, w // p, p, p, c).transpose(0, 1, 3, 2, 4, 5)
        out = out.reshape(b, h, w, c)
        return (out, features) if return_features else out


class TinyEncoder(nnx.Module):
    """A frozen-encoder stand-in: ``(B, H, W, C) -> (B, (H/p)(W/p), width)`` patch tokens."""

    def __init__(self, channels: int, *, width: int = 24, patch: int = 2, rngs: nnx.Rngs):
        self.patch = patch
        self.proj = nnx.Linear(patch * patch * channels, width, rngs=rngs)

    def __call__(self, images):
        b, h, w, c = images.shape
        p = self.patch
        tokens = images.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
        tokens = tokens.reshape(b, (h // p) * (w // p), p * p * c)
        return jnp.tanh(self.proj(tokens))


@pytest.fixture(scope="session")
def jit():
    """``jax.jit`` at XLA optimisation level 0.

    The suite is dominated by XLA:CPU compile time of tiny graphs; level 0 halves it (measured
    2.06 s -> 0.90 s for one flow-matching gradient) and changes float32 results only by
    reassociation, far inside every tolerance used here.
    """
    return functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


@pytest.fixture(scope="session")
def build():
    """``build(factory, seed)``: ``factory()`` with numpy-drawn parameters, no initialiser run.

    ``nnx_nets.testing.random_model`` with ``scale="fan_in"``: matrices ``N(0, 1 / fan_in)``,
    vectors ``N(0, 0.3^2)``, RNG keys random ``"rbg"`` key data, counters zero.
    """
    return functools.partial(random_model, scale="fan_in")


@pytest.fixture(scope="session")
def networks():
    """The tiny network classes, for tests to build with their own shapes."""
    return {"TinyNet": TinyNet, "TinyBackbone": TinyBackbone, "TinyEncoder": TinyEncoder}
