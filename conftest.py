"""Root pytest configuration shared by every package's suite.

Gives JAX 8 fake CPU devices (for sharding tests) before jax is imported anywhere,
keeps JAX on the CPU, and pins torch to one thread so that parity tests do not
fight XLA for the two cores of the CI machine.
"""

import os

# Cheap XLA:CPU code generation for the tests (LLVM -O0, the classic elemental emitters, one
# codegen split): the suites are dominated by compilation of tiny programs, and these halve
# it (two recipe smoke tests: 117 s -> 59 s). Float semantics are unchanged (no fast math);
# every bitwise comparison runs both sides under the same flags, subprocesses inherit them.
_FAST_COMPILE = (
    "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false "
    "--xla_cpu_parallel_codegen_split_count=1"
)
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8 " + _FAST_COMPILE
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# One BLAS thread: under two busy cores a threaded eigh costs several times more CPU.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("EPATH_USE_TF", "false")
