"""Every recipe builds and trains 2 steps with its tiny-model variant on synthetic data.

``configs/<recipe>.py:tiny`` keeps the recipe's objective, optimiser, schedule, EMA and sampler
(checked in test_config.py) and shrinks the model and data. Each run initialises the state,
takes 2 jitted steps, writes a checkpoint and, for the first recipe, a sample grid.
"""

import json
import math

import pytest
from train_testlib import RECIPES, load

from nnx_train.train import train


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_runs_two_steps(name, tmp_path):
    overrides = () if name == "sit_b2" else ("samples.num_images=0",)
    config = load(name, *overrides, arg="tiny")
    metrics = train(config, str(tmp_path))
    assert metrics["step"] == 2 and metrics["finished"]
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    for record in records:
        assert math.isfinite(record["loss"]) and record["nonfinite"] == 0.0
    assert (tmp_path / "checkpoints" / "2").is_dir()
    assert (tmp_path / "config.json").is_file() and (tmp_path / "run_info.json").is_file()
    if name == "sit_b2":
        assert (tmp_path / "samples.png").is_file() and (tmp_path / "loss_curve.png").is_file()
