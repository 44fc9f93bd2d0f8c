"""More bad input, one line each: out-of-range config values, a busy workdir, checkpoints
that look valid but are not (``docs/bad_inputs.md``; the tools' inputs are in
``tests/test_bad_tool_inputs.py``).

Same rules as ``tests/test_bad_inputs.py``: each test makes one mistake and compares the
whole message with `EXPECTED` (``<dir>`` is the test's temporary folder, ``<pid>`` and
``<host>`` the lock holder's); `test_docs_rows_of_this_file` checks the table's rows that
name this file. Config values are checked by `nnx_train.validation.validate_config` before
anything is built; the tools check their inputs before loading any network.
"""

import errno
import json
import os
import pathlib
import re
import socket
import subprocess
import sys

import numpy as np
import pytest

from nnx_train.cli import load_config, main
from nnx_train.errors import TrainError
from nnx_train.validation import validate_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
DIGITS = str(ROOT / "apps" / "train" / "configs" / "digits.py")
DOCS_TABLE = ROOT / "docs" / "bad_inputs.md"
# The test files whose tests make up the table (each checks its own rows).
TABLE_FILES = (
    "tests/test_bad_inputs.py",
    "tests/test_bad_values.py",
    "tests/test_bad_tool_inputs.py",
)


def _range(key: str, value: str, requirement: str) -> str:
    return f"{key}={value} is out of range; set --config.{key} to {requirement}."


EXPECTED = {
    "test_negative_number_of_steps": "error: " + _range("train.num_steps", "-5", "an integer >= 1"),
    "test_log_every_zero": _range("train.log_every", "0", "an integer >= 1"),
    "test_negative_warmup": _range("schedule.warmup_steps", "-1", "an integer >= 0"),
    "test_negative_number_of_sample_images": _range("samples.num_images", "-3", "an integer >= 0"),
    "test_patch_size_zero": _range("model.patch_size", "0", "an integer >= 1"),
    "test_hidden_size_zero": _range("model.hidden_size", "0", "an integer >= 1"),
    "test_heads_that_do_not_divide_the_width": (
        "model.num_heads=3 does not divide model.hidden_size=64; choose a number of heads "
        "that divides the width (e.g. 2)."
    ),
    "test_zero_sampler_steps": _range("sampler.num_steps", "0", "an integer >= 1"),
    "test_holdout_fraction_above_one": _range("data.holdout_fraction", "1.5", "a number in (0, 1)"),
    "test_mesh_axis_of_three_on_eight_devices": (
        "sharding: Mesh axes data=3 x fsdp=1 x sequence=1 x tensor=1 multiply to 3 but there "
        "are 8 devices; make the product 8, or set one axis to -1 to infer it. Set the sizes "
        "with --config.sharding.data, .fsdp, .sequence and .tensor."
    ),
    "test_time_shift_zero": _range("time_shift", "0.0", "a finite number > 0"),
    "test_no_evaluation_samples": _range(
        "eval.num_samples",
        "0",
        "an integer >= 1 when eval.name='digits' (or set eval.name='none')",
    ),
    "test_nan_learning_rate": _range("optimizer.learning_rate", "nan", "a finite number > 0"),
    "test_class_dropout_above_one": _range("objective.class_dropout", "1.5", "a number in [0, 1]"),
    "test_zero_batch_size": _range("train.batch_size", "0", "an integer >= 1"),
    "test_adam_b2_of_one": _range("optimizer.b2", "1.0", "a number in [0, 1)"),
    "test_negative_checkpoint_interval": _range("checkpoint.every_steps", "-1", "an integer >= 0"),
    "test_negative_clip_norm": _range("optimizer.grad_clip_norm", "-1.0", "a finite number >= 0"),
    "test_sampler_that_starts_at_the_data": _range("sampler.t_start", "0.0", "a number in (0, 1]"),
    "test_ema_decay_above_one": _range("ema.decays", "(1.5,)", "numbers in [0, 1)"),
    "test_guidance_interval_reversed": _range(
        "guidance.interval", "(0.8, 0.2)", "(low, high) with 0 <= low <= high <= 1"
    ),
    "test_workdir_in_use": (
        "The workdir <dir> is in use by another run (pid <pid> on host <host>, started "
        "1970-01-01 00:00:00 UTC); wait for it to end or use another --workdir."
    ),
    "test_workdir_in_use_on_another_host": (
        "The workdir <dir> is in use by a run on another host (pid 4242 on host 'tpu-vm-7', "
        "started 1970-01-01 00:00:00 UTC); wait for it to end or use another --workdir. If "
        "that run is gone, remove <dir>/train.lock by hand."
    ),
    "test_checkpoint_with_a_wrong_data_position": (
        "No readable checkpoint in <dir>: step 1: the data-iterator position "
        "data/process_0-of-1.json differs from its fingerprint. They are kept for "
        "inspection; restore a good copy into that folder, or start a new --workdir (or "
        "checkpoint.directory)."
    ),
    "test_unreadable_checkpoint_folder": (
        "Permission denied reading the checkpoint <dir>/1 (PermissionError: [Errno 13] "
        "Permission denied: '<dir>/1/commit_success.txt'); nothing was changed. Give the "
        "user running the trainer read access to it (e.g. chmod -R u+rX), or point "
        "checkpoint.directory at a copy it can read."
    ),
    "test_nan_latent_file": (
        "Latent file 00000/img00000001.npy in <dir> holds 1 NaN/Inf value(s) (a diverged or "
        "damaged encoding). Delete it and re-run tools/extract_latents.py, which rewrites "
        "missing files."
    ),
}


