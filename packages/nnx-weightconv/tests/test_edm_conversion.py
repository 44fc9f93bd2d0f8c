"""NVlabs/edm networks (Karras et al. 2022) -> nnx_nets.SongUNet / DhariwalUNet, and the VP /
VE / iDDPM / EDM preconditioners, against the PyTorch reference ``edm_torch_reference`` (written
from the published architecture) on random non-zero weights, tiny configurations."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from edm_torch_reference import TorchDhariwalUNet, TorchPrecond, TorchSongUNet
from flax import nnx
from weightconv_testlib import randomise_torch

from nnx_nets import DhariwalUNet, SongUNet
from nnx_nets.testing import random_model
from nnx_objectives import EDMPrecond, IDDPMPrecond, VEPrecond, VPPrecond
from nnx_weightconv import ConversionError, export_edm_unet, load_edm_unet

TINY = dict(img_resolution=8, in_channels=3, out_channels=3, num_classes=4, model_channels=16)
SONG = dict(channel_mult=(1, 2), num_blocks=1, attn_resolutions=(4,))
SONG_VARIANTS = {
    "ddpmpp": {},
    "ncsnpp": dict(
        embedding_type="fourier",
        channel_mult_noise=2,
        encoder_type="residual",
        resample_filter=(1, 3, 3, 1),
    ),
    "skip_encoder_decoder": dict(encoder_type="skip", decoder_type="skip"),
}
ADM = dict(channel_mult=(1, 2), num_blocks=1, attn_resolutions=(4,), channels_per_head=8)
# float32 on both sides through ~20 convs, GroupNorms and attention: rounding differences of a
# few 1e-6 relative grow to ~1e-5; a wrong layout or coefficient is O(1).
RTOL = 1e-4


def _state_dict(module: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy() for k, v in module.state_dict().items()}


def _inputs(seed: int = 0, channels: int = 3):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, channels, 8, 8)).astype(np.float32)
    return x, np.array([1, 4])  # label 4 = the null label (zero label vector)


def _close(ours, theirs):
    scale = float(np.abs(theirs).max())
    err = float(np.abs(np.asarray(ours) - theirs).max())
    assert scale > 1e-3, "the reference output is (near) zero: the test would prove nothing"
    print(f"relative max error {err / scale:.2e}")
    assert err <= RTOL * scale, f"max error {err:.3g} against output scale {scale:.3g}"
    return err / scale


def _ported(torch_net, ctor, seed):
    randomise_torch(torch_net, seed)
    model = random_model(ctor, seed + 1)  # different weights, overwritten by the load
    assert load_edm_unet(model, _state_dict(torch_net)) == ""
    return model


@pytest.mark.parametrize("variant", sorted(SONG_VARIANTS))
def test_song_unet_parity(variant):
    kwargs = {**TINY, **SONG, **SONG_VARIANTS[variant]}
    torch_net = TorchSongUNet(**kwargs)
    model = _ported(torch_net, lambda: SongUNet(**kwargs, dropout=0.0, rngs=nnx.Rngs(0)), 3)
    x, y = _inputs()
    noise = np.array([0.3, -1.2], np.float32)
    with torch.no_grad():
        expected = torch_net(torch.from_numpy(x), torch.from_numpy(noise), torch.from_numpy(y))
    ours = model(jnp.asarray(x.transpose(0, 2, 3, 1)), jnp.asarray(noise), jnp.asarray(y))
    _close(np.asarray(ours).transpose(0, 3, 1, 2), expected.numpy())


@pytest.mark.parametrize(("kind", "song"), [("vp", "ddpmpp"), ("ve", "ncsnpp"), ("edm", "ddpmpp")])
def test_song_preconditioner_parity(kind, song):
    kwargs = {**TINY, **SONG, **SONG_VARIANTS[song]}
    torch_net = TorchPrecond(TorchSongUNet(**kwargs), kind)
    model = random_model(lambda: SongUNet(**kwargs, dropout=0.0, rngs=nnx.Rngs(0)), 1)
    randomise_torch(torch_net, 5)
    assert load_edm_unet(model, _state_dict(torch_net)) == "model."
    wrap = {"vp": VPPrecond, "ve": VEPrecond, "edm": EDMPrecond}[kind](model)
    x, y = _inputs(1)
    sigma = np.array([0.05, 7.0], np.float32)
    with torch.no_grad():
        expected = torch_net(*(torch.from_numpy(a) for a in (x, sigma, y))).numpy()
    ours = wrap.denoise(jnp.asarray(x.transpose(0, 2, 3, 1)), jnp.asarray(sigma), jnp.asarray(y))
    _close(np.asarray(ours).transpose(0, 3, 1, 2), expected)


@pytest.mark.parametrize("kind", ["iddpm", "edm"])
def test_dhariwal_unet_and_preconditioner_parity(kind):
    out = 6 if kind == "iddpm" else 3  # iDDPM's network also predicts a variance
    kwargs = {**TINY, **ADM, "out_channels": out}
    torch_net = TorchPrecond(TorchDhariwalUNet(**kwargs), kind)
    model = random_model(lambda: DhariwalUNet(**kwargs, dropout=0.0, rngs=nnx.Rngs(0)), 1)
    randomise_torch(torch_net, 7)
    assert load_edm_unet(model, _state_dict(torch_net)) == "model."
    wrap = IDDPMPrecond(model) if kind == "iddpm" else EDMPrecond(model)
    x, y = _inputs(2)
    sigma = np.array([0.2, 3.0], np.float32)
    with torch.no_grad():
        expected = torch_net(*(torch.from_numpy(a) for a in (x, sigma, y))).numpy()
        raw = torch_net.model(torch.from_numpy(x), torch.from_numpy(sigma), torch.from_numpy(y))
    ours = wrap.denoise(jnp.asarray(x.transpose(0, 2, 3, 1)), jnp.asarray(sigma), jnp.asarray(y))
    _close(np.asarray(ours).transpose(0, 3, 1, 2), expected)
    raw_ours = model(jnp.asarray(x.transpose(0, 2, 3, 1)), jnp.asarray(sigma), jnp.asarray(y))
    _close(np.asarray(raw_ours).transpose(0, 3, 1, 2), raw.numpy())


def test_export_loads_strictly_into_the_reference_and_round_trips():
    kwargs = {**TINY, **SONG, **SONG_VARIANTS["ncsnpp"]}
    model = random_model(lambda: SongUNet(**kwargs, dropout=0.0, rngs=nnx.Rngs(0)), 11)
    exported = export_edm_unet(model, prefix="model.")
    reference = TorchPrecond(TorchSongUNet(**kwargs), "ve")
    # strict: every upstream key (resample_filter buffers, map_noise.freqs) and nothing else.
    reference.load_state_dict({k: torch.tensor(v) for k, v in exported.items()}, strict=True)
    again = random_model(lambda: SongUNet(**kwargs, dropout=0.0, rngs=nnx.Rngs(0)), 12)
    load_edm_unet(again, exported)
    for key, value in export_edm_unet(again, prefix="model.").items():
        np.testing.assert_array_equal(value, exported[key], err_msg=key)  # exact copy


def test_wrong_filter_or_file_is_named():
    ddpm = {**TINY, **SONG}
    torch_net = TorchSongUNet(**{**ddpm, "resample_filter": (1, 3, 3, 1)})
    model = random_model(lambda: SongUNet(**ddpm, dropout=0.0, rngs=nnx.Rngs(0)), 0)
    with pytest.raises(ConversionError, match="resampling filter differs"):
        load_edm_unet(model, _state_dict(torch_net))
    with pytest.raises(ConversionError, match="map_layer0.weight"):
        load_edm_unet(model, {"unet.emb_noise.weight": np.zeros((2, 2))})
