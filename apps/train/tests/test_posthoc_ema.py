"""Proof of EDM2's post-hoc EMA in the trainer (issue 20).

A small DiT trains on the digits for 60 steps with three power-function EMAs tracked
(sigma_rel 0.05, 0.10 and 0.07) and snapshots every 5 steps, with the state sharded
(tensor-parallel on a 4 x 2 mesh of the 8 fake devices), so the snapshots are written shard by
shard. The 0.07 average is then
rebuilt from the 0.05 and 0.10 snapshots alone (EDM2 Appendix C, Algorithm 3) and compared with the one
tracked during training; a sweep of EMA lengths is scored with the digits classifier and
writes its metric-vs-EMA-length plot.
"""

import importlib.util
import json
import os

import jax
import numpy as np
import pytest
from train_testlib import config_path, load

from nnx_train.ema_snapshots import list_snapshots, reconstruct_from_snapshots
from nnx_train.errors import CheckpointError
from nnx_train.evaluation import DigitsEvaluator
from nnx_train.posthoc_sweep import sweep_posthoc_ema
from nnx_train.power_ema import power_function_correlation
from nnx_train.run import Run
from nnx_train.state import to_nested
from nnx_train.train import train

TOOL = os.path.join(os.path.dirname(__file__), "..", "..", "..", "tools", "posthoc_ema.py")

OVERRIDES = (
    "model.hidden_size=16",
    "model.depth=1",
    "model.num_heads=1",
    "train.batch_size=16",
    "train.num_steps=60",
    "train.log_every=30",
    "checkpoint.every_steps=60",
    "ema.sigma_rels=(0.05,0.1,0.07)",
    "ema.snapshot_every_steps=5",
    "samples.num_images=0",
    "eval.name=none",
    "eval.num_samples=100",
    "sampler.num_steps=4",
    # Tensor-parallel over 2 of the 8 fake devices (FSDP would replicate tensors this small):
    # the EMAs are sharded, so snapshots are written and read shard by shard.
    "sharding.strategy=tensor",
    "sharding.data=4",
    "sharding.tensor=2",
    "logging.progress_bar=False",
)


def _norm(tree) -> float:
    return float(
        np.sqrt(sum(np.sum(np.asarray(x, np.float64) ** 2) for x in jax.tree.leaves(tree)))
    )


def _difference(a, b):
    return jax.tree.map(lambda x, y: np.asarray(x, np.float64) - np.asarray(y, np.float64), a, b)


def solve_unscaled(inputs, step, sigma_rel):
    steps = np.array([s for s, _ in inputs], np.float64)
    lengths = np.array([r for _, r in inputs])
    gram = power_function_correlation(steps[:, None], lengths[:, None], steps, lengths)
    return np.linalg.solve(gram, power_function_correlation(steps, lengths, step, sigma_rel))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("phema"))
    config = load("digits", *OVERRIDES)
    train(config, workdir)
    run = Run(config, workdir)
    run.compile()
    return config, workdir, run


