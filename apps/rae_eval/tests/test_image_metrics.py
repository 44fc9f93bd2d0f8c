"""PSNR and SSIM against closed forms and an independent float64 reference."""

import numpy as np
import pytest

from rae_eval.image_metrics import SSIM_WINDOW, psnr, ssim


def test_psnr_closed_form():
    rng = np.random.default_rng(0)
    reference = rng.integers(0, 250, size=(3, 16, 16, 3), dtype=np.uint8)
    shifted = reference + np.uint8(5)  # every pixel off by 5 levels: MSE = (5/255)^2
    expected = 20.0 * np.log10(255.0 / 5.0)
    np.testing.assert_allclose(psnr(reference, shifted), expected, rtol=1e-12)
    # Identical images hit the 1e-10 MSE floor: 20 log10(1e5) = 100 dB.
    np.testing.assert_allclose(psnr(reference, reference), 100.0, rtol=1e-12)


def test_ssim_of_constant_images_is_the_luminance_term():
    # Constant images have zero variance, so SSIM = (2ab + C1) / (a^2 + b^2 + C1).
    a, b = 100 / 255, 180 / 255
    first = np.full((2, 16, 16, 3), 100, np.uint8)  # the shapes of the next test: one compile
    second = np.full((2, 16, 16, 3), 180, np.uint8)
    c1 = SSIM_WINDOW["k1"] ** 2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    # float32 moments on values <= 1: 1e-6 absolute.
    np.testing.assert_allclose(ssim(first, second), expected, atol=1e-6)
    np.testing.assert_allclose(ssim(first, first), 1.0, atol=1e-6)


def _reference_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """Direct float64 SSIM of one image: explicit 2-D window sums at every valid position."""
    size, sigma = SSIM_WINDOW["size"], SSIM_WINDOW["sigma"]
    offsets = np.arange(size) - (size - 1) / 2
    window = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * sigma**2))
    window /= window.sum()
    c1, c2 = SSIM_WINDOW["k1"] ** 2, SSIM_WINDOW["k2"] ** 2
    height, width, channels = x.shape
    values = []
    for c in range(channels):
        for i in range(height - size + 1):
            for j in range(width - size + 1):
                px = x[i : i + size, j : j + size, c]
                py = y[i : i + size, j : j + size, c]
                mx, my = (window * px).sum(), (window * py).sum()
                vx = (window * (px - mx) ** 2).sum()
                vy = (window * (py - my) ** 2).sum()
                cov = (window * (px - mx) * (py - my)).sum()
                values.append(
                    (2 * mx * my + c1) * (2 * cov + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
                )
    return float(np.mean(values))


def test_ssim_matches_direct_float64_reference():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, size=(3, 16, 16, 3), dtype=np.uint8)
    noise = rng.integers(-40, 41, size=x.shape)
    y = np.clip(x.astype(int) + noise, 0, 255).astype(np.uint8)
    expected = [_reference_ssim(a / 255.0, b / 255.0) for a, b in zip(x, y)]
    # float32 moments (E[x^2] - E[x]^2 cancels ~1e-7 of 1) against float64: 1e-5 absolute.
    got = ssim(x, y, batch_size=2)  # 3 images in batches of 2 exercises the padded last batch
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert got.max() < 0.99  # the noise is strong enough that a wrong formula shows


def test_bad_inputs_are_named():
    images = np.zeros((1, 16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match="uint8"):
        psnr(images.astype(np.float32), images)
    with pytest.raises(ValueError, match="differ in shape"):
        ssim(images, np.zeros((1, 16, 17, 3), np.uint8))
    with pytest.raises(ValueError, match="at least 11"):
        ssim(np.zeros((1, 8, 8, 3), np.uint8), np.zeros((1, 8, 8, 3), np.uint8))
