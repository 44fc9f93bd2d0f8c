"""Test kit: fake CPU devices, random non-zero weights and tiny presets of every network.

Used by every test suite of the workspace (each suite's ``conftest.py`` calls
:func:`configure_cpu_tests` first) and available to users' own tests::

    from nnx_nets.testing import configure_cpu_tests, tiny_model

    configure_cpu_tests()  # before any JAX computation: 8 fake CPU devices, cheap compiles
    model = tiny_model("dit", seed=0)  # DiT, 8 x 8 x 3 inputs, random non-zero weights

Random weights matter because freshly initialised networks of this package are exactly zero
at the output (adaLN-Zero modulation, zero final layers, zero-initialised skip convolutions):
a parity test on them would prove nothing. Weights are drawn on the host with numpy from a
seeded generator, into a module built with ``nnx.eval_shape``, so that no XLA program is
compiled per parameter shape (eager construction compiles every initialiser, about a second
each on a 2-core CI machine).
"""

from __future__ import annotations

import importlib.metadata
import math
import os
import re
from collections.abc import Callable
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nnx_nets.dhariwal_unet import DhariwalUNet
from nnx_nets.dinov2 import DINOv2
from nnx_nets.dit import DiT
from nnx_nets.dit_dh import DiTDH
from nnx_nets.edm2_unet import EDM2UNet
from nnx_nets.lightning_dit import LightningDiT
from nnx_nets.meanflow_dit import MeanFlowDiT
from nnx_nets.sd_vae import SDVAE
from nnx_nets.song_unet import SongUNet
from nnx_nets.vit_decoder import RAEDecoder

__all__ = [
    "TINY_PRESETS",
    "configure_cpu_tests",
    "fast_compile_flags",
    "random_model",
    "randomise_parameters",
    "tiny_model",
    "xla_test_flags",
]

# Tiny constructor arguments of every network (the widths and depths the package's own tests
# use): each builds and compiles in about a second on one CPU core.
TINY_PRESETS: dict[str, tuple[type[nnx.Module], dict]] = {
    "dit": (
        DiT,
        dict(
            input_size=8,
            patch_size=2,
            in_channels=3,
            hidden_size=32,
            depth=2,
            num_heads=2,
            num_classes=5,
            learn_sigma=True,
        ),
    ),
    "lightning_dit": (
        LightningDiT,
        dict(
            input_size=8,
            patch_size=2,
            in_channels=3,
            hidden_size=32,
            depth=2,
            num_heads=2,
            num_classes=5,
        ),
    ),
    "meanflow_dit": (
        MeanFlowDiT,
        dict(
            input_size=8,
            patch_size=2,
            in_channels=3,
            hidden_size=32,
            depth=2,
            num_heads=2,
            num_classes=5,
        ),
    ),
    "dit_dh": (
        DiTDH,
        dict(
            input_size=4,
            patch_size=1,
            in_channels=3,
            hidden_size=32,
            depth=2,
            num_heads=2,
            head_hidden_size=48,
            head_depth=1,
            head_num_heads=2,
            num_classes=5,
        ),
    ),
    "edm2_unet": (
        EDM2UNet,
        dict(
            img_resolution=16,
            img_channels=3,
            num_classes=10,
            model_channels=16,
            channel_mult=(1, 2),
            num_blocks=1,
            attn_resolutions=(8,),
            channels_per_head=8,
        ),
    ),
    "song_unet": (
        SongUNet,
        dict(
            img_resolution=8,
            in_channels=3,
            out_channels=3,
            num_classes=4,
            model_channels=16,
            channel_mult=(1, 2),
            num_blocks=1,
            attn_resolutions=(4,),
            dropout=0.0,
        ),
    ),
    "dhariwal_unet": (
        DhariwalUNet,
        dict(
            img_resolution=8,
            in_channels=3,
            out_channels=3,
            num_classes=4,
            model_channels=16,
            channel_mult=(1, 2),
            num_blocks=1,
            attn_resolutions=(4,),
            channels_per_head=8,
            dropout=0.0,
        ),
    ),
    "sd_vae": (SDVAE, dict(block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4)),
    "rae_decoder": (
        RAEDecoder,
        dict(
            hidden_size=16,
            depth=1,
            num_heads=2,
            intermediate_size=32,
            latent_dim=8,
            grid_size=4,
            patch_size=2,
        ),
    ),
    "dinov2": (
        DINOv2,
        dict(hidden_size=32, depth=2, num_heads=2, patch_size=4, image_size=16),
    ),
}


