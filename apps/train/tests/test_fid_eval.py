"""Periodic FID in the trainer equals the offline evaluation (tools/evaluate_samples.py) on the
same samples.

A tiny SiT run on 16x16 RGB synthetic data evaluates FID at its last step with a randomly
filled FID Inception (written as ``.safetensors``, as a converted weights file would be) and a
pytorch-fid ``.npz`` reference (random Gaussian statistics), and keeps the scored samples (``eval.save_samples``). The
offline tool then scores that ``.npz`` with the same weights and reference. Both paths quantise
with ``nnx_fid.to_uint8`` and run the same jitted Inception on batches of the same size, so the
only admissible difference is float summation order in the statistics: relative 1e-6.
"""

import importlib.util
import json
import os

import jax
import numpy as np
from flax import nnx
from safetensors.numpy import save_file
from train_testlib import load

import nnx_fid
from nnx_train.train import train

TOOL = os.path.join(
    os.path.dirname(__file__), os.pardir, os.pardir, os.pardir, "tools", "evaluate_samples.py"
)


def _random_inception_file(path: str) -> None:
    model = nnx_fid.InceptionV3(rngs=nnx.Rngs(0))
    params = nnx.state(model, nnx.Param)
    leaves = jax.tree.leaves(params)
    keys = jax.random.split(jax.random.key(0), len(leaves))
    scaled = [
        jax.random.normal(k, p.shape) * (0.5 / np.sqrt(max(np.prod(p.shape[:-1]), 1)) ** 0.5)
        for k, p in zip(keys, leaves)
    ]
    nnx.update(model, jax.tree.unflatten(jax.tree.structure(params), scaled))
    save_file(nnx_fid.export_inception_state_dict(model), path)


def test_periodic_fid_equals_offline_tool(tmp_path):
    weights = str(tmp_path / "inception.safetensors")
    _random_inception_file(weights)
    # Reference statistics: any valid Gaussian (a random PSD covariance) will do here.
    rng = np.random.default_rng(1)
    factor = rng.standard_normal((2048, 64)) * 0.05
    stats = nnx_fid.GaussianStats(mu=rng.standard_normal(2048) * 0.1, sigma=factor @ factor.T)
    reference = str(tmp_path / "reference.npz")
    nnx_fid.save_pytorch_fid_npz(reference, stats)

    config = load(
        "sit_b2",
        "eval.name=fid",
        "eval.num_samples=6",
        "eval.batch_size=6",
        "eval.ema=0.9999",
        f"eval.inception_weights={weights}",
        f"eval.reference_stats={reference}",
        "eval.save_samples=True",
        "samples.num_images=0",
        "data.shape=(16,16,3)",
        "model.input_size=16",
        "model.in_channels=3",
        arg="tiny",
    )
    metrics = train(config, str(tmp_path / "run"))
    assert np.isfinite(metrics["fid"]) and metrics["fid"] > 0 and metrics["num_samples"] == 6
    samples_file = metrics["samples_file"]
    with np.load(samples_file) as batch:
        assert batch["arr_0"].shape == (6, 16, 16, 3) and batch["arr_0"].dtype == np.uint8
        assert len(np.unique(batch["arr_0"])) > 10  # real samples, not a constant image

    spec = importlib.util.spec_from_file_location("evaluate_samples_tool", TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out = tmp_path / "offline.json"
    offline = tool.main(
        [reference, samples_file, "--inception", weights, "--batch-size", "6",
         "--json", str(out), "--no-progress"]
    )  # fmt: skip
    assert json.loads(out.read_text())["fid"] == offline["fid"]
    np.testing.assert_allclose(offline["fid"], metrics["fid"], rtol=1e-6)
