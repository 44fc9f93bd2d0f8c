"""Root pytest configuration shared by every package's suite.

Gives JAX 8 fake CPU devices (for sharding tests) before jax is imported anywhere,
keeps JAX on the CPU, and pins torch to one thread so that parity tests do not
fight XLA for the two cores of the CI machine.
"""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# One BLAS thread: under two busy cores a threaded eigh costs several times more CPU.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("EPATH_USE_TF", "false")
