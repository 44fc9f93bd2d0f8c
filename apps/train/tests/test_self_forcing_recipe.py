"""The Self Forcing recipe on moving digits: a tiny teacher, a tiny student, their report."""

import json

import numpy as np
import pytest
from train_testlib import config_path

from nnx_train.cli import load_config
from nnx_train.errors import ConfigError
from nnx_train.train import train


@pytest.fixture(scope="module")
def video_teacher(tmp_path_factory):
    """A 2-step Diffusion Forcing run of configs/moving_digits.py:tiny (its evaluation on)."""
    workdir = tmp_path_factory.mktemp("video_teacher")
    config = load_config(config_path("moving_digits") + ":tiny")
    assert train(config, str(workdir))["finished"]
    return workdir


def _student(teacher, *changes):
    config = load_config(config_path("self_forcing_digits") + ":tiny")
    config.objective.teacher_workdir = str(teacher)
    for change in changes:
        change(config)
    return config


def test_tiny_student_trains_samples_rollouts_and_reports_the_teacher(video_teacher, tmp_path):
    final = train(_student(video_teacher), str(tmp_path))
    assert final["finished"] and final["step"] == 2
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    teacher = json.loads((video_teacher / "metrics.json").read_text())
    assert metrics["nfe_per_frame"] == 2 and metrics["teacher_nfe_per_frame"] == 2
    assert metrics["teacher_frame_accuracy"] == teacher["frame_accuracy"]
    assert metrics["generated_frames"] == 8  # rollouts of twice the 4-frame window
    assert 0.0 <= metrics["rollout_frame_accuracy"] <= 1.0
    assert np.isfinite(metrics["num_params"])


def test_an_image_teacher_is_refused(tmp_path):
    image_run = tmp_path / "image_teacher"
    image_run.mkdir()
    config = load_config(config_path("digits") + ":tiny")
    (image_run / "config.json").write_text(json.dumps(config.to_dict()))
    student = load_config(config_path("self_forcing_digits") + ":tiny")
    student.objective.teacher_workdir = str(image_run)
    with pytest.raises(ConfigError, match="a teacher must be a run of the diffusion_forcing"):
        train(student, str(tmp_path / "student"))


def test_sampler_keys_it_does_not_read_are_refused(video_teacher, tmp_path):
    def set_steps(config):
        config.sampler.num_steps = 10

    with pytest.raises(ConfigError, match="sampler.num_steps=10 is ignored by the self_forcing"):
        train(_student(video_teacher, set_steps), str(tmp_path))
