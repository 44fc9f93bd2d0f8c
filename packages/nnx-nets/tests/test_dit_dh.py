"""DiT-DH (RAE's DiTwDDTHead): layout of the head hand-off for wide and equal widths.

Forward parity with the published architecture (wide and equal widths, trunk and head
features, scanned blocks) is tested in nnx-weightconv, which has the conversion specs."""

from flax import nnx

from nnx_nets import DiTDH

CFG = dict(
    input_size=4,
    patch_size=1,
    in_channels=3,
    hidden_size=32,
    depth=2,
    num_heads=2,
    head_depth=1,
    head_num_heads=2,
    num_classes=5,
)


def test_projector_exists_only_between_different_widths():
    wide = nnx.eval_shape(lambda: DiTDH(**CFG, head_hidden_size=48, rngs=nnx.Rngs(0)))
    assert wide.s_projector.kernel.get_value().shape == (32, 48)
    assert wide.x_embedder.proj.kernel.get_value().shape == (1, 1, 3, 48)
    assert wide.head_blocks[0].adaln.linear.kernel.get_value().shape == (48, 6 * 48)
    equal = nnx.eval_shape(lambda: DiTDH(**CFG, head_hidden_size=32, rngs=nnx.Rngs(0)))
    assert equal.s_projector is None  # upstream nn.Identity: no parameters
