"""RAE decoder conversion: parity with diffusers' RAEDecoder (ported from RAE-main), both key
layouts, the stored sin-cos table check, round trip, and the latent statistics file.

The reference is a tiny decoder (width 32, 2 layers, 2 heads, MLP 64) on RAE's 16 x 16 latent
grid of width 24, with 2 x 2 output patches, every parameter drawn N(0, 0.3^2). The grid is the
real one because diffusers' sin-cos helper rescales positions by 16 / grid for other grids.
"""

import functools

import numpy as np
import pytest
import torch
from diffusers.models.autoencoders.autoencoder_rae import RAEDecoder as TorchRAEDecoder
from flax import nnx

from nnx_nets import IMAGENET_MEAN, IMAGENET_STD, LatentNormalizer, RAEDecoder
from nnx_weightconv import ConversionError, export_state_dict, read_state_dict
from nnx_weightconv.specs.rae_decoder import (
    export_rae_decoder,
    load_rae_decoder,
    rae_decoder_layout,
    rae_decoder_rules,
    rae_latent_stats,
)

torch.set_num_threads(1)

HIDDEN, DEPTH, HEADS, MLP, LATENT, GRID, PATCH = 32, 2, 2, 64, 24, 16, 2
# fp32 parity: summation order only; measured max abs error ~1e-6 on outputs of magnitude ~3.
ATOL = 2e-5
RAE_ATTENTION = {
    "attention.to_q.": "attention.attention.query.",
    "attention.to_k.": "attention.attention.key.",
    "attention.to_v.": "attention.attention.value.",
    "attention.to_out.0.": "attention.output.dense.",
}


def _torch_decoder() -> TorchRAEDecoder:
    return TorchRAEDecoder(
        hidden_size=LATENT,
        decoder_hidden_size=HIDDEN,
        decoder_num_hidden_layers=DEPTH,
        decoder_num_attention_heads=HEADS,
        decoder_intermediate_size=MLP,
        num_patches=GRID * GRID,
        patch_size=PATCH,
        image_size=GRID * PATCH,
    )


@pytest.fixture(scope="module")
def reference():
    model = _torch_decoder().eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(0.3 * torch.randn(param.shape, generator=generator))
    return model, {k: v.numpy() for k, v in model.state_dict().items()}


@functools.cache
def _abstract_model() -> RAEDecoder:
    return nnx.eval_shape(
        lambda: RAEDecoder(
            hidden_size=HIDDEN,
            depth=DEPTH,
            num_heads=HEADS,
            intermediate_size=MLP,
            latent_dim=LATENT,
            grid_size=GRID,
            patch_size=PATCH,
            rngs=nnx.Rngs(0),
        )
    )


def _abstract_decoder() -> RAEDecoder:
    """A fresh abstract model (the constructor is traced once per module)."""
    return nnx.clone(_abstract_model())


def _rae_layout(state_dict: dict, pos_embed: np.ndarray) -> dict:
    """RAE-main's model.pt names (transformers-4 ViT-MAE layers) for the same weights."""
    out = {}
    for key, value in state_dict.items():
        for new, old in RAE_ATTENTION.items():
            key = key.replace(new, old)
        out[key] = value
    out["decoder_pos_embed"] = pos_embed
    return out


def _params(model) -> dict:
    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    return {".".join(map(str, path)): np.asarray(var.get_value()) for path, var in flat}


@nnx.jit
def _decode(model, latents):
    return model.predict_patches(latents), model(latents)


def test_parity_with_diffusers_rae_decoder(reference):
    torch_model, state_dict = reference
    model = _abstract_decoder()
    assert load_rae_decoder(model, state_dict) == "diffusers"
    latents = np.random.default_rng(1).standard_normal((2, GRID, GRID, LATENT)).astype(np.float32)
    patches, images = _decode(model, latents)
    with torch.no_grad():
        # RAE decodes tokens taken row-major from the (h, w) grid.
        logits = torch_model(torch.from_numpy(latents.reshape(2, GRID * GRID, LATENT))).logits
        pixels = torch_model.unpatchify(logits).numpy().transpose(0, 2, 3, 1)
    assert np.abs(logits.numpy()).max() > 0.5
    np.testing.assert_allclose(np.asarray(patches), logits.numpy(), atol=ATOL)
    expected = 2 * (pixels * np.array(IMAGENET_STD) + np.array(IMAGENET_MEAN)) - 1
    np.testing.assert_allclose(np.asarray(images), expected, atol=ATOL)
    # The fixed table equals the buffer diffusers builds.
    np.testing.assert_allclose(model.pos_embed(), torch_model.decoder_pos_embed.numpy(), atol=1e-6)


