"""The embedded video recipe: moving-digit clips, their metrics, and a tiny training run."""

import json
import os

import numpy as np
import pytest
from train_testlib import config_path

from nnx_train.cli import load_config
from nnx_train.data.moving_digits import MovingDigitsSource, bounce_positions
from nnx_train.train import train
from nnx_train.video_eval import VideoDigitsEvaluator, centroids, motion_consistency


def test_bounce_positions_reflect_at_the_walls():
    np.testing.assert_array_equal(bounce_positions(6, 2, 6, 8), [6, 8, 6, 4, 2, 0])
    np.testing.assert_array_equal(bounce_positions(1, -1, 4, 8), [1, 0, 1, 2])


def test_clips_are_deterministic_labelled_digits_moving_inside_the_frame():
    source = MovingDigitsSource(num_frames=6, frame_size=16, motions_per_digit=2)
    first = source[5]
    again = MovingDigitsSource(num_frames=6, frame_size=16, motions_per_digit=2)[5]
    assert first["x"].shape == (6, 16, 16, 1) and first["x"].dtype == np.float32
    np.testing.assert_array_equal(first["x"], again["x"])
    motion = source.motion(5)
    assert motion.min() >= 0 and motion.max() <= 8
    # Every frame is the same digit image pasted at the motion's position.
    (r0, c0), (r3, c3) = motion[0], motion[3]
    np.testing.assert_array_equal(
        first["x"][3, r3 : r3 + 8, c3 : c3 + 8], first["x"][0, r0 : r0 + 8, c0 : c0 + 8]
    )
    assert int(first["y"]) == int(source._labels[5 // 2])


def test_a_grid_puts_every_position_and_speed_on_its_multiples():
    source = MovingDigitsSource(num_frames=6, frame_size=16, motions_per_digit=4, grid=4)
    motions = np.stack([source.motion(i) for i in range(64)])
    assert set(np.unique(motions)) <= {0, 4, 8} and len(np.unique(motions)) == 3
    steps = np.abs(np.diff(motions, axis=1))
    assert set(np.unique(steps)) <= {0, 4, 8}
    clips = np.stack([source[i]["x"] for i in range(64)])
    points = centroids(clips.reshape(-1, 16, 16, 1)).reshape(64, 6, 2)
    assert motion_consistency(points, 8, grid=4).mean() == 1.0
    with pytest.raises(ValueError, match="grid=3 must be >= 1 and divide"):
        MovingDigitsSource(frame_size=16, grid=3)


@pytest.mark.parametrize("motion", ["centred", "by_class"])
def test_centred_motions_start_in_the_middle_and_by_class_moves_as_the_label_says(motion):
    source = MovingDigitsSource(num_frames=5, frame_size=16, grid=4, motion=motion)
    motions = np.stack([source.motion(i) for i in range(0, 400, 7)])
    labels = np.asarray([int(source[i]["y"]) for i in range(0, 400, 7)])
    if motion == "by_class":
        # One path per class from the middle (4, 4), period 4 (4 -> 4 +- 4 -> 4 -> 4 -+ 4),
        # read from a random phase: the first frame is on the path, and every clip of a
        # class is a window of the same sequence. Bit 0 of the label: down / up; bit 1:
        # right / left.
        for clip, label in zip(motions, labels, strict=True):
            rows = 4 + 4 * np.asarray([0, 1, 0, -1]) * (-1 if label & 1 else 1)
            cols = 4 + 4 * np.asarray([0, 1, 0, -1]) * (-1 if label & 2 else 1)
            windows = [
                [(rows[(k + phase) % 4], cols[(k + phase) % 4]) for k in range(5)]
                for phase in range(4)
            ]
            assert [tuple(p) for p in clip] in windows, (clip, label)
        assert len({tuple(c[0]) for c in motions}) == 5  # centre and the four corners
    else:
        assert (motions[:, 0] == 4).all()  # the middle of span 8 on the grid of 4
        assert len({tuple(s) for s in motions[:, 1] - motions[:, 0]}) > 2
    with pytest.raises(ValueError, match="motion='zigzag'; valid: random, centred, by_class"):
        MovingDigitsSource(motion="zigzag")


def test_motion_consistency_is_one_on_real_clips_and_low_on_shuffled_frames():
    source = MovingDigitsSource(split="heldout", num_frames=8, frame_size=16, seed=1)
    clips = np.stack([source[i]["x"] for i in range(0, len(source), 16)])
    points = centroids(clips.reshape(-1, 16, 16, 1)).reshape(len(clips), 8, 2)
    assert motion_consistency(points, 8).mean() == 1.0
    shuffled = clips[:, np.random.default_rng(0).permutation(8)]
    points = centroids(shuffled.reshape(-1, 16, 16, 1)).reshape(len(clips), 8, 2)
    # Measured 0.18 on 256 clips: a random frame order rarely follows any bounce path.
    assert motion_consistency(points, 8).mean() < 0.5


def test_evaluator_scores_real_clips_as_a_perfect_generator():
    evaluator = VideoDigitsEvaluator(window=4, frame_size=16, classifier_steps=200)
    source = MovingDigitsSource(split="heldout", num_frames=8, frame_size=16, seed=2)
    records = [source[i] for i in range(0, len(source), 40)]
    clips = np.stack([r["x"] for r in records])
    labels = np.asarray([r["y"] for r in records])
    metrics = evaluator([clips[:20], clips[20:]], labels)
    assert metrics["motion_consistency"] == metrics["rollout_motion_consistency"] == 1.0
    # The classifier reads 8x8 crops around the located digit; on real held-out clips it
    # measured 0.97 (the image classifier's own held-out accuracy is 0.996).
    assert metrics["rollout_frame_accuracy"] > 0.9
    wrong = evaluator([clips], (labels + 1) % 10)
    assert wrong["frame_accuracy"] < 0.2


def test_tiny_recipe_trains_and_writes_a_strip_of_rollouts(tmp_path):
    config = load_config(config_path("moving_digits") + ":tiny")
    config.eval.name = "none"  # the evaluator has its own test above
    final = train(config, str(tmp_path))
    assert final["finished"] and final["step"] == 2
    assert np.isfinite(json.loads((tmp_path / "metrics.json").read_text())["num_params"])
    assert os.path.exists(tmp_path / "samples.png")
    from PIL import Image

    width, height = Image.open(tmp_path / "samples.png").size
    # One row per clip, one column per rollout frame (8 = twice the 4-frame window).
    assert width > height and width // 16 >= 8


def test_recipe_refuses_image_data(tmp_path):
    config = load_config(config_path("moving_digits") + ":tiny")
    config.data = load_config(config_path("digits")).data  # 8x8x1 images, not clips
    config.model.input_size = 8
    config.eval.name = "none"
    from nnx_train.errors import ConfigError

    with pytest.raises(ConfigError, match="trains on clips"):
        train(config, str(tmp_path))


def test_every_config_reads_a_data_source_the_cli_knows():
    # The CLI checks data.name against --data's table before building anything; the video
    # config was once refused there while its tests (calling train() directly) passed.
    import glob

    from nnx_train.data_flags import DATA_SECTIONS, check_data_section

    configs = sorted(glob.glob(os.path.join(os.path.dirname(config_path("digits")), "*.py")))
    assert len(configs) > 15
    for path in configs:
        assert load_config(path).data.name in DATA_SECTIONS, path
    check_data_section(load_config(config_path("moving_digits")))  # no exception
