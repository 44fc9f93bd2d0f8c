"""diffusers' DiTTransformer2DModel: parity, round trip, tied embedders, config mapping."""

import jax
import numpy as np
import pytest
import torch
from diffusers import DiTTransformer2DModel
from flax import nnx

from nnx_nets import DiT
from nnx_weightconv import ConversionError, export_state_dict, load_into
from nnx_weightconv.specs.diffusers_dit import (
    check_tied_copies,
    diffusers_dit_buffer_keys,
    diffusers_dit_rules,
    dit_kwargs_from_diffusers_config,
)

torch.set_num_threads(1)

DIFFUSERS_CFG = dict(
    num_attention_heads=2,
    attention_head_dim=16,
    in_channels=3,
    out_channels=6,
    num_layers=2,
    sample_size=8,
    patch_size=2,
    num_embeds_ada_norm=5,
)


def make_diffusers(norm_eps: float, seed: int = 0, tie: bool = True) -> DiTTransformer2DModel:
    """Random non-zero weights everywhere (adaLN-Zero layers included); with ``tie`` the
    per-block embedder copies are equal, as in checkpoints converted from DiT."""
    module = DiTTransformer2DModel(**DIFFUSERS_CFG, norm_eps=norm_eps).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=gen) * 0.2)
        if tie:
            first = module.transformer_blocks[0].norm1.emb
            for block in module.transformer_blocks[1:]:
                block.norm1.emb.load_state_dict(first.state_dict())
    return module


def numpy_state_dict(module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def new_dit(config) -> DiT:
    kwargs = dit_kwargs_from_diffusers_config(config)
    return nnx.eval_shape(lambda: DiT(**kwargs, rngs=nnx.Rngs(0)))


@nnx.jit
def forward(model, x, t, y):
    return model(x, t, y)


def inputs(batch: int = 3):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 8, 8, 3)).astype(np.float32)
    t = rng.uniform(0.0, 1.0, batch).astype(np.float32)
    y = np.array([0, 4, 5], np.int32)[:batch]  # 5 = the null label
    return x, t, y


def diffusers_forward(module, x, t, y):
    steps = torch.from_numpy(t * np.float32(1000.0))
    with torch.no_grad():
        out = module(
            torch.from_numpy(x).permute(0, 3, 1, 2),
            timestep=steps,
            class_labels=torch.from_numpy(y).long(),
        ).sample
    return out.permute(0, 2, 3, 1).numpy()


@pytest.fixture(scope="module")
def loaded():
    module = make_diffusers(norm_eps=1e-6)
    model = new_dit(module.config)
    sd = numpy_state_dict(module)
    rules = diffusers_dit_rules(model)
    check_tied_copies(sd, rules)
    load_into(model, sd, rules, ignore=diffusers_dit_buffer_keys(model))
    return module, model


def test_config_mapping():
    kwargs = dit_kwargs_from_diffusers_config(make_diffusers(1e-6).config)
    assert kwargs == dict(
        input_size=8,
        patch_size=2,
        in_channels=3,
        hidden_size=32,
        depth=2,
        num_heads=2,
        num_classes=5,
        learn_sigma=True,
        time_scale=1000.0,
        time_freq_shift=1.0,
    )
    with pytest.raises(ValueError, match="activation_fn"):
        dit_kwargs_from_diffusers_config({"activation_fn": "geglu"})


def test_parity_with_diffusers(loaded):
    module, model = loaded
    x, t, y = inputs()
    with jax.default_matmul_precision("highest"):
        ours = np.asarray(forward(model, x, t, y))
    ref = diffusers_forward(module, x, t, y)
    assert ours.shape == ref.shape == (3, 8, 8, 6)
    assert np.abs(ref).max() > 0.5  # far from zero: the comparison is not vacuous
    # fp32 both sides. Beyond summation order, torch and XLA evaluate sin/cos of time
    # arguments up to ~1000 rad (steps x frequency), where one float32 ulp of the argument
    # is ~6e-5 rad; measured: 1.4e-5 of max|ref|.
    err = np.abs(ours - ref).max()
    assert err < 5e-5 * max(1.0, np.abs(ref).max()), err


def test_parity_with_hub_norm_eps(loaded):
    """Hub configs keep diffusers' default norm_eps=1e-5 before the MLP (DiT: 1e-6).

    Same weights, eps 1e-5 in diffusers: the only change is x / sqrt(var + eps) in one norm
    per block, a relative change of (1e-5 - 1e-6) / (2 var). The residual stream of a DiT
    has var >= ~1, so this stays below the float32 time-embedding noise of the test above
    (measured: the same 1.4e-5 of max|ref| with either eps); the bound allows var ~ 0.1.
    """
    _, model = loaded
    module = make_diffusers(norm_eps=1e-5)
    x, t, y = inputs()
    with jax.default_matmul_precision("highest"):
        ours = np.asarray(forward(model, x, t, y))
    ref = diffusers_forward(module, x, t, y)
    scale = np.abs(ref).max()
    assert np.abs(ours - ref).max() < 1e-4 * scale


def test_round_trip_through_diffusers_is_exact(loaded):
    _, model = loaded
    rules = diffusers_dit_rules(model)
    exported = export_state_dict(model, rules)
    module = DiTTransformer2DModel(**DIFFUSERS_CFG, norm_eps=1e-6).eval()
    module.load_state_dict(
        {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in exported.items()}, strict=True
    )  # every diffusers key is written, copies included
    again = new_dit(module.config)
    load_into(again, numpy_state_dict(module), rules)
    flat_a = dict(nnx.state(model, nnx.Param).flat_state())
    flat_b = dict(nnx.state(again, nnx.Param).flat_state())
    for path in flat_a:
        np.testing.assert_array_equal(flat_a[path].get_value(), flat_b[path].get_value())


def test_untied_embedders_are_refused():
    module = make_diffusers(norm_eps=1e-6, tie=False)
    model = new_dit(module.config)
    with pytest.raises(ConversionError) as info:
        check_tied_copies(numpy_state_dict(module), diffusers_dit_rules(model))
    message = str(info.value)
    assert "transformer_blocks.1.norm1.emb.timestep_embedder.linear_1.weight" in message
    assert "transformer_blocks.1.norm1.emb.class_embedder.embedding_table.weight" in message


def test_incomplete_diffusers_checkpoint_names_keys(loaded):
    module, _ = loaded
    model = new_dit(module.config)
    sd = numpy_state_dict(module)
    del sd["transformer_blocks.1.attn1.to_v.bias"]
    sd["proj_out_2.weight"] = sd["proj_out_2.weight"][:12]
    with pytest.raises(ConversionError) as info:
        load_into(model, sd, diffusers_dit_rules(model))
    message = str(info.value)
    assert "transformer_blocks.1.attn1.to_v.bias" in message
    assert "proj_out_2.weight -> final_layer.linear.kernel: checkpoint gives (32, 12)" in message
    assert model.final_layer.linear.kernel.get_value().shape == (32, 24)  # nothing written
