"""Linen interop: every network runs from flax.linen with the same weights and outputs.

Each tiny network gets random non-zero values in every variable (a fresh DiT would output
exactly zero: adaLN-Zero). Its linen form, run by ``jax.jit(apply)``, must give the same bits
as the NNX network run by ``jax.jit``: tolerance 0, because ``apply`` executes the same NNX
code on the same arrays, so XLA compiles the same operations in the same order (were the two
programs fused differently, fp32 rounding would show as ~1e-6 differences; none is seen, with
these fast compile options or XLA's defaults). "Far from zero" is an output RMS above 1e-2
(weights ~ N(0, 0.3^2) give RMS of order 0.1 to 1).
Weight conversion moves arrays without arithmetic, so round trips are checked with
``np.array_equal`` on every leaf and identical tree paths.
"""

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen, nnx

from nnx_nets import (
    SDVAE,
    DiagonalGaussian,
    DINOv2,
    DiT,
    DiTDH,
    EDM2Block,
    EDM2UNet,
    LightningDiT,
    LinenNetwork,
    MeanFlowDiT,
    RAEDecoder,
    as_linen,
    force_weight_normalization,
    linen_variables_from_nnx,
    nnx_from_linen_variables,
    sd_vae_from_preset,
)

_RNG = np.random.default_rng(0)
# Compilation is most of this file's time: the suite's XLA_FLAGS (set by the conftest through
# nnx_nets.testing.configure_cpu_tests) give every program cheap XLA:CPU code generation (only
# the flags the installed XLA knows). Both forms compile under the same flags, so the
# comparisons are between identical compilers.
_TRUNK = dict(patch_size=2, in_channels=3, hidden_size=32, num_heads=2, num_classes=5)


def _normal(*shape, scale=1.0):
    # Cast on the host: a device-side cast would compile once per shape.
    return jnp.asarray((scale * _RNG.standard_normal(shape)).astype(np.float32))


def _dit_inputs(size=8):
    return _normal(2, size, size, 3), jnp.array([0.3, 0.8]), jnp.array([1, 5])  # 5: null


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity (cache key)
class Case:
    """A tiny network, the inputs of one entry point and its keyword options."""

    network: Callable[..., nnx.Module]
    kwargs: dict[str, Any]
    inputs: Callable[[], tuple]
    method: str | None = None
    options: dict[str, Any] = dataclasses.field(default_factory=dict)


LIGHTNING = Case(LightningDiT, dict(_TRUNK, input_size=8, depth=1), _dit_inputs)
"""Its forward parity is checked with its gradients (test_jitted_gradient_...)."""

CASES = {
    "DiT": Case(
        DiT,
        dict(_TRUNK, input_size=8, depth=1, learn_sigma=True),
        _dit_inputs,
        options={"return_features": True},
    ),
    "MeanFlowDiT": Case(
        MeanFlowDiT,
        dict(_TRUNK, input_size=8, depth=1),
        lambda: (
            _normal(2, 8, 8, 3),
            jnp.array([0.1, 0.5]),
            jnp.array([0.3, 0.8]),
            jnp.array([1, 5]),
        ),
    ),
    "DiTDH": Case(
        DiTDH,
        dict(
            _TRUNK,
            input_size=4,
            patch_size=1,
            depth=1,
            head_hidden_size=48,
            head_depth=1,
            head_num_heads=2,
        ),
        lambda: _dit_inputs(4),
    ),
    "DINOv2": Case(
        DINOv2,
        dict(
            hidden_size=32, depth=2, num_heads=2, patch_size=4, image_size=16, num_register_tokens=4
        ),
        lambda: (_normal(2, 16, 16, 3),),
        options={"intermediate_layers": (1,)},
    ),
    "SDVAE": Case(  # encode, posterior mode, decode: every weight of both halves
        SDVAE,
        dict(block_out_channels=(8,), layers_per_block=1, norm_num_groups=4),
        lambda: (_normal(2, 8, 8, 3),),
    ),
    "RAEDecoder": Case(
        RAEDecoder,
        dict(
            hidden_size=16,
            depth=1,
            num_heads=2,
            intermediate_size=32,
            latent_dim=8,
            grid_size=4,
            patch_size=2,
        ),
        lambda: (_normal(2, 4, 4, 8),),
        method="predict_patches",  # linen's method= by name, with a keyword option
        options={"return_features": True},
    ),
    "EDM2UNet": Case(
        EDM2UNet,
        dict(
            img_resolution=8,
            img_channels=3,
            num_classes=10,
            model_channels=16,
            channel_mult=(1,),
            num_blocks=1,
            attn_resolutions=(8,),
            channels_per_head=8,
        ),
        lambda: (_normal(2, 8, 8, 3), jnp.array([-0.5, 0.7]), jnp.array([3, 10])),  # 10: null
    ),
}


