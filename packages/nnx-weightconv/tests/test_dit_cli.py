"""tools/convert_checkpoint.py: .pt / .safetensors -> orbax, and key reports by name."""

import numpy as np
import pytest
import safetensors.numpy
import torch
from flax import nnx

from nnx_nets import DiT, DiTDH
from nnx_nets.testing import random_model
from nnx_weightconv import export_state_dict, restore_orbax
from nnx_weightconv.specs.dit import dit_rules
from nnx_weightconv.specs.dit_dh import dit_dh_rules

torch.set_num_threads(1)

DIT = dict(
    input_size=8,
    patch_size=2,
    in_channels=3,
    hidden_size=32,
    depth=2,
    num_heads=2,
    num_classes=5,
    learn_sigma=True,
)
DIT_FLAGS = [
    "--arch",
    "dit",
    "--input-size",
    "8",
    "--in-channels",
    "3",
    "--hidden-size",
    "32",
    "--depth",
    "2",
    "--num-heads",
    "2",
    "--patch-size",
    "2",
    "--num-classes",
    "5",
    "--learn-sigma",
]


def random_source(cls, seed, **kwargs):
    """``cls(**kwargs)`` with ``N(0, 1)`` weights: the network a conversion starts from."""
    return random_model(lambda: cls(**kwargs, rngs=nnx.Rngs(0)), seed, scale=1.0)


def assert_same_params(a, b):
    flat_a = dict(nnx.state(a, nnx.Param).flat_state())
    flat_b = dict(nnx.state(b, nnx.Param).flat_state())
    assert flat_a.keys() == flat_b.keys()
    for path in flat_a:
        np.testing.assert_array_equal(flat_a[path].get_value(), flat_b[path].get_value())


def test_safetensors_to_orbax(tool, tmp_path, capsys):
    source = random_source(DiT, seed=0, **DIT)
    state_dict = export_state_dict(source, dit_rules(source))
    state_dict["pos_embed"] = np.zeros((1, 16, 32), np.float32)  # fixed table: ignored
    path = tmp_path / "dit.safetensors"
    safetensors.numpy.save_file({k: np.ascontiguousarray(v) for k, v in state_dict.items()}, path)
    assert tool.main([str(path), str(tmp_path / "orbax"), *DIT_FLAGS]) == 0
    assert "DiT(" in capsys.readouterr().out
    restored = nnx.eval_shape(lambda: DiT(**DIT, rngs=nnx.Rngs(1)))
    restore_orbax(restored, tmp_path / "orbax")
    assert_same_params(source, restored)


def test_pt_with_ema_subkey_and_preset_sizes(tool, tmp_path):
    # DiT-DH S-like trunk, head via flags; weights wrapped as RAE training checkpoints are.
    kwargs = dict(
        input_size=4,
        patch_size=1,
        in_channels=3,
        hidden_size=32,
        depth=1,
        num_heads=2,
        head_hidden_size=48,
        head_depth=1,
        head_num_heads=2,
        num_classes=5,
    )
    source = random_source(DiTDH, seed=1, **kwargs)
    weights = {
        k: torch.from_numpy(np.ascontiguousarray(v))
        for k, v in export_state_dict(source, dit_dh_rules(source)).items()
    }
    path = tmp_path / "stage2_model.pt"
    torch.save({"ema": weights, "model": {}}, path)
    flags = [
        "--arch",
        "dit_dh",
        "--preset",
        "DiTDH-S",
        "--subkey",
        "ema",
        "--input-size",
        "4",
        "--in-channels",
        "3",
        "--hidden-size",
        "32",
        "--depth",
        "1",
        "--num-heads",
        "2",
        "--head-hidden-size",
        "48",
        "--head-depth",
        "1",
        "--head-num-heads",
        "2",
        "--num-classes",
        "5",
    ]
    assert tool.main([str(path), str(tmp_path / "out"), *flags]) == 0
    restored = nnx.eval_shape(lambda: DiTDH(**kwargs, rngs=nnx.Rngs(1)))
    restore_orbax(restored, tmp_path / "out")
    assert_same_params(source, restored)


def test_bad_checkpoint_is_reported_by_key_and_nothing_written(tool, tmp_path, capsys):
    source = random_source(DiT, seed=2, **DIT)
    state_dict = export_state_dict(source, dit_rules(source))
    del state_dict["blocks.1.adaLN_modulation.1.bias"]
    state_dict["blocks.0.mlp.fc1.weight"] = state_dict["blocks.0.mlp.fc1.weight"][:, :8]
    state_dict["decoder.extra.weight"] = np.ones(3, np.float32)
    path = tmp_path / "bad.safetensors"
    safetensors.numpy.save_file({k: np.ascontiguousarray(v) for k, v in state_dict.items()}, path)
    assert tool.main([str(path), str(tmp_path / "never"), *DIT_FLAGS]) == 1
    err = capsys.readouterr().err
    assert "missing in checkpoint (1): blocks.1.adaLN_modulation.1.bias" in err
    assert "blocks.0.mlp.fc1.weight -> blocks.0.mlp.fc1.kernel: checkpoint gives (8, 128)" in err
    assert "unexpected in checkpoint (1): decoder.extra.weight" in err
    assert not (tmp_path / "never").exists()


def test_usage_errors_list_valid_choices(tool, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        tool.main(
            [
                str(tmp_path / "x.pt"),
                str(tmp_path / "o"),
                "--arch",
                "dit",
                "--preset",
                "DiT-M/2",
                "--input-size",
                "32",
                "--in-channels",
                "4",
            ]
        )
    assert info.value.code == 2
    assert "valid: DiT-S/2, DiT-S/4" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        tool.main([str(tmp_path / "x.pt"), str(tmp_path / "o"), "--arch", "dit"])
    assert "--input-size" in capsys.readouterr().err
    assert (
        tool.main(
            [
                str(tmp_path / "absent.pt"),
                str(tmp_path / "o"),
                "--arch",
                "dit",
                "--preset",
                "DiT-S/2",
                "--input-size",
                "8",
                "--in-channels",
                "3",
            ]
        )
        == 1
    )
    assert "does not exist" in capsys.readouterr().err
