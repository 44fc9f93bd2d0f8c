"""SD-VAE conversion: parity with diffusers' AutoencoderKL, old/new attention names, round trip.

The reference is a tiny AutoencoderKL (widths 16/32/32, one resnet per encoder level, 8 groups)
with every parameter drawn N(0, 0.2^2): three levels exercise both asymmetric downsamplers,
both upsamplers and the 1x1 shortcut convs in encoder and decoder.
"""

import functools
import json
import pathlib

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL
from flax import nnx
from safetensors.numpy import save_file

from nnx_nets import SDVAE
from nnx_weightconv import ConversionError, export_state_dict
from nnx_weightconv.specs.sd_vae import load_sd_vae, sd_vae_attention_names, sd_vae_rules

torch.set_num_threads(1)

WIDTHS, LAYERS, GROUPS = (16, 32, 32), 1, 8
CONFIG = {
    "block_out_channels": WIDTHS,
    "down_block_types": ("DownEncoderBlock2D",) * 3,
    "up_block_types": ("UpDecoderBlock2D",) * 3,
    "layers_per_block": LAYERS,
    "latent_channels": 4,
    "norm_num_groups": GROUPS,
    "sample_size": 16,
}
# fp32 parity: different summation orders only; measured max abs error ~1.5e-6 on outputs of
# magnitude ~2; a wrong padding side, shortcut or attention layout gives errors of order 1e-1.
ATOL = 2e-5
OLD_NAMES = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}


@pytest.fixture(scope="module")
def reference():
    model = AutoencoderKL(**CONFIG).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(0.2 * torch.randn(param.shape, generator=generator))
    state_dict = {k: v.numpy() for k, v in model.state_dict().items()}
    return model, state_dict


@functools.cache
def _abstract_model() -> SDVAE:
    return nnx.eval_shape(
        lambda: SDVAE(
            block_out_channels=WIDTHS,
            layers_per_block=LAYERS,
            norm_num_groups=GROUPS,
            rngs=nnx.Rngs(0),
        )
    )


def _abstract_vae() -> SDVAE:
    """A fresh abstract model (the constructor is traced once per module)."""
    return nnx.clone(_abstract_model())


def _to_old_names(state_dict: dict) -> dict:
    out = {}
    for key, value in state_dict.items():
        for new, old in OLD_NAMES.items():
            key = key.replace(f".attentions.0.{new}.", f".attentions.0.{old}.")
        out[key] = value
    return out


def _params(model) -> dict:
    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    return {".".join(map(str, path)): np.asarray(var.get_value()) for path, var in flat}


def test_parity_with_diffusers(reference):
    torch_model, state_dict = reference
    model = _abstract_vae()
    assert load_sd_vae(model, state_dict) == "new"
    rng = np.random.default_rng(1)
    images = rng.uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
    latents = rng.standard_normal((2, 4, 4, 4)).astype(np.float32)

    @nnx.jit
    def run(model, images, latents):
        posterior = model.encode(images)
        return posterior.mean, posterior.logvar, model.decode(latents)

    mean, logvar, decoded = run(model, jnp.asarray(images), jnp.asarray(latents))
    with torch.no_grad():
        posterior = torch_model.encode(torch.from_numpy(images.transpose(0, 3, 1, 2))).latent_dist
        ref_decoded = torch_model.decode(torch.from_numpy(latents.transpose(0, 3, 1, 2))).sample
    ref_mean = posterior.mean.numpy().transpose(0, 2, 3, 1)
    ref_logvar = posterior.logvar.numpy().transpose(0, 2, 3, 1)
    ref_decoded = ref_decoded.numpy().transpose(0, 2, 3, 1)
    for ref in (ref_mean, ref_logvar, ref_decoded):
        assert np.abs(ref).max() > 0.5  # not a comparison of near-zero tensors
    np.testing.assert_allclose(np.asarray(mean), ref_mean, atol=ATOL)
    np.testing.assert_allclose(np.asarray(logvar), ref_logvar, atol=ATOL)
    np.testing.assert_allclose(np.asarray(decoded), ref_decoded, atol=ATOL)