def random_network(case: Case) -> nnx.Module:
    """A fresh copy of the case's network with random non-zero values in every variable."""
    graphdef, state = _random_state(case)
    return nnx.merge(graphdef, state, copy=True)


@functools.cache
def _random_state(case: Case, scale: float = 0.3):
    # Built abstractly (no initialiser compiles) and filled from a host RNG; cached because
    # tracing a constructor costs about a second and several tests use the same network.
    model = nnx.eval_shape(lambda: case.network(**case.kwargs, rngs=nnx.Rngs(0)))
    for _, variable in nnx.to_flat_state(nnx.state(model, nnx.Not(nnx.RngState))):
        variable.set_value(_normal(*variable.get_value().shape, scale=scale))
    return nnx.split(model)


def flat(tree) -> dict:
    return {
        jax.tree_util.keystr(path): leaf for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
    }


def assert_trees_equal(actual, expected):
    actual, expected = flat(actual), flat(expected)
    assert list(actual) == list(expected)  # same paths, same order
    for path in expected:
        assert np.array_equal(actual[path], expected[path]), path


def assert_round_trips(case: Case, model: nnx.Module) -> None:
    """NNX -> linen -> NNX and linen -> NNX -> linen are exact, with the same tree paths."""
    variables = linen_variables_from_nnx(model)
    rebuilt = nnx_from_linen_variables(case.network, variables, **case.kwargs)
    assert_trees_equal(nnx.state(rebuilt), nnx.state(model))
    assert_trees_equal(linen_variables_from_nnx(rebuilt), variables)
    linen_model = as_linen(case.network, **case.kwargs)
    assert_trees_equal(
        linen_variables_from_nnx(nnx_from_linen_variables(linen_model, variables)), variables
    )


@pytest.mark.parametrize("name", list(CASES))
def test_linen_apply_equals_nnx_call_and_weights_round_trip(name):
    case = CASES[name]
    inputs = case.inputs()
    model = random_network(case)
    variables = linen_variables_from_nnx(model)
    linen_model = as_linen(case.network, **case.kwargs)

    # Same outputs, bit for bit (see the module docstring for the zero tolerance).
    def linen_forward(variables, *inputs):
        return linen_model.apply(variables, *inputs, method=case.method, **case.options)

    graphdef, state = nnx.split(model)

    def nnx_forward(state, *inputs):
        network = nnx.merge(graphdef, state)
        return getattr(network, case.method or "__call__")(*inputs, **case.options)

    linen_out = jax.jit(linen_forward)(variables, *inputs)
    nnx_out = jax.jit(nnx_forward)(state, *inputs)
    assert_trees_equal(linen_out, nnx_out)
    for leaf in jax.tree.leaves(nnx_out):
        assert float(jnp.sqrt(jnp.mean(jnp.square(leaf)))) > 1e-2  # far from zero

    assert_round_trips(case, model)


