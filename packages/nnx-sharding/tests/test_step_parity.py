"""One training step under each strategy equals the single-device step (fp32, 8 CPU devices)."""

from __future__ import annotations

import numpy as np
import pytest
import sharding_tiny_dit as tiny
from jax.sharding import PartitionSpec as P

# Sharding only reorders sums (over the batch, over a split contraction width): fp32 rounding
# of a few ulps. Relative error = max |sharded - single| / max |single| per leaf. The bar is
# 1e-6; measured worst cases over the three strategies: loss 7.2e-8, gradients 5.1e-7, parameters
# and first moments 5.0e-7.
RELATIVE_TOLERANCE = 1e-6
# AdamW's second moment is (1 - b2) g^2: its relative error is twice that of g (measured 8.6e-7).
SECOND_MOMENT_TOLERANCE = 2 * RELATIVE_TOLERANCE


# fsdp_tensor and sequence parallelism run in test_nnx_nets_dit.py (a DiT forward pass under
# FSDP + tensor + sequence at once); leaving their steps out here keeps the compile time in
# budget.
@pytest.mark.parametrize("name", ["replicate", "fsdp", "tensor"])
def test_sharded_step_equals_single_device_step(name, sharded_step, reference_step, initial):
    ref_state, ref_loss, ref_grads = reference_step
    new_state, loss, grads, _, _ = sharded_step(name)

    assert abs(loss - ref_loss) <= RELATIVE_TOLERANCE * abs(ref_loss)
    grads_error, grads_where = tiny.max_relative_error(tiny.flat(grads), ref_grads)
    assert grads_error <= RELATIVE_TOLERANCE, (grads_where, grads_error)

    (error, where), (nu_error, nu_where) = tiny.state_errors(tiny.flat(new_state), ref_state)
    assert error <= RELATIVE_TOLERANCE, (where, error)
    assert nu_error <= SECOND_MOMENT_TOLERANCE, (nu_where, nu_error)

    # Not vacuous: the step moved every kernel by far more than the tolerance.
    before = tiny.flat(initial[1])
    moved = min(
        np.max(np.abs(ref_state[key] - before[key])) / np.max(np.abs(before[key]))
        for key in ref_state
        if key.startswith("0.") and key.endswith("kernel")
    )
    assert moved > 100 * RELATIVE_TOLERANCE


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("replicate", P()),
        ("fsdp", P("fsdp", None)),
        ("tensor", P(None, "tensor")),
    ],
)
def test_step_keeps_parameters_and_optimiser_state_sharded(name, expected, sharded_step):
    new_state, _, _, _, _ = sharded_step(name)
    model, optimizer = new_state[0], new_state[1]
    kernel = model["blocks"][0]["fc1"]["kernel"].get_value()
    mu = optimizer["opt_state"][0]["mu"]["blocks"][0]["fc1"]["kernel"].get_value()
    assert kernel.sharding.spec == expected
    assert mu.sharding.spec == expected
