"""DMD2, sCD and sCT recipes at CI size (the full-size proofs are the configs' default runs).

A tiny digits teacher (width 16, one block, 2 steps) is trained once; from it:

- DMD2's two-time-scale rule: with ``fake_updates_per_generator_update = 4`` the generator
  moves on steps 4 and 8 only (of 0..9) (step 0 too, but there the fake score still equals the
  barely trained teacher and the DMD gradient can vanish) while the fake score moves on every
  step;
- DMD2's GAN term (DMD2 Sec. 4.3): the generator's term reaches the generator only, the
  classifier's the fake score and the head only, and turning it on changes both updates;
- every distillation recipe (DMD2 with and without the GAN term), and sCT from scratch, trains
  2 steps through the app and reports its NFE (and the teacher's);
- ``sampler.*``: the consistency recipes read ``sampler.num_steps`` (1 or 2), DMD2 none of it.

The full-size proofs are test_distillation_proofs.py (marker ``proof``).
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from train_testlib import load

import nnx_objectives as no
from nnx_train import build
from nnx_train.ema import init_ema
from nnx_train.errors import ConfigError
from nnx_train.recipes import dmd2
from nnx_train.state import TrainState, scalar
from nnx_train.step import make_train_step
from nnx_train.train import train

TINY_MODEL = ("model.hidden_size=16", "model.depth=1", "model.num_heads=2")
SMALL = ("train.batch_size=32", "eval.name=none", "samples.num_images=0", "loader.read_threads=0")
# DMD2's GAN term on, with weights large enough to change the float32 updates visibly.
GAN = ("objective.gan_generator_weight=0.5", "objective.gan_classifier_weight=0.5")


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("teacher")
    config = load("digits", *TINY_MODEL, *SMALL, "train.num_steps=2", "checkpoint.every_steps=2")
    train(config, str(workdir))
    return str(workdir)


def _dmd2_config(teacher_dir, *overrides):
    return load(
        "dmd2_digits",
        *TINY_MODEL,
        *SMALL,
        f"objective.teacher_workdir={teacher_dir}",
        *overrides,
    )


def _state_and_step(config):
    task = build.build_task(config, data_shape=(8, 8, 1))
    tx, schedule = build.build_optimizer(config)
    tx = task.wrap_optimizer(tx)
    graphdef, params, rest = nnx.split(task.build_trainable(), nnx.Param, ...)
    frozen_graphdef, frozen_state = nnx.split(task.build_frozen())
    state = TrainState(
        step=scalar(0),
        params=params,
        rest=rest,
        opt_state=tx.init(params),
        ema=init_ema(params, (0.99,)),
        key=jax.random.key_data(jax.random.key(0)),
        num_nonfinite=scalar(0),
    )
    step = make_train_step(
        graphdef=graphdef,
        frozen_graphdef=frozen_graphdef,
        loss_fn=task.loss_fn,
        optimizer=tx,
        schedule=schedule,
        ema_decays=(0.99,),
    )
    return state, frozen_state, jax.jit(step)


def _flat(tree):
    return np.concatenate([np.ravel(np.asarray(x)) for x in jax.tree.leaves(tree)])


def test_two_time_scale_rule(teacher_dir):
    config = _dmd2_config(
        teacher_dir,
        "objective.fake_updates_per_generator_update=4",
        "optimizer.learning_rate=0.003",
    )
    state, frozen_state, step = _state_and_step(config)
    rng = np.random.default_rng(0)
    generator, fake, losses = [], [], []  # snapshots before each step
    for _ in range(10):
        generator.append(_flat(state.params["generator"]))
        fake.append(_flat(state.params["fake_score"]))
        batch = {
            "x": jnp.asarray(rng.uniform(-1, 1, (16, 8, 8, 1)), jnp.float32),
            "y": jnp.asarray(rng.integers(0, 10, 16), jnp.int32),
        }
        state, metrics = step(state, frozen_state, batch)
        losses.append(float(metrics["fake_score_loss"]))
    moved = [not np.array_equal(a, b) for a, b in zip(generator, generator[1:])]
    # generator[i + 1] is after step i: the generator moves on steps 4, 8, ... only.
    assert moved[1:] == [i % 4 == 0 for i in range(1, 9)]
    assert all(not np.array_equal(a, b) for a, b in zip(fake, fake[1:]))
    assert all(np.isfinite(losses))


def _squared_norms(grads) -> dict[str, float]:
    names = ("generator", "fake_score", "gan_head")
    return {n: float(sum(jnp.sum(g**2) for g in jax.tree.leaves(grads[n]))) for n in names}


def test_gan_terms_reach_only_their_networks(teacher_dir):
    config = _dmd2_config(teacher_dir, *GAN)
    pair = build.build_task(config, data_shape=(8, 8, 1)).build_trainable()
    rng = np.random.default_rng(0)
    noise = jnp.asarray(rng.standard_normal((8, 8, 8, 1)), jnp.float32)
    real = jnp.asarray(rng.uniform(-1, 1, (8, 8, 8, 1)), jnp.float32)
    y = jnp.arange(8, dtype=jnp.int32)
    key = jax.random.key(0)

    def generated(pair):
        return no.data_predictor(pair.generator)(noise, jnp.ones((8,)), y)

    def generator_term(pair):
        return dmd2._gan_generator_loss(config.objective, pair, generated(pair), y, key).mean()

    def classifier_term(pair):
        loss = dmd2._gan_classifier_loss(config.objective, pair, real, generated(pair), y, key)
        return loss.mean()

    # Exactly zero (stop-gradient), not small, for the networks a term must not train.
    generator_norms = _squared_norms(nnx.grad(generator_term)(pair))
    assert generator_norms["generator"] > 0, generator_norms
    assert generator_norms["fake_score"] == 0 and generator_norms["gan_head"] == 0
    classifier_norms = _squared_norms(nnx.grad(classifier_term)(pair))
    assert classifier_norms["generator"] == 0, classifier_norms
    assert classifier_norms["fake_score"] > 0 and classifier_norms["gan_head"] > 0


def _first_step(config):
    """Parameters after step 0 (a generator step) on a fixed batch, and its metrics."""
    state, frozen_state, step = _state_and_step(config)
    rng = np.random.default_rng(0)
    batch = {
        "x": jnp.asarray(rng.uniform(-1, 1, (16, 8, 8, 1)), jnp.float32),
        "y": jnp.asarray(rng.integers(0, 10, 16), jnp.int32),
    }
    state, metrics = step(state, frozen_state, batch)
    return state.params, metrics


def test_gan_term_changes_the_generator_and_fake_score_updates(teacher_dir):
    plain, _ = _first_step(_dmd2_config(teacher_dir, "optimizer.learning_rate=0.003"))
    config = _dmd2_config(teacher_dir, "optimizer.learning_rate=0.003", *GAN)
    with_gan, metrics = _first_step(config)
    # Same initial generator and fake score (the teacher), same keys and batch: only the GAN
    # terms differ, so both networks' parameters after the step differ.
    for name in ("generator", "fake_score"):
        assert not np.array_equal(_flat(plain[name]), _flat(with_gan[name])), name
    assert np.isfinite(float(metrics["gan_generator_loss"]))
    assert np.isfinite(float(metrics["gan_classifier_loss"]))


@pytest.mark.parametrize(
    ("name", "extra"),
    [("dmd2_digits", ()), ("dmd2_digits", GAN), ("scd_digits", ()), ("sct_digits", ())],
)
def test_recipe_trains_and_reports_nfe(name, extra, teacher_dir, tmp_path):
    teacher = () if name == "sct_digits" else (f"objective.teacher_workdir={teacher_dir}",)
    config = load(
        name, *TINY_MODEL, *SMALL, *teacher, *extra, "train.num_steps=2", "train.log_every=1"
    )
    metrics = train(config, str(tmp_path))
    assert metrics["finished"] and metrics["nfe"] == {"dmd2_digits": 1}.get(name, 2)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["loss"]) for r in records)
    if extra:
        assert all(np.isfinite(r["gan_classifier_loss"]) for r in records)
    if name != "sct_digits":
        assert metrics["teacher_nfe"] == 19  # Heun-10 with an Euler last step


def test_student_must_copy_the_teacher_model(teacher_dir):
    config = _dmd2_config(teacher_dir, "model.depth=2")
    with pytest.raises(ConfigError, match="model differs from the teacher's in \\['depth'\\]"):
        build.build_task(config, data_shape=(8, 8, 1))


def test_missing_teacher_is_one_line(tmp_path):
    config = _dmd2_config(str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="has no config.json"):
        build.build_task(config, data_shape=(8, 8, 1))


def test_imagenet_config_keeps_the_upstream_hyperparameters():
    config = load("dmd2_imagenet")
    assert (
        config.objective.name == "dmd2" and config.objective.fake_updates_per_generator_update == 5
    )
    assert config.optimizer.learning_rate == 2e-6 and config.train.batch_size == 280
    # tianweiy/DMD2 experiments/imagenet/imagenet_gan_classifier_genloss3e-3_diffusion1000_
    # lr2e-6_scratch.sh: --gen_cls_loss_weight 3e-3, --cls_loss_weight 1e-2.
    assert config.objective.gan_generator_weight == 3e-3
    assert config.objective.gan_classifier_weight == 1e-2


def test_guided_sampling_of_a_student_is_rejected():
    config = load("sct_digits", *TINY_MODEL, "guidance.name=cfg", "guidance.scale=2.0")
    with pytest.raises(ConfigError, match="guidance.name='cfg' is ignored by the sct recipe"):
        build.build_task(config, data_shape=(8, 8, 1))


def test_consistency_recipes_read_the_sampler_steps(teacher_dir):
    teacher = (*TINY_MODEL, f"objective.teacher_workdir={teacher_dir}")
    for steps in (1, 2):
        task = build.build_task(
            load("sct_digits", f"sampler.num_steps={steps}"), data_shape=(8, 8, 1)
        )
        assert task.report["nfe"] == steps
    task = build.build_task(
        load("scd_digits", *teacher, "sampler.num_steps=1"), data_shape=(8, 8, 1)
    )
    assert task.report["nfe"] == 1
    with pytest.raises(ConfigError, match="samples in 1 or 2 consistency steps"):
        build.build_task(load("sct_digits", "sampler.num_steps=3"), data_shape=(8, 8, 1))
    with pytest.raises(ConfigError, match="sampler.solver='euler' is ignored by the scd recipe"):
        build.build_task(load("scd_digits", *teacher, "sampler.solver=euler"), data_shape=(8, 8, 1))


def test_dmd2_refuses_the_sampler_keys(teacher_dir):
    with pytest.raises(ConfigError, match="reads only objective.generator_steps"):
        build.build_task(_dmd2_config(teacher_dir, "sampler.num_steps=4"), data_shape=(8, 8, 1))
    with pytest.raises(ConfigError, match="eval.sampler_steps=\\(1, 2\\) is ignored by the dmd2"):
        build.build_task(
            _dmd2_config(teacher_dir, "eval.sampler_steps=(1, 2)"), data_shape=(8, 8, 1)
        )


def test_gan_weights_come_in_pairs(teacher_dir):
    config = _dmd2_config(teacher_dir, "objective.gan_generator_weight=0.003")
    with pytest.raises(ConfigError, match="set both > 0 for DMD2's GAN term"):
        build.build_task(config, data_shape=(8, 8, 1))
