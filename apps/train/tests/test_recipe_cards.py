"""Every config file has a recipe card (docs/recipes/<config>.md) that agrees with it.

A card lists every hyperparameter of training and evaluation with the paper / seed value, its
source, our value and why ours differs (`nnx_train.recipe_card`). Changing a config value
without its card, or the card without the config, fails here.
"""

import pathlib

import pytest
from train_testlib import CONFIG_DIR, load

from nnx_train.recipe_card import card_keys, check_card, literal, parse_card

CARDS = pathlib.Path(__file__).resolve().parents[3] / "docs" / "recipes"
CONFIGS = sorted(p.stem for p in pathlib.Path(CONFIG_DIR).glob("*.py"))


def _card(name: str) -> str:
    path = CARDS / f"{name}.md"
    assert path.is_file(), f"{name}: no recipe card; write docs/recipes/{name}.md"
    return path.read_text()


@pytest.mark.parametrize("name", CONFIGS)
def test_card_agrees_with_config(name):
    assert check_card(load(name), _card(name)) == []


@pytest.mark.parametrize("name", CONFIGS)
def test_card_fails_when_a_config_value_changes(name):
    # Mutation check: scale the learning rate; the card must notice.
    config = load(name)
    changed = config.optimizer.learning_rate * 1.2
    mutated = load(name, f"optimizer.learning_rate={changed!r}")
    problems = check_card(mutated, _card(name))
    assert problems == [
        f"optimizer.learning_rate: the card says "
        f"{_ours(name, 'optimizer.learning_rate')}, the config has {changed!r}"
    ]


def _ours(name, key):
    return next(r["ours"] for r in parse_card(_card(name)) if r["key"] == f"`{key}`")


def test_edm2_learning_rate_is_the_small_presets():
    # NVlabs/edm2 train_edm2.py: edm2-img512-s has lr 0.0100 (0.0120 is XS's); the card
    # and the config both say so, and a config at XS's rate fails its card.
    assert literal(_ours("edm2", "optimizer.learning_rate")) == 0.0100
    problems = check_card(load("edm2", "optimizer.learning_rate=0.012"), _card("edm2"))
    assert any(p.startswith("optimizer.learning_rate") for p in problems)


def test_check_card_reports_each_kind_of_problem():
    config = load("sit_b2")
    rows = _card("sit_b2").splitlines()
    header = [line for line in rows if not line.startswith("| `")]
    kept = [line for line in rows if line.startswith("| `") and "`ema.decays`" not in line]
    edited = [
        line.replace("| 0.9 | PyTorch AdamW default (SiT passes none) |", "| 0.95 | SiT |")
        if "`optimizer.b1`" in line
        else line
        for line in kept
    ]
    edited.append("| `train.log_every` | 100 | x | 100 |  |")
    problems = check_card(config, "\n".join(header + edited))
    assert "ema.decays: missing from the card" in problems
    assert "optimizer.b1: differs from the paper / seed value and says not why" in problems
    assert "train.log_every: on the card but not a hyperparameter of the config" in problems
    assert len(problems) == 3


def test_every_key_is_carded_once():
    for name in CONFIGS:
        keys = [r["key"] for r in parse_card(_card(name)) if r["key"].startswith("`")]
        assert len(keys) == len(set(keys)), name
        assert {k[1:-1] for k in keys} == set(card_keys(load(name))), name
