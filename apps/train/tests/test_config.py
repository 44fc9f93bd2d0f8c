"""Config files, flags and build.py: every recipe loads, typos and bad names fail clearly."""

import pytest
from train_testlib import RECIPES, config_path

from nnx_train.cli import load_config, parse_args
from nnx_train.errors import ConfigError

# Sections a ``:tiny`` variant may change; everything else (objective, optimiser, schedule,
# EMA, sampler) must be the recipe's own, so the smoke run exercises the real recipe.
TINY_MAY_CHANGE = {
    "name",
    "data",
    "loader",
    "model",
    "train",
    "checkpoint",
    "samples",
    "eval",
    "autoencoder",
    "logging",
    "sharding",
    "sampler.num_steps",
}


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_loads_and_tiny_keeps_the_recipe(name):
    full = load_config(config_path(name)).to_dict()
    tiny = load_config(config_path(name) + ":tiny").to_dict()
    assert full["name"] == name
    assert tiny["data"]["name"] == "synthetic"
    for section, value in full.items():
        if section in TINY_MAY_CHANGE:
            continue
        if section == "sampler":
            value = {k: v for k, v in value.items() if k != "num_steps"}
            other = {k: v for k, v in tiny[section].items() if k != "num_steps"}
            assert value == other, section
        elif section == "objective":
            # Only the frozen encoder may shrink (REPA, RAE stage 1); the objective's own
            # hyperparameters are the recipe's.
            strip = lambda d: {
                k: v for k, v in d.items() if k not in ("encoder", "depth", "projector_width")
            }
            assert strip(value) == strip(tiny[section])
        else:
            assert value == tiny[section], section


def test_recipe_docstrings_name_command_and_fid():
    for name in RECIPES:
        with open(config_path(name)) as handle:
            text = handle.read()
        docstring = text.split('"""')[1]
        assert "uv run apps/train --config apps/train/configs/" in docstring, name
        assert "FID" in docstring, name


def test_misspelled_override_fails_with_suggestion():
    with pytest.raises(ConfigError, match=r"num_steps"):
        load_config(config_path("digits"), ["train.num_step=3"])


def test_unknown_section_fails():
    with pytest.raises(ConfigError, match="Unknown config key"):
        load_config(config_path("digits"), ["trian.num_steps=3"])


def test_override_types_and_workdir_default():
    config, workdir = parse_args(
        ["train", "--config.train.num_steps=7", "--config.ema.decays=(0.9,0.99)"],
        default_config=config_path("digits"),
    )
    assert config.train.num_steps == 7 and tuple(config.ema.decays) == (0.9, 0.99)
    assert workdir.endswith("runs/digits")


def test_wrong_type_override_fails():
    with pytest.raises(ConfigError):
        load_config(config_path("digits"), ["train.num_steps=abc"])


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("sampler.solver=rk4", "sampler.solver='rk4'; valid names: euler, heun"),
        ("model.name=UNet", "model.name='UNet'; valid names: DiT"),
        ("data.name=mnist", "data.name='mnist'; valid names: digits"),
        ("objective.path=cosine", "objective.path='cosine'; valid names: linear"),
        ("sharding.strategy=zero3", "sharding.strategy='zero3'; valid names: replicate"),
    ],
)
def test_build_names_list_valid_choices(override, expected):
    from nnx_train import build

    config = load_config(config_path("digits"), [override])
    with pytest.raises(ConfigError) as info:
        section = override.split(".")[0]
        match section:
            case "sampler":
                build.build_solver(config.sampler)
            case "model":
                build.build_model_factory(config.model, seed=0)
            case "data":
                build.build_data_source(config)
            case "objective":
                build.build_task(config, data_shape=(8, 8, 1))
            case "sharding":
                build.build_mesh_and_rules(config.sharding)
    assert expected in str(info.value)


def test_model_argument_typo_is_reported():
    from ml_collections import ConfigDict

    from nnx_train import build

    model = ConfigDict(
        {
            "name": "DiT",
            "input_size": 8,
            "patch_size": 2,
            "in_channels": 1,
            "hidden_size": 32,
            "depth": 1,
            "num_heads": 2,
            "num_class": 10,
        }
    )
    with pytest.raises(ConfigError, match=r"takes no argument\(s\) \['num_class'\]"):
        build.build_model_factory(model, seed=0)


def test_data_that_does_not_fit_the_model():
    from nnx_train import build

    config = load_config(config_path("digits"), ["model.input_size=16"])
    with pytest.raises(ConfigError, match="built for 16x16"):
        build.check_data_fits_model((8, 8, 1), 10, config)
    config = load_config(config_path("digits"), ["model.patch_size=3", "model.input_size=8"])
    with pytest.raises(ConfigError, match="not divisible by model.patch_size=3"):
        build.check_data_fits_model((8, 8, 1), 10, config)


@pytest.mark.parametrize(
    ("name", "override", "expected"),
    [
        # MeanFlow always samples with EulerJump on an unshifted uniform grid, unguided.
        ("meanflow_b2", "sampler.solver=heun", "sampler.solver='heun' is ignored by the meanflow"),
        ("meanflow_b2", "sampler.t_start=0.9", "sampler.t_start=0.9 is ignored by the meanflow"),
        ("meanflow_b2", "time_shift=2.0", "time_shift=2.0 is ignored by the meanflow"),
        ("rae_stage1", "sampler.grid=edm", "sampler.grid='edm' is ignored by the rae_decoder"),
        # Keys that belong to another choice of the same section.
        ("digits", "sampler.diffusion=linear", "sampler.diffusion='linear' is ignored by sampler"),
        ("edm2", "sampler.t_start=0.5", "sampler.t_start=0.5 is ignored by sampler.grid='edm'"),
        ("edm2", "guidance.scale=2.0", "is ignored by guidance.name='none'"),
        ("meanflow_b2", "guidance.name=cfg", "guidance.name='cfg' is ignored by the meanflow"),
        (
            "digits",
            "objective.time_distribution.mean=0.5",
            "is ignored by time_distribution.name='uniform'",
        ),
    ],
)
def test_a_key_the_recipe_ignores_is_an_error(name, override, expected):
    from nnx_train import build

    config = load_config(config_path(name) + ":tiny", [override])
    with pytest.raises(ConfigError, match=expected):
        build.build_task(config, data_shape=(8, 8, 4))


@pytest.mark.parametrize("name", RECIPES)
def test_every_tiny_recipe_builds_its_task(name):
    from nnx_train import build

    config = load_config(config_path(name) + ":tiny")
    shape = tuple(config.data.shape)
    task = build.build_task(config, data_shape=shape)
    assert task.num_classes == config.data.num_classes