def _check(error: BaseException, name: str, tmp_path=None, replace=None) -> None:
    """The message of ``error`` is one line and exactly ``EXPECTED[name]``."""
    message, expected = str(error), EXPECTED[name]
    if tmp_path is not None:
        expected = expected.replace("<dir>", str(tmp_path))
    for placeholder, value in (replace or {}).items():
        expected = expected.replace(placeholder, value)
    assert "\n" not in message and "Traceback" not in message
    assert message == expected


def _config_error(*overrides: str, name: str, edit=None) -> None:
    """`validate_config` of the digits config with ``overrides`` raises ``EXPECTED[name]``."""
    config = load_config(DIGITS, overrides)
    if edit is not None:
        with config.unlocked():
            edit(config)
    with pytest.raises(TrainError) as info:
        validate_config(config)
    _check(info.value, name)


# ------------------------------------------------------------------ config values in range


def test_negative_number_of_steps(tmp_path, capsys):
    workdir = tmp_path / "run"
    argv = ["train", f"--workdir={workdir}", "--config.train.num_steps=-5"]
    assert main(argv, default_config=DIGITS) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    _check(ValueError(err.rstrip("\n")), "test_negative_number_of_steps")
    assert not workdir.exists()  # refused before anything was built or written


def test_log_every_zero():
    _config_error("train.log_every=0", name="test_log_every_zero")


def test_negative_warmup():
    _config_error("schedule.warmup_steps=-1", name="test_negative_warmup")


def test_negative_number_of_sample_images():
    _config_error("samples.num_images=-3", name="test_negative_number_of_sample_images")


def test_patch_size_zero():
    _config_error("model.patch_size=0", name="test_patch_size_zero")


def test_hidden_size_zero():
    _config_error("model.hidden_size=0", name="test_hidden_size_zero")


def test_heads_that_do_not_divide_the_width():
    _config_error("model.num_heads=3", name="test_heads_that_do_not_divide_the_width")


def test_zero_sampler_steps():
    _config_error("sampler.num_steps=0", name="test_zero_sampler_steps")


def test_holdout_fraction_above_one():
    _config_error("data.holdout_fraction=1.5", name="test_holdout_fraction_above_one")


def test_mesh_axis_of_three_on_eight_devices():
    _config_error("sharding.data=3", name="test_mesh_axis_of_three_on_eight_devices")


def test_time_shift_zero():
    _config_error("time_shift=0.0", name="test_time_shift_zero")


def test_no_evaluation_samples():
    _config_error("eval.num_samples=0", name="test_no_evaluation_samples")


def test_nan_learning_rate():
    _config_error("optimizer.learning_rate=nan", name="test_nan_learning_rate")


def test_class_dropout_above_one():
    _config_error("objective.class_dropout=1.5", name="test_class_dropout_above_one")


def test_zero_batch_size():
    _config_error("train.batch_size=0", name="test_zero_batch_size")


def test_adam_b2_of_one():
    _config_error("optimizer.b2=1.0", name="test_adam_b2_of_one")


def test_negative_checkpoint_interval():
    _config_error("checkpoint.every_steps=-1", name="test_negative_checkpoint_interval")


def test_negative_clip_norm():
    _config_error("optimizer.grad_clip_norm=-1.0", name="test_negative_clip_norm")


def test_sampler_that_starts_at_the_data():
    _config_error("sampler.t_start=0.0", name="test_sampler_that_starts_at_the_data")


def test_ema_decay_above_one():
    def edit(config):
        config.ema.decays = (1.5,)

    _config_error(name="test_ema_decay_above_one", edit=edit)


def test_guidance_interval_reversed():
    def edit(config):
        config.guidance.interval = (0.8, 0.2)

    _config_error(name="test_guidance_interval_reversed", edit=edit)


# ------------------------------------------------------------------- workdir, checkpoints


def _lock_file(tmp_path, pid: int, host: str) -> None:
    lock = {"host": host, "pid": pid, "started": 0}
    (tmp_path / "train.lock").write_text(json.dumps(lock))


