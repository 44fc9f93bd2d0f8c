"""The root conftest's fake-device set-up (nnx_nets.testing) reaches JAX."""

import jax


def test_eight_fake_cpu_devices():
    assert jax.device_count() == 8
    assert jax.devices()[0].platform == "cpu"