def test_factories_method_names_and_use_as_a_linen_submodule():
    # A preset factory works like a class (the preset name bound with functools.partial);
    # linen's method="decode" and nnx_method="encode" resolve through its return type.
    vae = as_linen(
        functools.partial(sd_vae_from_preset, "sd-vae-ft-mse"),
        block_out_channels=(8,),
        layers_per_block=1,
        norm_num_groups=4,
    )
    assert isinstance(vae, LinenNetwork) and isinstance(vae, linen.Module)
    latents = jnp.zeros((1, 4, 4, 4))
    decode = functools.partial(vae.init_with_output, method="decode")
    assert jax.eval_shape(decode, jax.random.key(0), latents)[0].shape == (1, 4, 4, 3)
    encode = functools.partial(vae.init_with_output, nnx_method="encode")
    posterior = jax.eval_shape(encode, jax.random.key(0), jnp.zeros((1, 4, 4, 3)))[0]
    assert isinstance(posterior, DiagonalGaussian) and posterior.mean.shape == (1, 4, 4, 4)


def test_jitted_init_inside_a_linen_model_draws_the_nnx_initialisation():
    # Variables nest under the attribute name; NNX methods are reachable as attributes.
    case = CASES["RAEDecoder"]

    class PatchHead(linen.Module):
        def setup(self):
            self.decoder = as_linen(case.network, **case.kwargs)
            self.head = linen.Dense(3)

        def __call__(self, latents):
            return self.head(self.decoder.predict_patches(latents))

    init = jax.jit(PatchHead().init)
    latents = case.inputs()[0]
    variables, again = init(jax.random.key(0), latents), init(jax.random.key(0), latents)
    other = init(jax.random.key(1), latents)
    assert_trees_equal(variables, again)  # reproducible from the key
    layout = linen_variables_from_nnx(random_network(case))["params"]
    decoder = variables["params"]["decoder"]
    assert jax.tree.map(jnp.shape, decoder) == jax.tree.map(jnp.shape, layout)
    assert variables["params"]["head"]["kernel"].shape == (12, 3)  # patch 2 x 2 x 3 channels
    kernel = decoder["layers"]["0"]["fc1"]["kernel"]
    other_kernel = other["params"]["decoder"]["layers"]["0"]["fc1"]["kernel"]
    assert not np.array_equal(kernel, other_kernel)
    # The NNX initialiser ran: Xavier-uniform (RAE's ViT-MAE decoder) of a (16, 32) kernel has
    # bound sqrt(6 / 48) ~ 0.354, and 512 draws reach past 0.25; biases are zero.
    assert 0.25 < float(jnp.max(jnp.abs(kernel))) <= np.sqrt(6 / 48)
    np.testing.assert_array_equal(decoder["layers"]["0"]["fc1"]["bias"], 0.0)


def test_jitted_gradient_of_linen_params_equals_nnx_gradient():
    # LightningDiT's forward parity is checked here, with its gradients: the same backward
    # program on the same arrays, so outputs and gradients agree bit for bit.
    case = LIGHTNING
    model = random_network(case)
    params = linen_variables_from_nnx(model)["params"]
    linen_model = as_linen(case.network, **case.kwargs)
    x, t, y = case.inputs()

    def loss_linen(params):
        out = linen_model.apply({"params": params}, x, t, y)
        return jnp.mean(jnp.square(out)), out

    (loss, out), grads = jax.jit(jax.value_and_grad(loss_linen, has_aux=True))(params)
    graphdef, state = nnx.split(model)

    def loss_nnx(state):
        out = nnx.merge(graphdef, state)(x, t, y)
        return jnp.mean(jnp.square(out)), out

    (nnx_loss, nnx_out), nnx_grads = jax.jit(jax.value_and_grad(loss_nnx, has_aux=True))(state)
    np.testing.assert_array_equal(out, nnx_out)
    assert float(loss) == float(nnx_loss) > 1e-2
    assert_trees_equal(grads, linen_variables_from_nnx(nnx.merge(graphdef, nnx_grads))["params"])
    assert all(float(jnp.max(jnp.abs(g))) > 0 for g in jax.tree.leaves(grads))
    assert_round_trips(case, model)


