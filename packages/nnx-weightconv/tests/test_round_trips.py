"""Exact NNX -> torch file -> NNX round trips for the specs without a torch model on PyPI.

EDM2 (NVlabs/edm2 ``UNet`` / ``Precond`` key layout) and MeanFlowDiT (DiT layout plus
``dt_embedder``). No parity is possible without the reference code, so these tests pin the key
names and shapes of the layout and check that export, ``torch.save``, ``read_state_dict`` and
load reproduce every parameter and fixed table bit for bit.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from nnx_nets import EDM2UNet, MeanFlowDiT
from nnx_nets.testing import random_model
from nnx_weightconv import (
    ConversionError,
    dit_buffer_keys,
    export_edm2_unet,
    export_state_dict,
    load_edm2_unet,
    load_into,
    meanflow_dit_rules,
    read_state_dict,
)

EDM2 = dict(
    img_resolution=4,
    img_channels=2,
    num_classes=3,
    model_channels=16,
    channel_mult=(1, 2),
    num_blocks=1,
    attn_resolutions=(2,),
    channels_per_head=16,
)


def _abstract(cls, **kwargs):
    return nnx.eval_shape(lambda: cls(**kwargs, rngs=nnx.Rngs(0)))


def _random(cls, seed: int, **kwargs):
    """``cls(**kwargs)`` with N(0, 1) values in every variable (parameters and fixed tables)."""
    return random_model(lambda: cls(**kwargs, rngs=nnx.Rngs(0)), seed, scale=1.0)


def _values(model, kind=nnx.Variable) -> dict:
    flat = nnx.to_flat_state(nnx.state(model, kind))
    return {
        ".".join(map(str, path)): np.asarray(var.get_value())
        for path, var in flat
        if jnp.issubdtype(var.get_value().dtype, jnp.floating)
    }


def _through_torch_file(state_dict: dict, path) -> dict:
    # np.array: a writable C-order copy that keeps 0-d gains 0-d (ascontiguousarray makes (1,)).
    torch.save({k: torch.from_numpy(np.array(v)) for k, v in state_dict.items()}, path)
    return read_state_dict(path)


def test_edm2_key_layout_and_exact_round_trip(tmp_path):
    source = _random(EDM2UNet, seed=0, **EDM2)
    exported = export_edm2_unet(source, prefix="unet.")
    # Key names and torch shapes of NVlabs/edm2 training/networks_edm2.py.
    expected_shapes = {
        "unet.emb_fourier.freqs": (16,),
        "unet.emb_noise.weight": (32, 16),
        "unet.emb_label.weight": (32, 3),
        "unet.out_gain": (),
        "unet.enc.4x4_conv.weight": (16, 3, 3, 3),
        "unet.enc.2x2_down.conv_res0.weight": (16, 16, 3, 3),
        "unet.enc.2x2_block0.conv_skip.weight": (32, 16, 1, 1),
        "unet.enc.2x2_block0.attn_qkv.weight": (96, 32, 1, 1),
        "unet.dec.2x2_in0.attn_proj.weight": (32, 32, 1, 1),
        "unet.dec.2x2_block1.conv_res0.weight": (32, 48, 3, 3),
        "unet.dec.4x4_up.emb_linear.weight": (32, 32),
        "unet.dec.4x4_block1.emb_gain": (),
        "unet.out_conv.weight": (2, 16, 3, 3),
    }
    for key, shape in expected_shapes.items():
        assert exported[key].shape == shape, key
    assert "unet.enc.4x4_block0.attn_qkv.weight" not in exported  # no attention at 4x4
    # A Precond file also holds the log-variance head: skipped, not unexpected.
    exported["logvar_fourier.freqs"] = np.ones(8, np.float32)
    exported["logvar_fourier.phases"] = np.ones(8, np.float32)
    exported["logvar_linear.weight"] = np.ones((1, 8), np.float32)
    reread = _through_torch_file(exported, tmp_path / "ema.pt")

    target = _abstract(EDM2UNet, **EDM2)
    assert load_edm2_unet(target, reread) == "unet."
    ours, theirs = _values(target), _values(source)
    assert ours.keys() == theirs.keys() and "emb_fourier.phases" in ours
    for key, value in theirs.items():
        np.testing.assert_array_equal(ours[key], value, err_msg=key)
    # A bare UNet state dict (no prefix) loads the same way and exports back bit for bit.
    bare = export_edm2_unet(target)
    again = _abstract(EDM2UNet, **EDM2)
    assert load_edm2_unet(again, bare) == ""
    for key, value in export_edm2_unet(again).items():
        np.testing.assert_array_equal(value, bare[key], err_msg=key)


def test_edm2_bad_checkpoint_names_keys():
    source = _random(EDM2UNet, seed=1, **EDM2)
    state_dict = export_edm2_unet(source)
    del state_dict["emb_fourier.phases"]
    state_dict["dec.2x2_in0.attn_qkv.weight"] = state_dict["dec.2x2_in0.attn_qkv.weight"][:48]
    with pytest.raises(ConversionError) as info:
        load_edm2_unet(_abstract(EDM2UNet, **EDM2), state_dict)
    message = str(info.value)
    assert "missing in checkpoint (1): emb_fourier.phases" in message
    assert "dec.2x2_in0.attn_qkv.weight -> dec.2x2_in0.attn_qkv.weight" in message
    with pytest.raises(ConversionError, match="not an EDM2 UNet"):
        load_edm2_unet(_abstract(EDM2UNet, **EDM2), {"model.weight": np.zeros(1)})


def test_meanflow_dit_exact_round_trip(tmp_path):
    kwargs = dict(input_size=4, patch_size=2, in_channels=3, hidden_size=32, depth=1, num_heads=2)
    source = _random(MeanFlowDiT, seed=2, **kwargs)
    exported = export_state_dict(source, meanflow_dit_rules(source))
    assert exported["dt_embedder.mlp.0.weight"].shape == (32, 256)
    reread = _through_torch_file(exported, tmp_path / "meanflow.pt")
    target = _abstract(MeanFlowDiT, **kwargs)
    load_into(target, reread, meanflow_dit_rules(target), ignore=dit_buffer_keys(target))
    ours, theirs = _values(target, nnx.Param), _values(source, nnx.Param)
    assert ours.keys() == theirs.keys()
    for key, value in theirs.items():
        np.testing.assert_array_equal(ours[key], value, err_msg=key)
    assert not np.allclose(jax.device_get(ours["dt_embedder.linear_1.kernel"]), 0)
