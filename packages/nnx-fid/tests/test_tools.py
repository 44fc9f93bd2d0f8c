"""The two CLIs end to end on the random-weight Inception (tf1 front end, batches of 2)."""

from __future__ import annotations

import importlib.util
import json
import pathlib

import numpy as np
import pytest
from PIL import Image

import nnx_fid

TOOLS = pathlib.Path(__file__).resolve().parents[3] / "tools"


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def folder(tmp_path_factory, small_images):
    path = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(5)
    images = np.concatenate([small_images, rng.integers(0, 256, (2, 32, 40, 3), dtype=np.uint8)])
    for index, image in enumerate(images):
        Image.fromarray(image).save(path / f"{index:03d}.png")
    return path, images


@pytest.fixture(scope="module")
def reference_file(folder, inception_weights_file, tmp_path_factory):
    path, _ = folder
    out = tmp_path_factory.mktemp("ref") / "ref.npz"
    with pytest.warns(UserWarning, match="SHA-256"):
        summary = _tool("fid_reference_stats").main(
            [
                str(path),
                str(out),
                "--inception",
                inception_weights_file,
                "--batch-size",
                "2",
                "--no-progress",
            ]
        )
    assert summary["front_end"] == "tf1" and summary["num_images"] == 4
    return out


def test_reference_stats_match_direct_features(reference_file, folder, jax_inception):
    _, images = folder
    reference = nnx_fid.load_reference(reference_file)
    np.testing.assert_array_equal(reference.images, images)  # all 4 kept, in order
    features = nnx_fid.extract_features(
        [nnx_fid.InceptionFeatures(jax_inception, front_end="tf1")],
        images,
        batch_size=2,
        progress=False,
    )
    direct = nnx_fid.GaussianStats.from_features(features["pool"])
    assert reference.fid.mu.shape == (2048,) and reference.sfid.mu.shape == (2023,)
    # Streaming float64 sums vs np.cov of the same float32 features: rounding only.
    np.testing.assert_allclose(reference.fid.mu, direct.mu, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(reference.fid.sigma, direct.sigma, rtol=1e-9, atol=1e-12)


def test_evaluate_samples_prints_adm_lines(folder, inception_weights_file, tmp_path, capsys):
    """ADM-format reference with positive-definite synthetic statistics (so the Frechet trace
    takes its Cholesky path; 4-image statistics would be singular and only slower) and the 4
    folder images as arr_0 for precision/recall."""
    _, ref_images = folder
    rng = np.random.default_rng(7)
    synthetic = {
        dim: nnx_fid.GaussianStats(0.1 * rng.normal(size=dim), np.diag(rng.uniform(0.5, 1.5, dim)))
        for dim in (2048, 2023)
    }
    nnx_fid.save_adm_npz(
        tmp_path / "ref.npz",
        nnx_fid.ReferenceStats(fid=synthetic[2048], sfid=synthetic[2023], images=ref_images),
    )
    samples = rng.integers(0, 256, (4, 32, 40, 3), dtype=np.uint8)
    np.savez(tmp_path / "samples.npz", arr_0=samples, arr_1=np.arange(4))
    with pytest.warns(UserWarning, match="SHA-256"):
        result = _tool("evaluate_samples").main(
            [
                str(tmp_path / "ref.npz"),
                str(tmp_path / "samples.npz"),
                "--inception",
                inception_weights_file,
                "--batch-size",
                "2",
                "--no-progress",
            ]
        )
    printed = capsys.readouterr().out
    for label in ("Inception Score:", "FID:", "sFID:", "Precision:", "Recall:"):
        assert label in printed
    written = json.loads((tmp_path / "samples.metrics.json").read_text())
    assert written["front_end"] == "tf1" and written["quantisation"] == "round"
    assert written["num_samples"] == 4 and written["num_reference_images"] == 4
    for key in ("fid", "sfid", "inception_score", "precision", "recall"):
        assert written[key] == pytest.approx(result[key]) and np.isfinite(written[key])
    assert 1.0 <= written["inception_score"] <= 4.0
    # The CLI's FID is the Frechet distance of the samples' pool3 statistics to the file's.
    with np.load(tmp_path / "samples.npz") as data:
        assert data["arr_0"].shape == (4, 32, 40, 3)
    assert written["fid"] > 0 and written["sfid"] > 0


def test_missing_weights_name_the_file(folder, tmp_path):
    path, _ = folder
    with pytest.raises(SystemExit, match="pt_inception-2015-12-05-6726825d.pth.*github"):
        _tool("fid_reference_stats").main([str(path), str(tmp_path / "x.npz")])