def test_old_attention_names_are_the_ones_diffusers_renames(reference, tmp_path):
    torch_model, state_dict = reference
    old = _to_old_names(state_dict)
    assert "encoder.mid_block.attentions.0.proj_attn.weight" in old
    # diffusers itself accepts this old-name file (it renames the deprecated attention keys
    # on load), so these are the names of the 2022 uploads it supports.
    save_file(
        {k: np.ascontiguousarray(v) for k, v in old.items()},
        str(tmp_path / "diffusion_pytorch_model.safetensors"),
    )
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL", **CONFIG}))
    reloaded = AutoencoderKL.from_pretrained(str(tmp_path)).eval()
    for key, value in torch_model.state_dict().items():
        np.testing.assert_array_equal(reloaded.state_dict()[key].numpy(), value.numpy())
    # ... and the spec loads it to the same parameters as the new names.
    new_model, old_model = _abstract_vae(), _abstract_vae()
    load_sd_vae(new_model, state_dict)
    assert load_sd_vae(old_model, old) == "old"
    new_params, old_params = _params(new_model), _params(old_model)
    for key, value in new_params.items():
        np.testing.assert_array_equal(old_params[key], value)


def test_round_trip_is_exact(reference):
    _, state_dict = reference
    model = _abstract_vae()
    load_sd_vae(model, state_dict)
    for names, source in [("new", state_dict), ("old", _to_old_names(state_dict))]:
        exported = export_state_dict(model, sd_vae_rules(model, attention_names=names))
        assert exported.keys() == source.keys()
        for key, value in source.items():
            np.testing.assert_array_equal(exported[key], value, err_msg=key)
        again = _abstract_vae()
        load_sd_vae(again, exported)
        reloaded = _params(again)
        for key, value in _params(model).items():
            np.testing.assert_array_equal(reloaded[key], value)


def test_wrong_checkpoint_fails_by_name(reference):
    _, state_dict = reference
    broken = dict(state_dict)
    del broken["decoder.up_blocks.2.resnets.0.conv_shortcut.bias"]
    broken["encoder.down_blocks.0.downsamplers.0.conv.weight"] = np.zeros((16, 16, 4, 4))
    broken["encoder.down_blocks.9.resnets.0.norm1.weight"] = np.zeros(3)
    with pytest.raises(ConversionError) as error:
        load_sd_vae(_abstract_vae(), broken)
    message = str(error.value)
    for key in (
        "decoder.up_blocks.2.resnets.0.conv_shortcut.bias",
        "encoder.down_blocks.0.downsamplers.0.conv.weight",
        "encoder.down_blocks.9.resnets.0.norm1.weight",
    ):
        assert key in message
    assert "(3, 3, 16, 16)" in message  # the expected kernel shape is named
    with pytest.raises(ConversionError, match="not a diffusers AutoencoderKL"):
        sd_vae_attention_names({"first_stage_model.encoder.conv_in.weight": np.zeros(1)})
    with pytest.raises(ValueError, match="unknown attention_names"):
        sd_vae_rules(_abstract_vae(), attention_names="ldm")


def test_sd_vae_ft_mse_key_set(reference):
    # The full-size preset's rule set covers exactly the keys of diffusers' default
    # sd-vae-ft-mse AutoencoderKL (built on the meta device: names and shapes only).
    from nnx_nets import sd_vae_from_preset

    with torch.device("meta"):
        full = AutoencoderKL(
            block_out_channels=(128, 256, 512, 512),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            layers_per_block=2,
            latent_channels=4,
            sample_size=256,
        )
    model = nnx.eval_shape(lambda: sd_vae_from_preset("sd-vae-ft-mse", rngs=nnx.Rngs(0)))
    rules = sd_vae_rules(model)
    assert {rule.source for rule in rules} == set(full.state_dict())
    params = _shapes(model)
    for rule in rules:
        torch_shape = tuple(full.state_dict()[rule.source].shape)
        assert rule.transform(np.zeros(torch_shape, np.float32)).shape == params[rule.target]


def _shapes(model) -> dict:
    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    return {".".join(map(str, path)): tuple(var.get_value().shape) for path, var in flat}


def test_state_dict_file_round_trip(reference, tmp_path):
    # The exported dict written as safetensors and read back by the io layer loads again.
    from nnx_weightconv import read_state_dict

    _, state_dict = reference
    model = _abstract_vae()
    load_sd_vae(model, state_dict)
    path = pathlib.Path(tmp_path) / "vae.safetensors"
    save_file(export_state_dict(model, sd_vae_rules(model)), str(path))
    again = _abstract_vae()
    assert load_sd_vae(again, read_state_dict(path)) == "new"
    np.testing.assert_array_equal(
        np.asarray(again.decoder.conv_out.kernel.get_value()),
        np.asarray(model.decoder.conv_out.kernel.get_value()),
    )
