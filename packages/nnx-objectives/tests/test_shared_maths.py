"""The maths shared with the samplers is the samplers' own objects, not a second copy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import nnx_nets
import nnx_objectives as no
import nnx_samplers as ns

SHARED = [
    "GVPPath",
    "LinearPath",
    "Network",
    "Path",
    "TwoTimeNetwork",
    "VPPath",
    "conditional_velocity",
    "edm_from_linear",
    "edm_sigma_from_t",
    "expand_time",
    "interpolate",
    "linear_from_edm",
    "score_coefficient",
    "shift_time",
    "t_from_edm_sigma",
]


def test_re_exports_are_the_samplers_objects():
    assert [name for name in SHARED if getattr(no, name) is not getattr(ns, name)] == []


def test_log_var_head_features_are_nnx_nets_mp_fourier_in_float32():
    head = no.LogVarHead(8, rngs=nnx.Rngs(0))
    assert isinstance(head.fourier, nnx_nets.MPFourier)
    t = jnp.asarray([0.2, 0.7], jnp.bfloat16)
    assert head.fourier(t).dtype == jnp.float32  # the head's dtype, whatever the input's
    # The tables are drawn from one key split in two: (freqs, phases) of that split.
    key_freqs, _ = jax.random.split(nnx.Rngs(0).params())
    np.testing.assert_array_equal(
        head.fourier.freqs[...], 2 * np.pi * jax.random.normal(key_freqs, (8,))
    )
