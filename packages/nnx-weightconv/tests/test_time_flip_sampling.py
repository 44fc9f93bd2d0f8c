"""convert -> sample for a checkpoint trained with t = 1 as data (SiT): no user code.

The source network is the official-layout ``TorchDiT`` (SiT's ``models.py`` is DiT's with a
continuous time in [0, 1]), with random weights and ``learn_sigma=True``. The reference is
SiT's own ODE loop written here: Euler on ``linspace(0, 1, N + 1)`` from noise at ``s = 0`` to
data at ``s = 1`` with the velocity ``u = model(x, s, y)[:, :C]`` (``transport/transport.py``
``ODE`` with ``sampling_method="euler"``; ``forward`` drops the sigma half). Ours: the CLI
converts with ``--arch sit``, ``sampling.json`` names the adapters, and nnx-samplers' Euler
runs on ``UniformGrid(N)`` from ``t = 1`` to 0 on the same noise.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy
import torch
from flax import nnx
from test_dit_official import CFG, NUM_CLASSES, TorchDiT, numpy_state_dict, randomize

import nnx_samplers as ns
from nnx_nets import DiT
from nnx_weightconv import checkpoint_convention, restore_orbax

NUM_STEPS = 16
FLAGS = [
    *("--input-size", "8", "--in-channels", "3", "--hidden-size", "32", "--depth", "2"),
    *("--num-heads", "2", "--patch-size", "2", "--num-classes", str(NUM_CLASSES), "--learn-sigma"),
]


def _sit_euler(module, noise, labels):
    """SiT's convention: s = 0 noise, s = 1 data, dx/ds = u(x, s, y)."""
    x = torch.from_numpy(noise).permute(0, 3, 1, 2)
    y = torch.from_numpy(labels).long()
    times = np.linspace(0.0, 1.0, NUM_STEPS + 1)
    with torch.no_grad():
        for s, s_next in zip(times[:-1], times[1:]):
            u = module(x, torch.full((x.shape[0],), float(s)), y)[:, : x.shape[1]]
            x = x + float(s_next - s) * u
    return x.permute(0, 2, 3, 1).numpy()


def test_converted_sit_samples_like_its_own_sampler(tool, tmp_path):
    torch_sit = TorchDiT(**CFG, num_classes=NUM_CLASSES).eval()
    randomize(torch_sit, seed=5, std=0.1)
    source = tmp_path / "sit.safetensors"
    safetensors.numpy.save_file(numpy_state_dict(torch_sit), source)
    assert tool.main([str(source), str(tmp_path / "out"), "--arch", "sit", *FLAGS]) == 0

    # Everything below reads the conversion's outputs only: no convention in test code.
    convention = json.loads((tmp_path / "out" / "sampling.json").read_text())
    assert convention["adapters"] == ["first_half_channels", "time_flipped_velocity"]
    model = nnx.eval_shape(
        lambda: DiT(
            **CFG,
            num_classes=NUM_CLASSES,
            learn_sigma=True,
            time_scale=convention["time_scale"],
            rngs=nnx.Rngs(0),
        )
    )
    restore_orbax(model, tmp_path / "out")
    network = ns.adapt_network(convention["adapters"], model)

    rng = np.random.default_rng(1)
    noise = rng.standard_normal((2, 8, 8, 3)).astype(np.float32)
    labels = np.array([0, 3], np.int32)
    field = ns.ConditionalField(network, jnp.asarray(labels))
    with jax.default_matmul_precision("highest"):
        ours = np.asarray(
            ns.sample(field, jnp.asarray(noise), ns.Euler(), ns.UniformGrid(16)).sample
        )
    reference = _sit_euler(torch_sit, noise, labels)
    assert np.abs(reference - noise).max() > 0.5  # the network moved the sample
    # float32 both sides, same Euler updates; networks agree to a few 1e-6 per call
    # (test_dit_official): 1e-5 of the sample's scale (measured 7.2e-8).
    err = np.abs(ours - reference).max() / np.abs(reference).max()
    assert err < 1e-5, err
    # Without the adapters the same network samples something else entirely.
    plain = ns.ConditionalField(ns.adapt_network(["first_half_channels"], model), labels)
    wrong = np.asarray(ns.sample(plain, jnp.asarray(noise), ns.Euler(), ns.UniformGrid(16)).sample)
    assert np.abs(wrong - reference).max() > 0.1


def test_conventions_name_known_adapters():
    for arch in ("dit", "diffusers_dit", "sit", "lightning_dit", "dit_dh"):
        for learn_sigma in (False, True):
            names = checkpoint_convention(arch, learn_sigma=learn_sigma).adapters
            assert set(names) <= set(ns.NETWORK_ADAPTERS), (arch, names)
    assert checkpoint_convention("lightning_dit").adapters == ("time_flipped_velocity",)
    assert checkpoint_convention("dit", learn_sigma=True).adapters == ()  # DDPM uses 2C
    with pytest.raises(ValueError, match="no sampling convention recorded for 'sd_vae'"):
        checkpoint_convention("sd_vae")
    with pytest.raises(ValueError, match="unknown network adapter 'flip'"):
        ns.adapt_network(["flip"], lambda x, t, y: x)
