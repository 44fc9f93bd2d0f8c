"""Published hashes: a file named as a published one but with other bytes warns once, naming
the expected SHA-256; the published bytes (here: the registry patched to a small file's hash)
stay silent; other names are never hashed."""

import dataclasses
import hashlib
import re
import warnings

import numpy as np
import pytest
from safetensors.numpy import save_file

import nnx_weightconv as wc
from nnx_weightconv import published

EMA = wc.PUBLISHED_FILES["sd-vae-ft-ema"]


def _small_file(path):
    save_file({"decoder.conv_in.bias": np.arange(3, dtype=np.float32)}, str(path))
    return path


def _read_silently(path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        state = wc.read_state_dict(path)
    assert [str(w.message) for w in caught] == []
    return state


def test_a_known_name_with_other_bytes_warns_once_naming_the_expected_hash(tmp_path):
    path = _small_file(tmp_path / EMA.file_name)
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.warns(UserWarning, match=f"SHA-256 {actual}, not the published {EMA.sha256}"):
        state = wc.read_state_dict(path)
    np.testing.assert_array_equal(state["decoder.conv_in.bias"], [0, 1, 2])  # still read
    _read_silently(path)  # once per file: the second read neither warns nor hashes again


def test_the_published_bytes_stay_silent(tmp_path, monkeypatch):
    path = _small_file(tmp_path / EMA.file_name)
    good = hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setitem(wc.PUBLISHED_FILES, "sd-vae-ft-ema", dataclasses.replace(EMA, sha256=good))
    _read_silently(path)
    assert wc.check_published_sha256(path) == good


def test_other_names_and_unpinned_files_are_not_hashed(tmp_path, monkeypatch):
    def no_hashing(path):
        raise AssertionError(f"{path} was hashed")

    monkeypatch.setattr(published, "file_sha256", no_hashing)
    unpinned = wc.PUBLISHED_FILES["rae-decoder"]
    assert unpinned.sha256 is None
    for name in ("my_vae.safetensors", "model.safetensors", unpinned.file_name):
        assert wc.check_published_sha256(_small_file(tmp_path / name)) is None
    _read_silently(tmp_path / "my_vae.safetensors")


def test_an_explicit_hash_warns_on_every_call_when_asked(tmp_path):
    path = _small_file(tmp_path / "renamed_inception.pth")
    expected = wc.PUBLISHED_FILES["inception"].sha256
    for _ in range(2):  # nnx_fid.load_inception: every load of a foreign file says so
        with pytest.warns(UserWarning, match=f"published {expected} of pt_inception"):
            wc.check_published_sha256(path, expected, every_time=True)


def test_every_pinned_hash_is_a_sha256_with_its_source():
    pinned = {name: e for name, e in wc.PUBLISHED_FILES.items() if e.sha256 is not None}
    assert set(pinned) == {"inception", "sd-vae-ft-ema", "sd-vae-ft-mse", "dinov2-base"}
    for name, entry in pinned.items():
        assert re.fullmatch("[0-9a-f]{64}", entry.sha256), name
        assert entry.hash_source, name
    names = [e.file_name for e in wc.PUBLISHED_FILES.values()]
    assert len(set(names)) == len(names)  # the check keys on the file name