def test_workdir_in_use(tmp_path):
    from nnx_train.workdir_lock import WorkdirLock

    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _lock_file(tmp_path, holder.pid, socket.gethostname())
        with pytest.raises(TrainError) as info:
            WorkdirLock(str(tmp_path)).acquire()
    finally:
        holder.kill()
        holder.wait()
    replace = {"<pid>": str(holder.pid), "<host>": repr(socket.gethostname())}
    _check(info.value, "test_workdir_in_use", tmp_path, replace)


def test_workdir_in_use_on_another_host(tmp_path):
    from nnx_train.workdir_lock import WorkdirLock

    _lock_file(tmp_path, 4242, "tpu-vm-7")
    with pytest.raises(TrainError) as info:
        WorkdirLock(str(tmp_path)).acquire()
    _check(info.value, "test_workdir_in_use_on_another_host", tmp_path)


def _toy_checkpoint(directory):
    """One checkpoint (step 1) of a one-array state; returns ``(state, iterator factory)``."""
    import jax.numpy as jnp

    from nnx_train.checkpointing import Checkpointer
    from nnx_train.data import SyntheticSource, make_iterator
    from nnx_train.state import TrainState

    state = TrainState(
        step=jnp.int32(1),
        params={"w": jnp.ones((8, 4))},
        rest={},
        opt_state={},
        ema={},
        key=jnp.zeros(2, jnp.uint32),
        num_nonfinite=jnp.int32(0),
    )

    def iterator():
        source = SyntheticSource(shape=(1, 1, 1), num_examples=4)
        return make_iterator(source, global_batch_size=2, seed=0, read_threads=0)

    checkpointer = Checkpointer(str(directory), keep=1, model_name="toy")
    checkpointer.save(state, iterator())
    checkpointer.close()
    return state, iterator


def _restore_error(directory, state, iterator) -> TrainError:
    from nnx_train.checkpointing import Checkpointer

    checkpointer = Checkpointer(str(directory), keep=1, model_name="toy")
    try:
        with pytest.raises(TrainError) as info:
            checkpointer.restore(state, iterator())
    finally:
        checkpointer.close()
    return info.value


def test_checkpoint_with_a_wrong_data_position(tmp_path):
    state, iterator = _toy_checkpoint(tmp_path)
    position = tmp_path / "1" / "data" / "process_0-of-1.json"
    position.write_text(json.dumps({**json.loads(position.read_text()), "next_index": 2}))
    error = _restore_error(tmp_path, state, iterator)
    _check(error, "test_checkpoint_with_a_wrong_data_position", tmp_path)


def test_unreadable_checkpoint_folder(tmp_path, monkeypatch):
    # CI runs as root, where modes do not stop reads: raise what the kernel gives others.
    state, iterator = _toy_checkpoint(tmp_path)
    stat, denied = os.stat, str(tmp_path / "1") + os.sep

    def no_access(path, *args, **kwargs):
        if os.fspath(path).startswith(denied):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", no_access)
    error = _restore_error(tmp_path, state, iterator)
    monkeypatch.undo()
    _check(error, "test_unreadable_checkpoint_folder", tmp_path)


def test_nan_latent_file(tmp_path):
    from nnx_train.data import LatentSource

    os.makedirs(tmp_path / "00000")
    entries = []
    for i in range(3):
        latent = np.zeros((8, 2, 2), np.float32)
        latent[0, 0, 0] = np.nan if i == 1 else 0.0
        np.save(tmp_path / f"00000/img{i:08d}.npy", latent)
        entries.append([f"00000/img{i:08d}.npy", 0])
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": entries}))
    source = LatentSource(path=str(tmp_path), num_classes=1, posterior="sample")
    source[0]
    with pytest.raises(TrainError) as info:
        source[1]
    _check(info.value, "test_nan_latent_file", tmp_path)


# --------------------------------------------------------------------------- the docs table


def _table_rows() -> list[list[str]]:
    rows = []
    for line in DOCS_TABLE.read_text().splitlines():
        if not line.startswith("|") or set(line) <= set("|-: "):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0].lower() != "bad input":
            rows.append(cells)
    return rows


def test_docs_rows_of_this_file():
    rows = _table_rows()
    assert len(rows) >= 60
    this_file = pathlib.Path(__file__).resolve().relative_to(ROOT).as_posix()
    named = set()
    for bad_input, message, test in rows:
        path, _, name = test.strip("`").partition("::")
        assert path in TABLE_FILES, test
        if path != this_file:
            continue
        assert bad_input and name in EXPECTED, test
        assert name in globals() and callable(globals()[name]), name
        assert re.fullmatch(r"`[^`]+`", message), message
        assert message.strip("`") == EXPECTED[name], name
        named.add(name)
    assert named == set(EXPECTED), sorted(set(EXPECTED) - named)