def test_rae_layout_names_match_transformers_vit_mae(reference, tmp_path):
    # RAE-main's decoder layers are transformers-4 ViTMAELayer modules: the per-layer key
    # suffixes of a ViT-MAE hub file are exactly the ones the "rae" layout reads. (Encoder and
    # decoder layers of ViT-MAE are the same class; transformers 5 writes the decoder's under
    # a mangled "decoder_encoder.layer" prefix, so the encoder's are compared.)
    from transformers import ViTMAEConfig, ViTMAEForPreTraining

    config = ViTMAEConfig(
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        decoder_hidden_size=16,
        decoder_num_hidden_layers=1,
        decoder_num_attention_heads=2,
        decoder_intermediate_size=32,
        image_size=8,
        patch_size=4,
    )
    ViTMAEForPreTraining(config).save_pretrained(tmp_path)
    file_keys = read_state_dict(tmp_path / "model.safetensors")
    prefix = "vit.encoder.layer.0."
    vit_mae = {k[len(prefix) :] for k in file_keys if k.startswith(prefix)}
    rules = rae_decoder_rules(_abstract_decoder(), layout="rae")
    ours = {
        r.source[len("decoder_layers.0.") :]
        for r in rules
        if r.source.startswith("decoder_layers.0.")
    }
    assert ours == vit_mae


def test_both_layouts_and_prefix_load_the_same_parameters(reference):
    torch_model, state_dict = reference
    expected = _abstract_decoder()
    load_rae_decoder(expected, state_dict)
    rae = _rae_layout(state_dict, torch_model.decoder_pos_embed.numpy())
    bundle = {f"decoder.{k}": v for k, v in state_dict.items()}
    bundle.update({"encoder.embeddings.cls_token": np.zeros((1, 1, 8)), "_latents_std": np.ones(1)})
    for source, layout in [(rae, "rae"), (bundle, "diffusers")]:
        model = _abstract_decoder()
        assert load_rae_decoder(model, source) == layout
        loaded = _params(model)
        for key, value in _params(expected).items():
            np.testing.assert_array_equal(loaded[key], value, err_msg=f"{layout}: {key}")
    assert rae_decoder_layout(bundle) == ("diffusers", "decoder.")


def test_round_trip_is_exact(reference):
    torch_model, state_dict = reference
    model = _abstract_decoder()
    load_rae_decoder(model, state_dict)
    rae = _rae_layout(state_dict, torch_model.decoder_pos_embed.numpy())
    for layout, source in [("diffusers", state_dict), ("rae", rae)]:
        exported = export_rae_decoder(model, layout=layout)
        assert exported.keys() == source.keys()
        for key, value in source.items():
            tolerance = 1e-6 if key == "decoder_pos_embed" else 0.0  # float32 vs float64 table
            np.testing.assert_allclose(exported[key], value, atol=tolerance, rtol=0, err_msg=key)
        again = _abstract_decoder()
        load_rae_decoder(again, exported)
        reloaded = _params(again)
        for key, value in _params(model).items():
            np.testing.assert_array_equal(reloaded[key], value)
    # A torch model accepts the export with strict key checking.
    torch_again = _torch_decoder()
    exported = export_state_dict(model, rae_decoder_rules(model, layout="diffusers"))
    torch_again.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in exported.items()})


def test_wrong_checkpoint_fails_by_name(reference):
    torch_model, state_dict = reference
    rae = _rae_layout(state_dict, torch_model.decoder_pos_embed.numpy())
    broken = dict(rae)
    del broken["decoder_layers.1.output.dense.bias"]
    broken["decoder_pred.weight"] = np.zeros((3 * PATCH * PATCH, HIDDEN + 1))
    broken["decoder_layers.5.layernorm_before.weight"] = np.zeros(HIDDEN)
    with pytest.raises(ConversionError) as error:
        load_rae_decoder(_abstract_decoder(), broken)
    message = str(error.value)
    for key in (
        "decoder_layers.1.output.dense.bias",
        "decoder_pred.weight",
        "decoder_layers.5.layernorm_before.weight",
    ):
        assert key in message
    shifted = dict(rae, decoder_pos_embed=rae["decoder_pos_embed"] + 0.01)
    with pytest.raises(ConversionError, match="decoder_pos_embed: the stored position table"):
        load_rae_decoder(_abstract_decoder(), shifted)
    small = dict(rae, decoder_pos_embed=rae["decoder_pos_embed"][:, :65])
    with pytest.raises(ConversionError, match="another latent grid"):
        load_rae_decoder(_abstract_decoder(), small)
    with pytest.raises(ConversionError, match="subkey='ema'"):
        rae_decoder_layout({"ema.decoder_embed.weight": np.zeros(1)})


def test_latent_statistics_file(tmp_path):
    # RAE's stat.pt: {"mean": None, "var": [C, H, W]}, read through the io layer.
    rng = np.random.default_rng(2)
    var = rng.uniform(0.005, 9.0, (LATENT, 4, 4)).astype(np.float32)
    torch.save({"mean": None, "var": torch.from_numpy(var)}, tmp_path / "stat.pt")
    read_var, read_mean = rae_latent_stats(read_state_dict(tmp_path / "stat.pt"))
    assert read_mean is None
    normalizer = LatentNormalizer.from_chw(read_var, read_mean)
    z = rng.standard_normal((1, LATENT, 4, 4)).astype(np.float32)
    expected = z / np.sqrt(var + 1e-5)  # RAE: (z - 0) / sqrt(var + eps), NCHW
    out = np.asarray(normalizer.normalize(z.transpose(0, 2, 3, 1)))
    np.testing.assert_allclose(out, expected.transpose(0, 2, 3, 1), rtol=1e-6)
    with pytest.raises(ConversionError, match="no 'var' entry"):
        rae_latent_stats({"mean": np.zeros(1)})