def test_reconstruction_matches_the_directly_tracked_ema(trained, capsys):
    _, workdir, run = trained
    snapshots = list_snapshots(f"{workdir}/phema_snapshots")
    assert [s for s, _ in snapshots] == list(range(5, 61, 5))
    assert snapshots[0][1] == (0.05, 0.1, 0.07)
    direct = run.state.ema["phema_0.07"]
    directory = f"{workdir}/phema_snapshots"
    (rebuilt,), coefficients, inputs = reconstruct_from_snapshots(
        directory, run.state.params, [0.07], sources=(0.05, 0.1)
    )
    assert len(inputs) == 24 and {s for _, s in inputs} == {0.05, 0.1}
    # Rebuilt on the parameters' shardings (restored shard by shard, summed in place).
    pairs = list(zip(jax.tree.leaves(rebuilt), jax.tree.leaves(run.state.params)))
    for a, b in pairs:
        assert a.sharding.is_equivalent_to(b.sharding, a.ndim), (a.sharding, b.sharding)
    assert any(not a.sharding.is_fully_replicated for a, _ in pairs)
    # Upstream's solve without its final division by the sum of the weights.
    unscaled = solve_unscaled(inputs, 60, 0.07)
    error = _norm(_difference(rebuilt, direct))
    relative = error / _norm(direct)
    # How far the averages are from each other: the error is small against this too, so the
    # test does not pass merely because every average is close to the initial weights.
    spread = _norm(_difference(run.state.ema["phema_0.05"], run.state.ema["phema_0.1"]))
    with capsys.disabled():
        print(
            f"\npost-hoc EMA sigma_rel 0.07 from 0.05 + 0.10 (24 snapshots) vs tracked: "
            f"relative error {relative:.2e} of the parameters, {error / spread:.2e} of "
            f"|ema_0.05 - ema_0.10| (unnormalised weights sum to {unscaled.sum():.6f})"
        )
    # The bound; what is left is the profile fit against the trajectory's shape.
    assert relative < 1e-3
    assert coefficients.sum() == pytest.approx(1.0, abs=1e-12)
    # Against the distance between the two tracked averages (measured 1e-3).
    assert error / spread < 0.02
    # A negative control: the tracked 0.05 average itself is far from 0.07 on this scale.
    assert _norm(_difference(run.state.ema["phema_0.05"], direct)) / spread > 0.2


def test_sweep_writes_its_plot_and_picks_the_best(trained):
    config, workdir, run = trained
    evaluator = DigitsEvaluator(
        holdout_fraction=config.data.holdout_fraction,
        split_seed=config.data.split_seed,
        classifier_steps=100,
        seed=config.seed,
    )
    lengths = (0.03, 0.07, 0.15)
    result = sweep_posthoc_ema(
        run, evaluator, lengths, metric="classifier_frechet_distance", lower_is_better=True
    )
    values = [row["classifier_frechet_distance"] for row in result["rows"]]
    assert [row["sigma_rel"] for row in result["rows"]] == list(lengths)
    assert result["best_value"] == min(values) and result["step"] == 60
    assert len(set(values)) == 3  # three different averages, three different scores
    with open(result["plot"], "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(result["table"]) as handle:
        assert json.load(handle)["best_sigma_rel"] == result["best_sigma_rel"]
    assert "posthoc" not in run.state.ema  # the run's own averages are left as they were


def test_missing_snapshots_are_named(trained, tmp_path):
    _, workdir, run = trained
    with pytest.raises(CheckpointError, match="at or before step 3"):
        reconstruct_from_snapshots(
            f"{workdir}/phema_snapshots", run.state.params, [0.07], at_step=3
        )


def _tool():
    spec = importlib.util.spec_from_file_location("posthoc_ema_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tool_saves_the_rebuilt_average_and_names_bad_lengths(trained, capsys):
    import orbax.checkpoint as ocp

    _, workdir, run = trained
    tool = _tool()
    train_args = ["--config", config_path("digits"), "--workdir", workdir]
    train_args += [f"--config.{o}" for o in OVERRIDES]
    assert tool.main([*train_args, "--sigma_rel", "0.5"]) == 2
    assert "error: sigma_rel must lie in (0, 0.2887)" in capsys.readouterr().err
    assert tool.main([*train_args, "--sigma_rel", "0.07", "--sources", "0.05,0.1"]) == 0
    path = os.path.join(workdir, "posthoc_ema", "phema_0.07_step60")
    assert f"saved {path}" in capsys.readouterr().out
    saved = ocp.StandardCheckpointer().restore(path, to_nested(run.state.params))
    (expected,), _, _ = reconstruct_from_snapshots(
        f"{workdir}/phema_snapshots", run.state.params, [0.07], sources=(0.05, 0.1)
    )
    for a, b in zip(jax.tree.leaves(saved), jax.tree.leaves(to_nested(expected))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # same sums: bitwise
