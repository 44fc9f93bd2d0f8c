"""The published configs: consistent sections, the one time shift, and keys that match the
constructors they feed."""

import inspect
import math

import numpy as np
import pytest

from nnx_nets import DINOv2, DiTDH, RAEDecoder
from rae_eval.build import build_grid
from rae_eval.pipeline import check_config


@pytest.mark.parametrize("variant", ["autoguidance", "cfg", "reconstruct"])
def test_published_config_is_consistent(load_config, variant):
    config = load_config("rae_dinov2b_256", variant)
    check_config(config)
    # Zheng et al. 2025 (RAE): s = sqrt(768 * 16 * 16 / 4096) = 6.93, read by the grid from
    # one value.
    assert (
        config.time_shift
        == pytest.approx(math.sqrt(196608 / 4096))
        == pytest.approx(6.9282, abs=1e-4)
    )
    times = np.asarray(build_grid(config.sampler, config.time_shift).times())
    # RAE's Euler-50: 49 steps over 1 - linspace(0, 0.999, 50), shifted.
    expected = 1.0 - np.linspace(0.0, 0.999, 50)
    expected = config.time_shift * expected / (1.0 + (config.time_shift - 1.0) * expected)
    np.testing.assert_allclose(times, expected, rtol=1e-6)  # float32 grid
    if variant == "autoguidance":
        assert (config.guidance.name, config.guidance.scale) == ("autoguidance", 1.42)


def test_published_sections_match_their_constructors(load_config):
    # Every key of a section is a keyword of the constructor it feeds (a misspelt key would
    # fail only at run time on the real machine, after the downloads).
    config = load_config("rae_dinov2b_256", "autoguidance")
    for section, constructor, extra in (
        (config.stage2, DiTDH, ()),
        (config.guide, DiTDH, ()),
        (config.decoder, RAEDecoder, ()),
        (config.encoder, DINOv2, ("input_size",)),
    ):
        accepted = set(inspect.signature(constructor.__init__).parameters)
        unknown = set(section) - accepted - {"name", *extra}
        assert not unknown, (constructor.__name__, unknown)
    assert (config.stage2.hidden_size, config.stage2.depth) == (1152, 28)  # DiT-DH-XL trunk
    assert (config.guide.hidden_size, config.guide.depth) == (384, 12)  # DiT-DH-S guide
    assert (config.decoder.hidden_size, config.decoder.depth) == (1152, 28)  # ViT-XL decoder
    assert not config.encoder.final_norm_affine and config.encoder.num_register_tokens == 4


def test_inconsistent_sections_are_named(load_config):
    config = load_config("rae_dinov2b_256", "autoguidance")
    config.stage2.in_channels = 384
    with pytest.raises(ValueError, match="stage2 input_size/in_channels 16/384"):
        check_config(config)
    config = load_config("rae_dinov2b_256", "autoguidance")
    config.weights = "pretrained"
    with pytest.raises(ValueError, match="choose one of"):
        check_config(config)
