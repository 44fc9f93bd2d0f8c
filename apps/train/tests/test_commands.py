"""``sample`` and ``evaluate`` on a (very short) digits run: new files only, state untouched.

The run is the digits default shrunk to a one-block model and 2 steps (the commands are what
is tested, not the samples' quality); a checkpoint is kept at steps 1 and 2.
"""

import contextlib
import hashlib
import io
import json

import numpy as np
import pytest
from PIL import Image
from train_testlib import config_path

from nnx_train.cli import main

TRAIN = [
    "--config.model.hidden_size=32",
    "--config.model.depth=1",
    "--config.model.num_heads=2",
    "--config.train.batch_size=32",
    "--config.train.num_steps=2",
    "--config.train.log_every=1",
    "--config.schedule.warmup_steps=0",
    "--config.schedule.decay_steps=2",
    "--config.checkpoint.every_steps=1",
    "--config.sampler.num_steps=2",
    "--config.samples.num_images=0",
    "--config.eval.name=none",
    "--config.logging.progress_bar=False",
]


def _state(workdir):
    """Digest of every file of the run outside what `sample` / `evaluate` add."""
    return {
        str(p.relative_to(workdir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(workdir.rglob("*"))
        if p.is_file() and p.relative_to(workdir).parts[0] not in ("samples", "evaluations")
    }


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    path = tmp_path_factory.mktemp("digits_run")
    console = io.StringIO()
    with contextlib.redirect_stderr(console):
        status = main(["train", f"--workdir={path}", *TRAIN], default_config=config_path("digits"))
    assert status == 0
    (path.parent / "console.txt").write_text(console.getvalue())
    return path


def test_console_start_line_compile_message_and_progress(workdir):
    lines = (workdir.parent / "console.txt").read_text().splitlines()
    assert lines[0].startswith("train digits: DiT ("), lines[0]
    for words in ("8 cpu device(s) on 1 process(es)", "from scratch", "steps 0->2 of batch 32"):
        assert words in lines[0], (words, lines[0])
    assert lines[1].startswith("compiling the training step (DiT")
    assert lines[2].startswith("compiled the training step and ran step 1 in ")
    # The bar is off (logging.progress_bar=False): one line per logged step instead.
    assert [line.split(":")[0] for line in lines if line.startswith("step ")] == [
        "step 1/2",
        "step 2/2",
    ]


def _only(folder, pattern):
    found = sorted(folder.glob(pattern))
    assert len(found) == 1, found
    return found[0]


def test_sample_writes_grids_and_an_adm_batch(workdir, capsys):
    before = _state(workdir)
    status = main(
        [
            "train",
            "sample",
            f"--workdir={workdir}",
            "--num_images=20",
            "--config.guidance.scale=2.0",
        ]
    )
    assert status == 0
    assert capsys.readouterr().out.startswith("sampled 20 images of step 2 (ema0.99) into ")
    out = _only(workdir / "samples", "*_step2_ema0.99")
    with np.load(out / "samples.npz") as loaded:
        batch = dict(loaded)
    assert batch["arr_0"].shape == (20, 8, 8, 1) and batch["arr_0"].dtype == np.uint8
    np.testing.assert_array_equal(batch["arr_1"], np.arange(20) % 10)
    assert batch["arr_0"].std() > 0  # not a constant image
    grid = Image.open(out / "grid_000.png")
    assert grid.width > grid.height > 8  # 10 columns, 2 rows
    settings = json.loads((out / "settings.json").read_text())
    assert settings["step"] == 2 and settings["guidance"]["scale"] == 2.0
    assert settings["sampler"]["num_steps"] == 2
    assert _state(workdir) == before  # no checkpoint, config or metrics file changed


def test_sample_chosen_step_and_raw_weights(workdir, capsys):
    status = main(
        ["train", "sample", f"--workdir={workdir}", "--step=1", "--weights=raw",
         "--num_images=10", "--seed=7", f"--out={workdir}/samples/raw1"]
    )  # fmt: skip
    assert status == 0
    settings = json.loads((workdir / "samples" / "raw1" / "settings.json").read_text())
    assert (settings["step"], settings["weights"], settings["seed"]) == (1, "raw", 7)
    with np.load(workdir / "samples" / "raw1" / "samples.npz") as batch:
        assert batch["arr_0"].shape[0] == 10


@pytest.mark.parametrize(
    "args, words",
    [
        (["--step=7"], ("No checkpoint of step 7", "1, 2")),
        (["--weights=0.5"], ("ema, raw or one of the EMA decays: 0.99",)),
        (["--num_images=0"], ("at least one image",)),
    ],
)
def test_sample_bad_choices_are_one_line(workdir, capsys, args, words):
    status = main(["train", "sample", f"--workdir={workdir}", *args])
    err = capsys.readouterr().err.strip()
    assert status == 2 and err.startswith("error: ") and "\n" not in err, err
    for word in words:
        assert word in err, (word, err)


def test_evaluate_writes_a_new_result_file(workdir, capsys):
    before = _state(workdir)
    args = [
        "--config.eval.name=digits",
        "--config.eval.num_samples=20",
        "--config.eval.batch_size=20",
    ]
    assert main(["train", "evaluate", f"--workdir={workdir}", *args]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("step 2: generated_class_accuracy="), line
    result = json.loads(_only(workdir / "evaluations", "*_step2.json").read_text())
    assert result["step"] == 2 and result["eval"]["num_samples"] == 20
    assert 0.0 <= result["metrics"]["generated_class_accuracy"] <= 1.0
    assert result["metrics"]["num_generated"] == 20
    assert _state(workdir) == before
    # The run's config says eval.name='none': without the override there is nothing to compute.
    assert main(["train", "evaluate", f"--workdir={workdir}"]) == 2
    assert "eval.name='none'" in capsys.readouterr().err


def test_a_resumed_run_says_where_it_resumed_from(workdir, capsys):
    # Runs last: it rewrites metrics.json (the run is already finished: no step is taken).
    assert (
        main(["train", f"--workdir={workdir}", *TRAIN], default_config=config_path("digits")) == 0
    )
    first = capsys.readouterr().err.splitlines()[0]
    assert f"resumed from step 2 in {workdir}/checkpoints" in first, first
    assert "steps 2->2" in first
