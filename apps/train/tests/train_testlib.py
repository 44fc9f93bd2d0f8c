"""Helpers shared by the trainer's tests (imported by name: this folder is in pytest's
``pythonpath``)."""

import os

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
RECIPES = (
    "sit_b2",
    "sit_b2_logitnormal",
    "sit_xl2",
    "dit_xl2",
    "repa_xl2",
    "lightningdit_xl2",
    "meanflow_b2",
    "meanflow_xl2",
    "edm2",
    "edm_imagenet64",
    "edm_digits",
    "rae_stage2",
    "rae_stage1",
)


def config_path(name: str) -> str:
    """Path of ``apps/train/configs/<name>.py``."""
    return os.path.join(CONFIG_DIR, f"{name}.py")


def load(name: str, *overrides: str, arg: str | None = None):
    """The locked config of a config file with ``a.b=value`` overrides."""
    from nnx_train.cli import load_config

    return load_config(config_path(name) + (f":{arg}" if arg else ""), overrides)


def assert_same_states(arrays_a, arrays_b) -> None:
    """Two flattened train states (``[(path, array)]``) are bitwise equal, leaf by leaf, and
    both hold every part that a resume restores (parameters, EMA, optimiser, key, step)."""
    import jax
    import numpy as np

    names = [jax.tree_util.keystr(p) for p, _ in arrays_a]
    assert names == [jax.tree_util.keystr(p) for p, _ in arrays_b]
    for part in ("'params'", "'ema'", "'opt_state'", "'key'", "'step'"):
        assert any(part in n for n in names), part
    for (path, a), (_, b) in zip(arrays_a, arrays_b, strict=True):
        np.testing.assert_array_equal(
            np.asarray(a), np.asarray(b), err_msg=jax.tree_util.keystr(path)
        )
