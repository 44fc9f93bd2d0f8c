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

import numpy as np
from fid_testlib import random_inception_file, random_reference_file
from train_testlib import load

from nnx_train.train import train

TOOL = os.path.join(
    os.path.dirname(__file__), os.pardir, os.pardir, os.pardir, "tools", "evaluate_samples.py"
)


def test_periodic_fid_equals_offline_tool(tmp_path):
    weights = str(tmp_path / "inception.safetensors")
    random_inception_file(weights)
    reference = str(tmp_path / "reference.npz")
    random_reference_file(reference)

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
