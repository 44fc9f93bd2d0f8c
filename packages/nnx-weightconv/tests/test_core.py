"""The conversion core on a small conv + fused-qkv network against its torch twin."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy
import torch
from flax import nnx

from nnx_weightconv import (
    ConversionError,
    Rule,
    conv_rules,
    export_state_dict,
    linear_kernel,
    linear_kernel_inv,
    linear_rules,
    load_into,
    norm_rules,
    read_state_dict,
    restore_orbax,
    save_orbax,
)

WIDTH = 8


class TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, WIDTH, 3, padding=1)
        self.norm = torch.nn.LayerNorm(WIDTH)
        self.qkv = torch.nn.Linear(WIDTH, 3 * WIDTH)
        self.proj = torch.nn.Linear(WIDTH, WIDTH)

    def forward(self, x):  # x: NCHW
        h = self.norm(self.conv(x).permute(0, 2, 3, 1))
        q, k, v = self.qkv(h).chunk(3, dim=-1)
        return self.proj(q * k + v)


class NnxNet(nnx.Module):
    def __init__(self, *, rngs):
        self.conv = nnx.Conv(3, WIDTH, (3, 3), padding=1, rngs=rngs)
        self.norm = nnx.LayerNorm(WIDTH, epsilon=1e-5, rngs=rngs)
        self.q = nnx.Linear(WIDTH, WIDTH, rngs=rngs)
        self.k = nnx.Linear(WIDTH, WIDTH, rngs=rngs)
        self.v = nnx.Linear(WIDTH, WIDTH, rngs=rngs)
        self.proj = nnx.Linear(WIDTH, WIDTH, rngs=rngs)

    def __call__(self, x):  # x: NHWC
        h = self.norm(self.conv(x))
        return self.proj(self.q(h) * self.k(h) + self.v(h))


def rules() -> list[Rule]:
    spec = conv_rules("conv", "conv") + norm_rules("norm", "norm") + linear_rules("proj", "proj")
    for index, name in enumerate("qkv"):
        spec.append(
            Rule("qkv.weight", f"{name}.kernel", linear_kernel, linear_kernel_inv, (index, 3))
        )
        spec.append(Rule("qkv.bias", f"{name}.bias", part=(index, 3)))
    return spec


def torch_net() -> TorchNet:
    torch.manual_seed(0)
    net = TorchNet()
    with torch.no_grad():
        for p in net.parameters():  # LayerNorm starts at ones/zeros: perturb everything
            p.add_(0.3 * torch.randn_like(p))
    return net


def state_dict_of(net) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy() for k, v in net.state_dict().items()}


def test_parity_and_round_trip(tmp_path):
    net = torch_net()
    model = NnxNet(rngs=nnx.Rngs(1))
    load_into(model, state_dict_of(net), rules())
    x = np.random.default_rng(0).normal(size=(2, 5, 5, 3)).astype(np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
    with jax.default_matmul_precision("highest"):
        got = np.asarray(model(jnp.asarray(x)))
    # fp32 at HIGHEST precision: only summation order differs from torch.
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert np.abs(expected).max() > 0.1

    exported = export_state_dict(model, rules())
    original = state_dict_of(net)
    assert exported.keys() == original.keys()
    for key in original:  # exact: transposes and concatenation only
        np.testing.assert_array_equal(exported[key], original[key])

    path = tmp_path / "net.safetensors"
    safetensors.numpy.save_file(exported, str(path))
    again = NnxNet(rngs=nnx.Rngs(2))
    load_into(again, read_state_dict(path), rules())
    np.testing.assert_array_equal(np.asarray(again(jnp.asarray(x))), got)

    torch.save(net.state_dict(), tmp_path / "net.pt")
    from_pt = read_state_dict(tmp_path / "net.pt")
    np.testing.assert_array_equal(from_pt["qkv.weight"], original["qkv.weight"])

    save_orbax(model, tmp_path / "orbax")
    restored = NnxNet(rngs=nnx.Rngs(3))
    restore_orbax(restored, tmp_path / "orbax")
    np.testing.assert_array_equal(np.asarray(restored(jnp.asarray(x))), got)


def test_errors_name_every_offending_key():
    state = state_dict_of(torch_net())
    del state["proj.bias"]
    state["proj.weight"] = state["proj.weight"][:, :4]
    state["extra.weight"] = np.zeros(3, np.float32)
    with pytest.raises(ConversionError) as info:
        load_into(NnxNet(rngs=nnx.Rngs(0)), state, rules())
    message = str(info.value)
    assert "missing in checkpoint (1): proj.bias" in message
    assert "proj.weight -> proj.kernel: checkpoint gives (4, 8), model expects (8, 8)" in message
    assert "unexpected in checkpoint (1): extra.weight" in message


def test_uncovered_parameters_are_reported():
    spec = [r for r in rules() if not r.target.startswith("norm")]
    with pytest.raises(ConversionError, match=r"not filled \(2\): norm.bias, norm.scale"):
        load_into(
            NnxNet(rngs=nnx.Rngs(0)),
            state_dict_of(torch_net()),
            spec,
            ignore=("norm.weight", "norm.bias"),
        )


def test_corrupt_and_missing_files(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(ConversionError, match="cannot read"):
        read_state_dict(bad)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_state_dict(tmp_path / "absent.pt")
    truncated = tmp_path / "trunc.pt"
    torch.save(torch_net().state_dict(), truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(ConversionError, match="truncated or not a checkpoint"):
        read_state_dict(truncated)
