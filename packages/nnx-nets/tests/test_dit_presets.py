"""Parameter counts of every full-size DiT, LightningDiT and DiT-DH preset (no memory).

Counts come from ``nnx.eval_shape`` of the real constructors and are compared with
(a) closed forms derived layer by layer, written independently below, and (b) the
published figures: facebookresearch/DiT models.py counted to 2 decimals (Peebles & Xie
2023 give 675 M for XL/2) and RAE's DiT-DH-XL (~839 M, a third-party figure that counts
upstream's fixed ``pos_embed`` as a parameter).
"""

import jax
import numpy as np
import pytest
from flax import nnx

from nnx_nets import (
    DIT_DH_PRESETS,
    DIT_PRESETS,
    LIGHTNING_DIT_PRESETS,
    dit_dh_from_preset,
    dit_from_preset,
    lightning_dit_from_preset,
)


class ShapeOnlyRngs:
    """Stands in for ``nnx.Rngs`` under ``nnx.eval_shape``: one key per ``params()`` call.

    flax 0.12.8's ``RngStream`` updates its counter through ``Variable.__setitem__``,
    which under tracing looks up ``.sharding`` on a tracer; the resulting error message
    walks the whole trace, so tracing a DiT-XL init with a real ``nnx.Rngs`` is quadratic
    (~15 s). A Python-side counter gives the same module structure in ~1 s.
    """

    def __init__(self, seed: int):
        self._key, self._count = jax.random.key(seed), 0

    def params(self):
        self._count += 1
        return jax.random.fold_in(self._key, self._count)


def count_params(factory) -> int:
    model = nnx.eval_shape(lambda: factory(rngs=ShapeOnlyRngs(0)))
    return sum(
        int(np.prod(v.get_value().shape)) for _, v in nnx.state(model, nnx.Param).flat_state()
    )


def linear(n_in, n_out):
    return n_in * n_out + n_out


def dit_closed_form(hidden, depth, patch, channels, classes, learn_sigma):
    d, out = hidden, channels * (2 if learn_sigma else 1)
    block = 4 * linear(d, d) + linear(d, 4 * d) + linear(4 * d, d) + linear(d, 6 * d)
    assert block == 18 * d * d + 15 * d  # facebookresearch/DiT models.py, ``DiTBlock``
    embed = (patch * patch * channels * d + d) + linear(256, d) + linear(d, d) + (classes + 1) * d
    final = linear(d, 2 * d) + linear(d, patch * patch * out)
    return depth * block + embed + final


# Counted from facebookresearch/DiT models.py: millions of parameters at 32x32x4,
# learn-sigma, 1000 + 1 classes.
DIT_TABLE = {
    "S": (32.87, 32.92, 33.14),
    "B": (130.32, 130.43, 130.87),
    "L": (457.84, 457.99, 458.58),
    "XL": (674.83, 675.00, 675.66),
}


def test_all_twelve_dit_presets():
    assert len(DIT_PRESETS) == 12
    counts = {}
    for name, preset in DIT_PRESETS.items():
        count = count_params(
            lambda rngs, name=name: dit_from_preset(
                name, input_size=32, in_channels=4, learn_sigma=True, rngs=rngs
            )
        )
        size, patch = name[4:].split("/")
        expected = dit_closed_form(
            preset["hidden_size"], preset["depth"], int(patch), 4, 1000, True
        )
        assert count == expected, name
        published = DIT_TABLE[size][{2: 0, 4: 1, 8: 2}[int(patch)]]
        assert abs(count / 1e6 - published) < 0.005 + 1e-9, (name, count)  # 2-decimal table
        counts[name] = count
    assert abs(counts["DiT-XL/2"] / 675e6 - 1) < 1e-3  # the paper's 675 M, within 0.1%
    # Without learn-sigma the final projection loses D * 4 p^2 + 4 p^2 (DiT ``FinalLayer``).
    no_sigma = count_params(
        lambda rngs: dit_from_preset("DiT-XL/2", input_size=32, in_channels=4, rngs=rngs)
    )
    assert counts["DiT-XL/2"] - no_sigma == 1152 * 16 + 16


def lightning_closed_form(hidden, depth, patch, channels, classes):
    d = hidden
    h = int(2 / 3 * int(4 * d))
    block = 4 * linear(d, d) + 2 * d + 2 * linear(d, h) + linear(h, d) + linear(d, 6 * d)
    embed = (patch * patch * channels * d + d) + linear(256, d) + linear(d, d) + (classes + 1) * d
    final = d + linear(d, 2 * d) + linear(d, patch * patch * channels)
    return depth * block + embed + final


@pytest.mark.parametrize("name", list(LIGHTNING_DIT_PRESETS))
def test_lightning_dit_presets(name):
    preset = LIGHTNING_DIT_PRESETS[name]
    count = count_params(
        lambda rngs: lightning_dit_from_preset(name, input_size=16, in_channels=32, rngs=rngs)
    )
    assert count == lightning_closed_form(
        preset["hidden_size"], preset["depth"], preset["patch_size"], 32, 1000
    )
    if name == "LightningDiT-XL/1":
        # SwiGLU at 2/3 width keeps the XL budget: within 0.1% of DiT-XL's 675 M.
        assert abs(count / 675e6 - 1) < 1e-3


def dit_dh_closed_form(trunk, depth, head, head_depth, channels, classes):
    def block(d):
        h = int(2 / 3 * int(4 * d))
        return 4 * linear(d, d) + 2 * d + 2 * linear(d, h) + linear(h, d) + linear(d, 6 * d)

    embed = channels * (trunk + head) + trunk + head  # two 1x1 patch convs, with bias
    time = 256 + linear(512, trunk) + linear(trunk, trunk)  # Gaussian-Fourier W + MLP
    projector = linear(trunk, head) if trunk != head else 0
    final = head + linear(head, 2 * head) + linear(head, channels)
    labels = (classes + 1) * trunk
    return (
        depth * block(trunk) + head_depth * block(head) + embed + time + labels + projector + final
    )


@pytest.mark.parametrize("name", list(DIT_DH_PRESETS))
def test_dit_dh_presets(name):
    p = DIT_DH_PRESETS[name]
    count = count_params(
        lambda rngs: dit_dh_from_preset(name, input_size=16, in_channels=768, rngs=rngs)
    )
    expected = dit_dh_closed_form(
        p["hidden_size"], p["depth"], p["head_hidden_size"], p["head_depth"], 768, 1000
    )
    assert count == expected
    if name == "DiTDH-XL":
        with_fixed_pos_embed = count + 16 * 16 * 1152  # upstream counts it in parameters()
        assert abs(with_fixed_pos_embed / 839e6 - 1) < 1e-3


def test_unknown_preset_lists_valid_names():
    with pytest.raises(ValueError, match="valid: DiT-S/2, DiT-S/4"):
        dit_from_preset("DiT-M/2", input_size=32, in_channels=4, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="already sets"):
        dit_from_preset("DiT-S/2", hidden_size=8, input_size=32, in_channels=4, rngs=nnx.Rngs(0))
