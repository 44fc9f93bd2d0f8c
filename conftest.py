"""Root pytest configuration shared by every package's suite.

Gives JAX 8 fake CPU devices (for sharding tests) before jax is imported anywhere,
keeps JAX on the CPU, and pins torch to one thread so that parity tests do not
fight XLA for the two cores of the CI machine.
"""

import importlib.metadata
import os

from packaging.version import Version


def fast_compile_flags() -> list[str]:
    """Cheap XLA:CPU code generation for the tests, only flags the installed XLA knows.

    LLVM -O0, one codegen split and, where it exists, the classic elemental emitters: the
    suites are dominated by compilation of tiny programs, and these halve it (jaxlib 0.10.2,
    two recipe smoke tests: 117 s -> 59 s). Float semantics are unchanged (no fast math);
    every bitwise comparison runs both sides under the same flags, subprocesses inherit them.

    XLA aborts the process on an unknown flag in ``XLA_FLAGS``, and jaxlib 0.11.1 removed
    ``--xla_cpu_use_fusion_emitters`` (measured: 0.11.0 accepts it, 0.11.1 and 0.12.0.1 abort).
    Compiling one gradient of a 2-block DiT, measured on a busy 2-core machine: jaxlib 0.10.2
    5.3 s -> 2.1 s (-O0, one split) -> 1.0 s (+ classic emitters); jaxlib 0.12.0.1 4.9-6.3 s
    -> 2.9-3.0 s (-O0, one split).
    The version is read from the installed distribution's metadata, without importing jax
    (XLA reads ``XLA_FLAGS`` once, when jax first initialises a backend).
    """
    flags = ["--xla_backend_optimization_level=0", "--xla_cpu_parallel_codegen_split_count=1"]
    if Version(importlib.metadata.version("jaxlib")) < Version("0.11.1"):
        flags.append("--xla_cpu_use_fusion_emitters=false")
    return flags


os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", ""), "--xla_force_host_platform_device_count=8"]
    + fast_compile_flags()
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# One BLAS thread: under two busy cores a threaded eigh costs several times more CPU.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("EPATH_USE_TF", "false")
