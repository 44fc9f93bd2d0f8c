"""tools/convert_checkpoint.py for the vision networks: DINOv2 with registers, SD-VAE, RAE decoder.

Each case writes a tiny random checkpoint the way it is published (transformers
``save_pretrained``, a diffusers ``AutoencoderKL`` file with the 2022 attention names, an RAE
``model.pt``), runs the CLI's ``main()`` in-process, restores the orbax checkpoint into a fresh
abstract model and compares outputs. Tolerances: against torch, float32 with different
summation orders (measured max abs error ~1e-6 on outputs of magnitude ~1, so 2e-5 leaves
margin while any wrong weight gives errors of order 1e-1); NNX against NNX with identical
weights, exact.
"""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy
import torch
from diffusers import AutoencoderKL
from flax import nnx
from transformers import Dinov2WithRegistersConfig, Dinov2WithRegistersModel
from weightconv_testlib import randomise_torch

from nnx_nets import SDVAE, DINOv2, RAEDecoder
from nnx_weightconv import (
    dinov2_kwargs_from_transformers_config,
    export_rae_decoder,
    export_state_dict,
    restore_orbax,
    sd_vae_kwargs_from_diffusers_config,
    sd_vae_rules,
)

torch.set_num_threads(1)

ATOL = 2e-5
OLD_NAMES = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}


def _restored(cls, kwargs: dict, directory: pathlib.Path):
    model = nnx.eval_shape(lambda: cls(**kwargs, rngs=nnx.Rngs(1)))
    restore_orbax(model, directory)
    return model


def test_dinov2_with_registers_from_transformers_files(tool, tmp_path, capsys):
    config = Dinov2WithRegistersConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=16,
        patch_size=4,
        num_register_tokens=4,
    )
    reference = Dinov2WithRegistersModel(config).eval()
    randomise_torch(reference, seed=0, scale=0.3)
    reference.save_pretrained(tmp_path / "hf")
    files = [str(tmp_path / "hf" / "model.safetensors"), str(tmp_path / "out")]
    config_flag = ["--config", str(tmp_path / "hf" / "config.json")]
    assert tool.main([*files, "--arch", "dinov2_reg", *config_flag]) == 0
    assert "DINOv2(" in capsys.readouterr().out

    kwargs = dinov2_kwargs_from_transformers_config(
        json.loads((tmp_path / "hf" / "config.json").read_text())
    )
    assert kwargs["num_register_tokens"] == 4 and kwargs["image_size"] == 16
    model = _restored(DINOv2, kwargs, tmp_path / "out")
    images = np.random.default_rng(1).standard_normal((2, 16, 16, 3)).astype(np.float32)
    ours = nnx.jit(lambda m, x: m(x))(model, jnp.asarray(images))
    with torch.no_grad():
        ref = reference(pixel_values=torch.from_numpy(images.transpose(0, 3, 1, 2)))
    hidden = ref.last_hidden_state.numpy()
    assert np.abs(hidden).max() > 0.5
    np.testing.assert_allclose(ours["cls"], hidden[:, 0], atol=ATOL)
    np.testing.assert_allclose(ours["register_tokens"], hidden[:, 1:5], atol=ATOL)
    np.testing.assert_allclose(ours["patch_tokens"], hidden[:, 5:], atol=ATOL)

    # The same files under --arch dinov2 are a usage error that names the fix.
    with pytest.raises(SystemExit) as info:
        tool.main([*files, "--arch", "dinov2", *config_flag])
    assert info.value.code == 2
    assert "use --arch dinov2_reg" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny_vae():
    """A random diffusers AutoencoderKL and its state dict with the old attention names."""
    vae = AutoencoderKL(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1,
        norm_num_groups=4,
    ).eval()
    randomise_torch(vae, seed=2, scale=0.2)
    old = {}
    for key, value in vae.state_dict().items():
        for new, name in OLD_NAMES.items():
            key = key.replace(f".attentions.0.{new}.", f".attentions.0.{name}.")
        old[key] = value.numpy()
    return vae, old


