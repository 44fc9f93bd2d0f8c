"""The embedded default (digits) end to end, shortened: metrics are computed, not assumed.

30 training steps cannot make good digits; the test checks that the pipeline trains, samples
with CFG, evaluates with the independent classifier and writes every output, and that the
classifier itself is trustworthy (held-out accuracy > 0.9, measured 0.996 with 400 steps).
"""

import json
import math

from train_testlib import config_path

from nnx_train.cli import main


def test_default_runs_end_to_end(tmp_path, capsys, monkeypatch):
    secret = "wandb-secret-0123456789abcdef"
    monkeypatch.setenv("WANDB_API_KEY", secret)  # the conftest keeps WANDB_MODE=disabled
    status = main(
        [
            "train",
            f"--workdir={tmp_path}",
            "--config.train.num_steps=30",
            "--config.train.log_every=10",
            "--config.schedule.decay_steps=30",
            "--config.checkpoint.every_steps=30",
            "--config.eval.num_samples=60",
            "--config.eval.batch_size=60",
            "--config.samples.num_images=20",
            "--config.sampler.num_steps=4",
            "--config.logging.progress_bar=False",
        ],
        default_config=config_path("digits"),
    )
    assert status == 0
    assert "done: step=30" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["classifier_heldout_accuracy"] > 0.9
    for key in (
        "generated_class_accuracy",
        "classifier_frechet_distance",
        "real_train_vs_heldout_frechet_distance",
    ):
        assert math.isfinite(metrics[key]), key
    assert 0.0 <= metrics["generated_class_accuracy"] <= 1.0
    assert metrics["num_generated"] == 60 and metrics["num_heldout_real"] == 270
    # The held-out real images are closer to the real training images than 30-step samples.
    assert (
        metrics["real_train_vs_heldout_frechet_distance"] < metrics["classifier_frechet_distance"]
    )
    for name in ("samples.png", "loss_curve.png", "metrics.jsonl", "config.json", "run_info.json"):
        assert (tmp_path / name).is_file(), name
    info = json.loads((tmp_path / "run_info.json").read_text())
    assert info["packages"]["jax"] and "devices" in info and info["mesh"]["axis_names"]
    # Credentials come only from the environment and are never written into the workdir
    # (config dump, run info, metrics, checkpoints).
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_bad_key_on_the_command_line_is_one_line(tmp_path, capsys):
    status = main(
        ["train", f"--workdir={tmp_path}", "--config.train.num_step=3"],
        default_config=config_path("digits"),
    )
    assert status == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: Unknown config key") and "num_steps" in err
    assert "\n" not in err and "Traceback" not in err
