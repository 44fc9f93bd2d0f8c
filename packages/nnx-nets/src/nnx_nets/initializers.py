"""Parameter initialisers of the DiT family (facebookresearch/DiT ``initialize_weights``).

Linear weights are xavier-uniform with zero biases; the patch-embedding kernel is
xavier-uniform on its flattened ``(p*p*C, D)`` view; time-embedder weights and the label
table are N(0, 0.02); adaLN modulations and the final projection start at zero
(adaLN-Zero, Peebles & Xie 2023, sec. 3.2), so a fresh network outputs exactly zero.
"""

from __future__ import annotations

from jax.nn import initializers

xavier_uniform = initializers.xavier_uniform()
xavier_uniform_flat = initializers.variance_scaling(
    1.0, "fan_avg", "uniform", in_axis=(0, 1, 2), out_axis=3
)
normal_002 = initializers.normal(stddev=0.02)
zeros = initializers.zeros