def test_sd_vae_with_old_attention_names_from_diffusers_files(tool, tmp_path, tiny_vae):
    vae, state_dict = tiny_vae
    assert "encoder.mid_block.attentions.0.query.weight" in state_dict
    vae.save_config(tmp_path)
    safetensors.numpy.save_file(state_dict, tmp_path / "vae.safetensors")
    flags = ["--arch", "sd_vae", "--config", str(tmp_path / "config.json")]
    assert tool.main([str(tmp_path / "vae.safetensors"), str(tmp_path / "out"), *flags]) == 0

    kwargs = sd_vae_kwargs_from_diffusers_config(json.loads((tmp_path / "config.json").read_text()))
    model = _restored(SDVAE, kwargs, tmp_path / "out")
    # Every tensor arrived: exporting with the old names gives the file back bit for bit.
    exported = export_state_dict(model, sd_vae_rules(model, attention_names="old"))
    assert exported.keys() == state_dict.keys()
    for key, value in state_dict.items():
        np.testing.assert_array_equal(exported[key], value, err_msg=key)
    images = np.random.default_rng(3).standard_normal((1, 8, 8, 3)).astype(np.float32)
    with jax.default_matmul_precision("highest"):
        ours = nnx.jit(lambda m, x: m.encode(x).mean)(model, jnp.asarray(images))
    with torch.no_grad():
        ref = vae.encode(torch.from_numpy(images.transpose(0, 3, 1, 2))).latent_dist.mean
    ref = ref.numpy().transpose(0, 2, 3, 1)
    assert np.abs(ref).max() > 0.1
    np.testing.assert_allclose(ours, ref, atol=ATOL)


def test_rae_decoder_from_a_torch_file(tool, tmp_path):
    kwargs = dict(
        hidden_size=16,
        depth=1,
        num_heads=2,
        intermediate_size=32,
        latent_dim=8,
        grid_size=2,
        patch_size=2,
    )
    source = nnx.eval_shape(lambda: RAEDecoder(**kwargs, rngs=nnx.Rngs(0)))
    rng = np.random.default_rng(4)
    for _, var in nnx.state(source, nnx.Param).flat_state():
        var.set_value(jnp.asarray(0.3 * rng.standard_normal(var.get_value().shape), jnp.float32))
    weights = {
        k: torch.from_numpy(np.array(v))
        for k, v in export_rae_decoder(source, layout="rae").items()
    }
    torch.save(weights, tmp_path / "model.pt")
    flags = "--arch rae_decoder --hidden-size 16 --depth 1 --num-heads 2 --intermediate-size 32"
    sizes = "--in-channels 8 --input-size 2 --patch-size 2"
    argv = [str(tmp_path / "model.pt"), str(tmp_path / "out"), *flags.split(), *sizes.split()]
    assert tool.main(argv) == 0
    model = _restored(RAEDecoder, kwargs, tmp_path / "out")
    latents = jnp.asarray(rng.standard_normal((2, 2, 2, 8)), jnp.float32)
    ours, theirs = nnx.jit(lambda a, b, z: (a(z), b(z)))(model, source, latents)
    assert float(jnp.abs(theirs).max()) > 0.5
    np.testing.assert_array_equal(ours, theirs)


def test_bad_vae_checkpoint_names_every_key_and_writes_nothing(tool, tmp_path, tiny_vae, capsys):
    vae, state_dict = tiny_vae
    bad = dict(state_dict)
    del bad["decoder.conv_out.bias"]
    bad["encoder.conv_in.weight"] = bad["encoder.conv_in.weight"][:4]
    bad["encoder.extra.weight"] = np.ones(3, np.float32)
    vae.save_config(tmp_path)
    safetensors.numpy.save_file(bad, tmp_path / "bad.safetensors")
    flags = ["--arch", "sd_vae", "--config", str(tmp_path / "config.json")]
    assert tool.main([str(tmp_path / "bad.safetensors"), str(tmp_path / "never"), *flags]) == 1
    err = capsys.readouterr().err
    assert "missing in checkpoint (1): decoder.conv_out.bias" in err
    assert "encoder.conv_in.weight -> encoder.conv_in.kernel: checkpoint gives (3, 3, 3, 4)" in err
    assert "unexpected in checkpoint (1): encoder.extra.weight" in err
    assert not (tmp_path / "never").exists()