def _release(version: str) -> tuple[int, ...]:
    """Leading numeric release of a version string: ``"0.12.0.1"`` -> ``(0, 12, 0, 1)``."""
    match = re.match(r"\d+(\.\d+)*", version)
    if match is None:
        raise ValueError(f"cannot read a release number from version {version!r}")
    return tuple(int(part) for part in match.group(0).split("."))


def fast_compile_flags(jaxlib_version: str | None = None) -> list[str]:
    """Cheap XLA:CPU code generation for tests, only flags the given (installed) XLA knows.

    LLVM -O0, one codegen split and, where it exists, the classic elemental emitters: the
    suites are dominated by compilation of tiny programs, and these halve it (jaxlib 0.10.2,
    two recipe smoke tests: 117 s -> 59 s). Float semantics are unchanged (no fast math);
    every bitwise comparison runs both sides under the same flags, subprocesses inherit them.

    XLA aborts the process on an unknown flag in ``XLA_FLAGS``, and jaxlib 0.11.1 removed
    ``--xla_cpu_use_fusion_emitters`` (measured: 0.11.0 accepts it, 0.11.1 and 0.12.0.1 abort).
    Compiling one gradient of a 2-block DiT, measured on a busy 2-core machine: jaxlib 0.10.2
    5.3 s -> 2.1 s (-O0, one split) -> 1.0 s (+ classic emitters); jaxlib 0.12.0.1 4.9-6.3 s
    -> 2.9-3.0 s (-O0, one split).

    Args:
      jaxlib_version: defaults to the installed distribution's version, read from its
        metadata without importing jaxlib.
    """
    version = jaxlib_version or importlib.metadata.version("jaxlib")
    flags = ["--xla_backend_optimization_level=0", "--xla_cpu_parallel_codegen_split_count=1"]
    if _release(version) < (0, 11, 1):
        flags.append("--xla_cpu_use_fusion_emitters=false")
    return flags


def xla_test_flags(existing: str, num_devices: int = 8, jaxlib_version: str | None = None) -> str:
    """``existing`` XLA flags plus fake host devices and :func:`fast_compile_flags`.

    A flag already named in ``existing`` (by the user, or by an earlier call: every suite's
    conftest calls this when the whole workspace runs in one process) is kept as it is.
    """
    flags = existing.split()
    names = {flag.split("=")[0] for flag in flags}
    wanted = [f"--xla_force_host_platform_device_count={num_devices}"]
    wanted += fast_compile_flags(jaxlib_version)
    flags += [flag for flag in wanted if flag.split("=")[0] not in names]
    return " ".join(flags)


def configure_cpu_tests(num_devices: int = 8) -> None:
    """Set up this process (and the subprocesses it starts) for the CPU test suites.

    ``num_devices`` fake CPU devices and cheap compiles (:func:`xla_test_flags`), JAX on the CPU
    unless ``JAX_PLATFORMS`` says otherwise, and threads that do not fight XLA for the CI
    machine's two cores: OpenMP threads sleep when idle (torch parity references) and BLAS uses
    one thread (a threaded eigh costs several times more CPU on two busy cores). Call it before
    JAX runs anything: XLA reads ``XLA_FLAGS`` once, when the first backend starts. numpy reads
    ``OPENBLAS_NUM_THREADS`` when it is first imported, which importing this module already did:
    a suite that needs numpy's BLAS on one thread sets it before its first import.
    """
    os.environ["XLA_FLAGS"] = xla_test_flags(os.environ.get("XLA_FLAGS", ""), num_devices)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    jax.config.update("jax_platforms", os.environ["JAX_PLATFORMS"])
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def _random_leaf(
    leaf: jax.ShapeDtypeStruct, rng: np.random.Generator, scale: float | Literal["fan_in"]
) -> jax.Array:
    if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        # "rbg" keys: XLA's RngBitGenerator compiles far faster on CPU than threefry.
        data = rng.integers(0, 2**32 - 1, leaf.shape + (4,), dtype=np.uint32)
        return jax.random.wrap_key_data(data, impl="rbg")
    if not jnp.issubdtype(leaf.dtype, jnp.floating):
        return jnp.zeros(leaf.shape, leaf.dtype)  # counters, step numbers
    if scale == "fan_in":
        std = 1 / math.sqrt(leaf.shape[0]) if len(leaf.shape) == 2 else 0.3
    else:
        std = scale
    return jnp.asarray(std * rng.standard_normal(leaf.shape), leaf.dtype)


