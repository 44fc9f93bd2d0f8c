"""Every statistics format round-trips exactly; malformed files give named errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import nnx_fid


def _stats(rng, dim, num=None, dtype=np.float64):
    a = rng.normal(size=(dim, dim))
    return nnx_fid.GaussianStats(rng.normal(size=dim).astype(dtype), (a @ a.T).astype(dtype), num)


def _same(a: nnx_fid.GaussianStats, b: nnx_fid.GaussianStats):
    for x, y in ((a.mu, b.mu), (a.sigma, b.sigma)):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


def test_adm_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    written = nnx_fid.ReferenceStats(
        fid=_stats(rng, 6), sfid=_stats(rng, 7, dtype=np.float32), images=images
    )
    nnx_fid.save_adm_npz(tmp_path / "ref.npz", written)
    read = nnx_fid.load_reference(tmp_path / "ref.npz")
    _same(read.fid, written.fid)
    _same(read.sfid, written.sfid)
    np.testing.assert_array_equal(read.images, images)
    assert nnx_fid.load_reference(tmp_path / "ref.npz", load_images=False).images is None
    with np.load(tmp_path / "ref.npz") as raw:
        assert set(raw.files) == {"arr_0", "mu", "sigma", "mu_s", "sigma_s"}


def test_pytorch_fid_round_trip(tmp_path):
    stats = _stats(np.random.default_rng(1), 5)
    nnx_fid.save_pytorch_fid_npz(tmp_path / "ref.npz", stats)
    read = nnx_fid.load_reference(tmp_path / "ref.npz")
    _same(read.fid, stats)
    assert read.sfid is None and read.images is None
    with np.load(tmp_path / "ref.npz") as raw:
        assert set(raw.files) == {"mu", "sigma"}


def test_edm2_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    written = nnx_fid.ReferenceStats(
        fid=_stats(rng, 6, 50), fd_dinov2=_stats(rng, 4, 50), num_images=50
    )
    nnx_fid.save_edm2_pkl(tmp_path / "ref.pkl", written)
    read = nnx_fid.load_reference(tmp_path / "ref.pkl")
    _same(read.fid, written.fid)
    _same(read.fd_dinov2, written.fd_dinov2)
    assert read.num_images == 50
    with open(tmp_path / "ref.pkl", "rb") as handle:
        raw = pickle.load(handle)
    assert set(raw) == {"num_images", "fid", "fd_dinov2"}
    assert set(raw["fid"]) == {"mu", "sigma"}


def test_malformed_files_are_named(tmp_path):
    np.savez(tmp_path / "half.npz", mu=np.zeros(3))
    with pytest.raises(nnx_fid.StatsFormatError, match="pairs"):
        nnx_fid.load_reference(tmp_path / "half.npz")
    np.savez(tmp_path / "shape.npz", mu=np.zeros(3), sigma=np.zeros((3, 4)))
    with pytest.raises(nnx_fid.StatsFormatError, match="sigma of shape"):
        nnx_fid.load_reference(tmp_path / "shape.npz")
    np.savez(tmp_path / "other.npz", feats=np.zeros(3))
    with pytest.raises(nnx_fid.StatsFormatError, match="none of"):
        nnx_fid.load_reference(tmp_path / "other.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(nnx_fid.StatsFormatError, match="cannot read"):
        nnx_fid.load_reference(tmp_path / "junk.npz")
    with open(tmp_path / "evil.pkl", "wb") as handle:
        pickle.dump({"fid": {"mu": np.zeros(2), "sigma": np.eye(2)}, "x": pytest.approx}, handle)
    with pytest.raises(nnx_fid.StatsFormatError, match="refusing to load"):
        nnx_fid.load_reference(tmp_path / "evil.pkl")
    with open(tmp_path / "nofid.pkl", "wb") as handle:
        pickle.dump({"num_images": 3}, handle)
    with pytest.raises(nnx_fid.StatsFormatError, match="neither"):
        nnx_fid.load_reference(tmp_path / "nofid.pkl")
    with pytest.raises(nnx_fid.StatsFormatError, match="suffix"):
        (tmp_path / "stats.txt").write_text("x")
        nnx_fid.load_reference(tmp_path / "stats.txt")
    with pytest.raises(FileNotFoundError):
        nnx_fid.load_reference(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="sfid"):
        nnx_fid.save_adm_npz(
            tmp_path / "x.npz", nnx_fid.ReferenceStats(fid=_stats(np.random.default_rng(0), 2))
        )
