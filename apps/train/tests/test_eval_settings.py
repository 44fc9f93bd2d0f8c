"""Evaluation rows: one per (CFG scale, sample count) of ``eval.settings``, named in the
metrics (``fid@cfg1.5/50k``); the digits default keeps its single unnamed row."""

import importlib
import json

import numpy as np
import pytest
from train_testlib import load

from nnx_train.errors import ConfigError
from nnx_train.evaluation import EvalSetting, eval_settings

train_module = importlib.import_module("nnx_train.train")  # the module, not the function


def test_settings_parse_into_rows():
    config = load("sit_xl2")
    assert eval_settings(config) == [
        EvalSetting("cfg1.0/10k", 1.0, 10_000),
        EvalSetting("cfg1.5/10k", 1.5, 10_000),
        EvalSetting("cfg1.0/50k", 1.0, 50_000),
        EvalSetting("cfg1.5/50k", 1.5, 50_000),
    ]
    # The digits default: one unnamed row at its guidance scale and sample count.
    assert eval_settings(load("digits")) == [EvalSetting("", None, 500)]


@pytest.mark.parametrize(
    ("recipe", "setting", "message"),
    [
        ("sit_b2", "cfg1.5-50k", "cfg<scale>/<count>"),
        ("sit_b2", "fid/10k", "cfg<scale>/<count>"),
        ("meanflow_b2", "cfg1.5/10k", "guidance.name='none'"),
    ],
)
def test_bad_settings_fail_in_one_line(recipe, setting, message):
    config = load(recipe, f"eval.settings=('{setting}',)")
    with pytest.raises(ConfigError, match=message):
        eval_settings(config)


class _MeanEvaluator:
    """Scores a row by the mean of its samples (so guided rows differ from unguided ones)."""

    def __call__(self, batches, labels):
        images = np.concatenate(list(batches))
        return {"fid": float(np.mean(images)), "num_samples": int(len(images))}


def test_rows_reach_metrics_json(tmp_path, monkeypatch):
    monkeypatch.setattr(train_module, "build_evaluator", lambda config: _MeanEvaluator())
    config = load(
        "sit_b2",
        "samples.num_images=0",
        "eval.every_steps=1",
        "eval.num_samples=4",
        "eval.batch_size=4",
        "eval.settings=('cfg1.0/4', 'cfg3.0/4', 'cfg1.0/8')",
        # DiT's output layer and modulations start at zero (label-blind): large steps and a
        # short EMA make the sampled network depend on the label after 2 steps.
        "optimizer.learning_rate=0.1",
        "ema.decays=(0.5,)",
        "eval.ema=0.5",
        "samples.ema=0.5",
        arg="tiny",
    )
    metrics = train_module.train(config, str(tmp_path))
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    periodic = [r for r in records if r["step"] == 1 and "eval/fid@cfg1.0/4" in r]
    assert len(periodic) == 1
    # Step 1 of 2 is periodic: only the rows of at most eval.num_samples (4) images.
    assert "eval/fid@cfg1.0/8" not in periodic[0] and "eval/fid@cfg3.0/4" in periodic[0]
    # The final evaluation scores every row; metrics.json keeps them by name.
    saved = json.loads((tmp_path / "metrics.json").read_text())
    for name, count in (("cfg1.0/4", 4), ("cfg3.0/4", 4), ("cfg1.0/8", 8)):
        assert saved[f"num_samples@{name}"] == count
        assert saved[f"fid@{name}"] == metrics[f"fid@{name}"]
    assert "fid" not in saved
    # Same noise and labels, different guidance: the guided row's samples differ.
    assert abs(saved["fid@cfg3.0/4"] - saved["fid@cfg1.0/4"]) > 1e-6