def test_bad_variables_name_the_missing_unexpected_and_misshaped_paths():
    case = CASES["RAEDecoder"]
    variables = linen_variables_from_nnx(random_network(case))
    linen_model = as_linen(case.network, **case.kwargs)
    latents = case.inputs()[0]
    params = dict(variables["params"])
    del params["pred"]
    with pytest.raises(ValueError, match="2 missing, 0 unexpected") as error:
        linen_model.apply({"params": params}, latents)
    assert "missing: params/pred/bias" in str(error.value)
    assert "missing: params/pred/kernel" in str(error.value)
    params["extra"] = {"kernel": jnp.ones((2, 2))}
    with pytest.raises(ValueError, match="unexpected: params/extra/kernel"):
        nnx_from_linen_variables(case.network, {"params": params}, **case.kwargs)
    params = dict(variables["params"], cls_token=jnp.ones((1, 1, 17)))
    with pytest.raises(ValueError, match=r"cls_token: got \(1, 1, 17\), expected \(1, 1, 16\)"):
        linen_model.apply({"params": params}, latents)
    with pytest.raises(ValueError, match="has no method 'decode_patches'"):
        linen_model.apply(variables, latents, nnx_method="decode_patches")
    with pytest.raises(ValueError, match="do not pass rngs"):
        as_linen(RAEDecoder, rngs=nnx.Rngs(0))


def test_edm2_fixed_buffers_and_forced_weight_normalization():
    case = CASES["EDM2UNet"]
    model = random_network(case)
    variables = linen_variables_from_nnx(model)
    assert set(variables) == {"params", "FixedBuffer"}  # fixed Fourier tables travel too
    inputs = case.inputs()
    with pytest.raises(ValueError, match="missing: FixedBuffer/emb_fourier/freqs"):
        as_linen(EDM2UNet, **case.kwargs).apply({"params": variables["params"]}, *inputs)

    # Forced weight normalisation (EDM2 Eq. 66) from linen: a method that updates params.
    linen_model = as_linen(EDM2UNet, **case.kwargs)
    _, updated = jax.jit(
        lambda v: linen_model.apply(v, nnx_method=force_weight_normalization, mutable=["params"]),
    )(variables)
    graphdef, state = nnx.split(model)

    def normalized(state):
        network = nnx.merge(graphdef, state)
        force_weight_normalization(network)
        return nnx.state(network)

    state = jax.jit(normalized)(state)
    expected = linen_variables_from_nnx(nnx.merge(graphdef, state))["params"]
    assert_trees_equal(updated["params"], expected)
    assert not np.array_equal(
        expected["out_conv"]["weight"], variables["params"]["out_conv"]["weight"]
    )


def test_dropout_draws_from_the_linen_dropout_stream():
    # One EDM2 block (as_linen wraps building blocks too) with dropout 0.5.
    case = Case(
        EDM2Block,
        dict(in_channels=8, out_channels=8, emb_channels=8, dropout=0.5),
        lambda: (_normal(2, 4, 4, 8), _normal(2, 8)),
    )
    variables = linen_variables_from_nnx(random_network(case))
    inputs = case.inputs()
    dropping = as_linen(case.network, **case.kwargs)
    with pytest.raises(ValueError, match=r"RNG stream\(s\) \['dropout'\]"):
        dropping.apply(variables, *inputs)
    apply = jax.jit(
        lambda key: dropping.apply(variables, *inputs, rngs={"dropout": key}),
    )
    first, again, other = (
        apply(jax.random.key(1)),
        apply(jax.random.key(1)),
        apply(jax.random.key(2)),
    )
    np.testing.assert_array_equal(first, again)  # reproducible from the key
    assert float(jnp.max(jnp.abs(first - other))) > 1e-2  # and a different key drops others
    # In NNX form the dropout stream is seeded from the given rngs, never left abstract.
    network = nnx_from_linen_variables(dropping, variables, rngs=nnx.Rngs(dropout=3))
    assert isinstance(network.dropout.rngs.key.get_value(), jax.Array)
    # The parameters are those of the block without dropout: one checkpoint for both.
    plain = as_linen(case.network, **dict(case.kwargs, dropout=0.0))
    out = jax.jit(plain.apply)(variables, *inputs)
    assert float(jnp.max(jnp.abs(out - first))) > 1e-2
