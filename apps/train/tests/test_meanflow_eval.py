"""MeanFlow's one- and two-step samples scored by the app's evaluation (issue 20).

A tiny MeanFlow DiT trains a few steps on the digits; with ``eval.sampler_steps=(1, 2)`` (what
``configs/meanflow_b2.py`` sets) the final evaluation reports every classifier metric twice,
``<name>_steps1`` and ``<name>_steps2`` (EulerJump: one network evaluation per step).
"""

from train_testlib import load

from nnx_train.defaults import digits_data
from nnx_train.train import train


def test_meanflow_evaluation_reports_one_and_two_steps(tmp_path):
    config = load("meanflow_b2", "train.num_steps=3", arg="tiny")
    assert tuple(config.eval.sampler_steps) == (1, 2) and config.sampler.num_steps == 2
    with config.unlocked():
        config.data = digits_data()
    config.model.in_channels = 1
    config.eval.update({"name": "digits", "num_samples": 40, "batch_size": 40})
    metrics = train(config, str(tmp_path))
    for steps in (1, 2):
        assert metrics[f"num_generated_steps{steps}"] == 40
        assert 0.0 <= metrics[f"generated_class_accuracy_steps{steps}"] <= 1.0
    assert "generated_class_accuracy" not in metrics  # only the per-step-count keys
    # One jump and two jumps give different images, hence different feature distances.
    assert (
        metrics["classifier_frechet_distance_steps1"]
        != metrics["classifier_frechet_distance_steps2"]
    )
