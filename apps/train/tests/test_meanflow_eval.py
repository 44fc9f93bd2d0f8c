"""MeanFlow's one- and two-step samples in the app's evaluation (issue 20).

With ``eval.sampler_steps=(1, 2)`` (what ``configs/meanflow_b2.py`` sets) `evaluate` scores
the EMA's samples once per step count and reports every metric as ``<name>_steps1`` and
``<name>_steps2`` (EulerJump: one network evaluation per step). A recording evaluator checks
the wiring on a tiny untrained MeanFlow DiT: the one-step samples are exactly those of a run
configured with ``sampler.num_steps=1``, and the two-step samples differ from them.
"""

import jax
import numpy as np
from train_testlib import load

from nnx_train.evaluation import evaluate
from nnx_train.provenance import prepare_workdir
from nnx_train.run import Run

SMALL_EVAL = ("eval.num_samples=12", "eval.batch_size=12", "samples.num_images=0")


class _Recorder:
    """An evaluator that keeps the images it scores and reports their mean."""

    def __init__(self):
        self.images = []

    def __call__(self, batches, labels):
        images = np.concatenate(list(batches))
        self.images.append(images)
        return {"pixel_mean": float(images.mean()), "num_generated": int(len(labels))}


def _run(tmp_path, name, *overrides):
    """A run whose EMA is its initial parameters moved by fixed noise: the initial DiT's
    zero-initialised output layer predicts u = 0, for which every step count is the same."""
    config = load("meanflow_b2", *SMALL_EVAL, *overrides, arg="tiny")
    run = Run(config, prepare_workdir(str(tmp_path / name)))
    run.compile()
    leaves, treedef = jax.tree.flatten(run.state.ema)
    keys = jax.random.split(jax.random.key(0), len(leaves))
    moved = [x + 0.2 * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)]
    run.state = run.state.replace(ema=jax.tree.unflatten(treedef, moved))
    return run


def test_meanflow_evaluation_reports_one_and_two_steps(tmp_path):
    run = _run(tmp_path, "sweep")
    assert tuple(run.config.eval.sampler_steps) == (1, 2)
    recorder = _Recorder()
    metrics = evaluate(run, recorder, 0)
    assert metrics["num_generated_steps1"] == metrics["num_generated_steps2"] == 12
    assert {"pixel_mean_steps1", "pixel_mean_steps2", "eval_seconds_steps2"} <= set(metrics)
    assert "pixel_mean" not in metrics  # only the per-step-count keys
    one_step, two_steps = recorder.images
    assert one_step.shape == two_steps.shape == (12, 8, 8, 4)

    plain = _run(tmp_path, "plain", "sampler.num_steps=1", "eval.sampler_steps=()")
    assert set(evaluate(plain, recorder, 0)) == {"pixel_mean", "num_generated", "eval_seconds"}
    # Same seed, same initial EMA, same sampler: bitwise the same one-step samples.
    np.testing.assert_array_equal(recorder.images[2], one_step)
    # Two jumps are another sampler: the samples move by more than float noise.
    assert np.abs(two_steps - one_step).max() > 1e-3
