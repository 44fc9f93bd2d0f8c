"""VP / VE / iDDPM preconditioners (EDM Table 1): the coefficients and noise labels against the
paper's formulas, the time conversion, and the iDDPM output split. Parity of the wrapped
networks with a PyTorch reference is in nnx-weightconv (``test_edm_conversion.py``)."""

import jax.numpy as jnp
import numpy as np
import pytest

from nnx_objectives import (
    IDDPMPrecond,
    VEPrecond,
    VPPrecond,
    edm_sigma_from_t,
    iddpm_sigma_levels,
)

SIGMAS = np.array([0.002, 0.05, 0.5, 3.0, 80.0])


def _recorder(out_factor: int = 1):
    """A network returning its input (repeated ``out_factor`` times) and recording c_noise."""
    seen = {}

    def net(x, c_noise, y):
        seen["c_noise"], seen["x"] = c_noise, x
        return jnp.concatenate([x] * out_factor, axis=-1)

    return net, seen


def test_vp_time_map_and_coefficients():
    precond = VPPrecond(_recorder()[0])
    t = jnp.asarray([1e-5, 0.1, 0.5, 1.0])
    # sigma_inv inverts sigma(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1) (1e-5: float32).
    np.testing.assert_allclose(precond.sigma_inv(precond.sigma(t)), t, rtol=1e-4, atol=1e-6)
    # EDM Table 1, VP column: sigma_min = sigma(1e-5), sigma_max = sigma(1) ~ 152 (float64).
    np.testing.assert_allclose(precond.sigma_max, np.sqrt(np.expm1(19.9 / 2 + 0.1)), rtol=1e-5)
    c = precond.coefficients(jnp.asarray(SIGMAS, jnp.float32))
    np.testing.assert_allclose(c.c_out, -SIGMAS, rtol=1e-6)
    np.testing.assert_allclose(c.c_in, 1 / np.sqrt(SIGMAS**2 + 1), rtol=1e-6)
    t_of_sigma = (np.sqrt(0.01 + 2 * 19.9 * np.log1p(SIGMAS**2)) - 0.1) / 19.9
    np.testing.assert_allclose(c.c_noise, 999 * t_of_sigma, rtol=1e-4)  # float32 vs float64


def test_ve_denoiser_in_our_time():
    net, seen = _recorder()
    precond = VEPrecond(net)
    x_t = jnp.full((2, 2, 2, 1), 0.5)
    t = jnp.asarray([0.2, 0.75])
    out = precond(x_t, t, jnp.zeros(2, jnp.int32))
    sigma = np.asarray(edm_sigma_from_t(t))
    x_edm = 0.5 / (1 - np.asarray(t))
    # c_skip = 1, c_out = sigma, c_in = 1, c_noise = ln(sigma / 2); F = identity here.
    np.testing.assert_allclose(seen["c_noise"], np.log(sigma / 2), rtol=1e-6)
    np.testing.assert_allclose(out[:, 0, 0, 0], x_edm + sigma * x_edm, rtol=1e-6)
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        VEPrecond(net, sigma_min=1.0, sigma_max=0.5)


def test_iddpm_levels_labels_and_channel_split():
    levels = np.asarray(iddpm_sigma_levels())
    assert levels.shape == (1001,) and levels[-1] == 0 and np.all(np.diff(levels) < 0)
    net, seen = _recorder(out_factor=2)
    precond = IDDPMPrecond(net)
    assert precond.sigma_max == pytest.approx(levels[0]) and precond.sigma_min == levels[999]
    # A sigma exactly on level j gets the noise label M - 1 - j.
    j = np.array([0, 10, 500, 999])
    sigma = jnp.asarray(levels[j], jnp.float32)
    x = jnp.ones((4, 2, 2, 3))
    out = precond.denoise(x, sigma, jnp.zeros(4, jnp.int32))
    np.testing.assert_array_equal(seen["c_noise"], 999 - j)
    assert out.shape == x.shape  # the variance half of F is dropped
    with pytest.raises(ValueError, match="out_channels=6"):
        IDDPMPrecond(_recorder()[0]).denoise(x, sigma, jnp.zeros(4, jnp.int32))