def random_model(
    ctor: Callable[[], nnx.Module], seed: int = 0, *, scale: float | Literal["fan_in"] = 0.3
) -> nnx.Module:
    """``ctor()`` built abstractly, then every variable drawn on the host from ``seed``.

    Args:
      ctor: builds the module, e.g. ``lambda: DiT(**kwargs, rngs=nnx.Rngs(0))``; it is only
        traced (``nnx.eval_shape``), so its initialisers never run.
      seed: numpy generator seed; the same seed gives the same weights.
      scale: float variables ~ ``N(0, scale^2)``; ``"fan_in"``: 2-D kernels ``(in, out)`` ~
        ``N(0, 1 / in)`` and every other float variable ~ ``N(0, 0.3^2)``. PRNG-key variables
        get random ``"rbg"`` keys, integer variables zeros.

    Returns:
      The module with concrete, non-zero weights.
    """
    graphdef, state = nnx.split(nnx.eval_shape(ctor))
    rng = np.random.default_rng(seed)
    return nnx.merge(graphdef, jax.tree.map(lambda leaf: _random_leaf(leaf, rng, scale), state))


def randomise_parameters(model: nnx.Module, seed: int, *, vector_scale: float = 0.02) -> None:
    """Fill every parameter with random values, in place (demo and test runs without checkpoints).

    Works on an abstract module (built with ``nnx.eval_shape``: no initialisation cost) as on a
    concrete one, whose values are kept and perturbed. Kernels and tables (``ndim >= 2``) get
    He-normal noise, ``std = sqrt(2 / fan_in)`` with ``fan_in`` the product of all but the last
    axis (NNX layouts ``(in, out)``, ``(kh, kw, in, out)``; He et al. 2015, eq. 10); vectors get
    ``N(0, vector_scale^2)`` around 0, or around 1 for norm ``scale`` vectors of an abstract
    module. Only ``nnx.Param`` variables are touched.
    """
    rng = np.random.default_rng(seed)
    for path, variable in nnx.state(model, nnx.Param).flat_state():
        current = variable.get_value()
        shape = tuple(current.shape)
        fan_in = int(np.prod(shape[:-1])) if len(shape) >= 2 else 0
        std = float(np.sqrt(2.0 / fan_in)) if fan_in else vector_scale
        if isinstance(current, jax.ShapeDtypeStruct):
            base = (
                np.ones(shape, np.float32) if path[-1] == "scale" else np.zeros(shape, np.float32)
            )
        else:
            base = np.asarray(current, np.float32)
        value = base + std * rng.standard_normal(shape, np.float32)
        variable.set_value(jnp.asarray(value, current.dtype))


def tiny_model(
    name: str, seed: int = 0, *, scale: float | Literal["fan_in"] = 0.3, **overrides
) -> nnx.Module:
    """A network of :data:`TINY_PRESETS` with random weights (:func:`random_model`).

    Args:
      name: a key of :data:`TINY_PRESETS` (``"dit"``, ``"lightning_dit"``, ``"meanflow_dit"``,
        ``"dit_dh"``, ``"edm2_unet"``, ``"song_unet"``, ``"dhariwal_unet"``, ``"sd_vae"``, ``"rae_decoder"``, ``"dinov2"``).
      seed: numpy generator seed, as :func:`random_model`.
      scale: weight scale, as :func:`random_model`.
      **overrides: constructor arguments that replace or extend the preset's.
    """
    if name not in TINY_PRESETS:
        raise ValueError(f"unknown tiny preset {name!r}; choose one of {sorted(TINY_PRESETS)}")
    cls, kwargs = TINY_PRESETS[name]
    return random_model(lambda: cls(**(kwargs | overrides), rngs=nnx.Rngs(0)), seed, scale=scale)
