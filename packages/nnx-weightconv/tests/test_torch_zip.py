"""The torch-free reader against files written by ``torch.save``."""

import collections
import sys
import zipfile

import numpy as np
import pytest
import torch

from nnx_weightconv import ConversionError
from nnx_weightconv.torch_zip import (
    OpaqueObject,
    TorchFileError,
    flatten_state_dict,
    read_torch_file,
)

torch.set_num_threads(1)


def test_reads_rae_statistics_layout(tmp_path):
    # RAE's stat.pt: {"mean": None, "var": [C, H, W]} (HF nyu-visionx/RAE-collections).
    generator = torch.Generator().manual_seed(0)
    var = torch.rand(8, 4, 4, generator=generator) * 9.0 + 0.005
    path = tmp_path / "stat.pt"
    torch.save({"mean": None, "var": var}, path)
    loaded = read_torch_file(path)
    assert loaded["mean"] is None
    assert loaded["var"].dtype == np.float32
    # Exact: the reader copies the raw little-endian buffer.
    np.testing.assert_array_equal(loaded["var"], var.numpy())


def test_views_dtypes_parameters_and_state_dicts(tmp_path):
    generator = torch.Generator().manual_seed(1)
    base = torch.randn(5, 6, generator=generator)
    layer = torch.nn.Linear(3, 2)
    record = {
        "transposed_view": base.t()[1:4],  # non-contiguous, offset into a shared storage
        "same_storage": base[2],
        "bf16": torch.randn(7, generator=generator).to(torch.bfloat16),
        "fp16": torch.randn(3, generator=generator).half(),
        "int64": torch.arange(5),
        "bool": torch.tensor([True, False]),
        "parameter": torch.nn.Parameter(torch.randn(2, 2, generator=generator)),
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 3),
        "ema": layer.state_dict(),
        "step": 12,
        "name": "run",
    }
    path = tmp_path / "mixed.pt"
    torch.save(record, path)
    loaded = read_torch_file(path)
    np.testing.assert_array_equal(loaded["transposed_view"], base.t()[1:4].numpy())
    np.testing.assert_array_equal(loaded["same_storage"], base[2].numpy())
    # bfloat16 is widened to float32 exactly (its bits are the top half of a float32).
    np.testing.assert_array_equal(loaded["bf16"], record["bf16"].float().numpy())
    assert loaded["fp16"].dtype == np.float16
    np.testing.assert_array_equal(loaded["fp16"], record["fp16"].numpy())
    np.testing.assert_array_equal(loaded["int64"], np.arange(5))
    np.testing.assert_array_equal(loaded["bool"], [True, False])
    np.testing.assert_array_equal(loaded["parameter"], record["parameter"].detach().numpy())
    assert loaded["scalar"].shape == () and float(loaded["scalar"]) == 3.5
    assert loaded["empty"].shape == (0, 3)
    assert isinstance(loaded["ema"], collections.OrderedDict)
    np.testing.assert_array_equal(loaded["ema"]["weight"], layer.weight.detach().numpy())
    assert loaded["step"] == 12 and loaded["name"] == "run"
    flat = flatten_state_dict({"ema": loaded["ema"], "step": 12})
    assert sorted(flat) == ["ema.bias", "ema.weight"]


def test_unknown_classes_become_opaque_and_nothing_is_imported(tmp_path):
    import argparse

    path = tmp_path / "ckpt.pt"
    torch.save({"args": argparse.Namespace(lr=1e-4), "ema": {"w": torch.ones(2)}}, path)
    loaded = read_torch_file(path)
    assert isinstance(loaded["args"], OpaqueObject)
    assert loaded["args"].qualified_name == "argparse.Namespace"
    np.testing.assert_array_equal(loaded["ema"]["w"], np.ones(2, np.float32))


def test_bad_files_give_named_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_torch_file(tmp_path / "absent.pt")
    not_zip = tmp_path / "legacy.pt"
    not_zip.write_bytes(b"\x80\x02not a zip")
    with pytest.raises(TorchFileError, match="not a torch zip archive"):
        read_torch_file(not_zip)
    # A storage cut short (a truncated download) is reported, not read past its end.
    good = tmp_path / "good.pt"
    torch.save({"w": torch.ones(100)}, good)
    cut = tmp_path / "cut.pt"
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(cut, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            target.writestr(item, data[:40] if item.filename.endswith("data/0") else data)
    with pytest.raises(TorchFileError, match="truncated"):
        read_torch_file(cut)


def test_select_reads_only_the_selected_storages(tmp_path):
    # A training checkpoint whose optimizer storage is damaged still yields its EMA weights
    # when only "ema" is selected: the other storages are never read.
    path = tmp_path / "train.pt"
    ema = {"w": torch.arange(6.0).reshape(2, 3)}
    torch.save({"ema": ema, "opt": {"m": torch.ones(50)}}, path)
    damaged = tmp_path / "damaged.pt"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(damaged, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            target.writestr(item, data[:8] if item.filename.endswith("data/1") else data)
    loaded = read_torch_file(damaged, select=lambda tree: tree["ema"])
    np.testing.assert_array_equal(loaded["w"], ema["w"].numpy())
    with pytest.raises(TorchFileError, match="truncated"):
        read_torch_file(damaged)


def test_read_state_dict_reads_pt_without_torch(tmp_path, monkeypatch):
    # A DiT-style training checkpoint {"model": ..., "ema": ...} with a bfloat16 tensor.
    generator = torch.Generator().manual_seed(3)
    ema = collections.OrderedDict(
        [
            ("x_embedder.proj.weight", torch.randn(4, 2, 2, 2, generator=generator)),
            ("t_embedder.bias", torch.randn(6, generator=generator).to(torch.bfloat16)),
        ]
    )
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": {"w": torch.ones(2)}, "ema": ema, "step": 7}, path)
    from nnx_weightconv import read_state_dict

    monkeypatch.setitem(sys.modules, "torch", None)  # any `import torch` now fails
    flat = read_state_dict(path, subkey="ema")
    assert sorted(flat) == sorted(ema)
    for key, tensor in ema.items():
        # bfloat16 widens to float32 exactly, so the comparison is exact.
        np.testing.assert_array_equal(flat[key], tensor.float().numpy())
        assert flat[key].dtype == np.float32
    with pytest.raises(ConversionError, match="has no entry 'state_dict'"):
        read_state_dict(path, subkey="state_dict")
