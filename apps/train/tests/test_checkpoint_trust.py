"""Checkpoints that look valid but are not, folders this user may not read, and setting a
broken checkpoint aside: named, never deleted.

Same toy `TrainState` and steps 1 and 2 as ``test_checkpoint_faults.py`` (its helpers).
The trainer runs as root in CI, where file modes do not stop reads, so permission and
read-only failures are injected by raising the errno the kernel gives (EACCES, EROFS) from
the one call that meets it.
"""

import errno
import json
import logging
import os

import pytest
from etils import epath
from test_checkpoint_faults import _assert_is_step, _restore, _save_two_steps

from nnx_train.checkpointing import COMMIT_MARKER
from nnx_train.errors import CheckpointError


def test_valid_but_wrong_data_position_is_named_and_previous_used(tmp_path, caplog):
    _save_two_steps(tmp_path)
    position = tmp_path / "2" / "data" / "process_0-of-1.json"
    saved = json.loads(position.read_text())
    assert saved["next_index"] == 3  # three batches read at step 2
    position.write_text(json.dumps({**saved, "next_index": 1}))  # a valid, earlier position
    with caplog.at_level(logging.WARNING, logger="nnx_train.checkpointing"):
        state, iterator = _restore(tmp_path)
    assert (
        "the data-iterator position data/process_0-of-1.json differs from its fingerprint"
        in caplog.text
    )
    _assert_is_step(state, iterator, step=1, batches_read=1)
    assert (tmp_path / "2.corrupt").is_dir()


def test_unreadable_step_folder_is_a_permission_error_not_a_broken_step(tmp_path, monkeypatch):
    _save_two_steps(tmp_path)
    stat = os.stat
    denied = str(tmp_path / "2")

    def no_access(path, *args, **kwargs):
        if os.fspath(path).startswith(denied + os.sep):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", no_access)
    with pytest.raises(CheckpointError) as info:
        _restore(tmp_path)
    monkeypatch.undo()
    message = str(info.value)
    assert message.startswith(f"Permission denied reading the checkpoint {tmp_path}/2 (")
    assert "nothing was changed" in message and "delet" not in message.lower()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1", "2"]  # nothing moved


def test_setting_aside_keeps_every_earlier_corrupt_copy(tmp_path):
    _save_two_steps(tmp_path)
    (tmp_path / "2.corrupt").mkdir()
    (tmp_path / "2.corrupt" / "earlier.txt").write_text("set aside by an earlier run")
    (tmp_path / "2" / COMMIT_MARKER).unlink()
    state, iterator = _restore(tmp_path)
    _assert_is_step(state, iterator, step=1, batches_read=1)
    assert (tmp_path / "2.corrupt" / "earlier.txt").read_text() == "set aside by an earlier run"
    assert (tmp_path / "2.corrupt-2" / "manifest").is_dir()


def test_setting_aside_on_a_read_only_directory_is_one_clear_error(tmp_path, monkeypatch):
    _save_two_steps(tmp_path)
    (tmp_path / "2" / COMMIT_MARKER).unlink()

    def read_only(self, target):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(type(epath.Path(tmp_path)), "rename", read_only)
    with pytest.raises(CheckpointError) as info:
        _restore(tmp_path)
    assert str(info.value) == (
        f"Cannot set aside the unreadable checkpoint {tmp_path}/2 as 2.corrupt (OSError: "
        f"[Errno 30] Read-only file system: '{tmp_path}/2'): the checkpoint directory is not "
        "writable, so this run could not save either. Make it writable, or resume from a "
        "writable copy (--config.checkpoint.directory)."
    )
    assert (tmp_path / "2").is_dir()


def test_disk_full_during_an_async_save_is_one_line(tmp_path, monkeypatch, capsys):
    """The error orbax re-raises in the main thread (measured on a 200 KB tmpfs: a
    ValueError RESOURCE_EXHAUSTED ... No space left on device) becomes one CheckpointError,
    and the background thread's logged traceback is dropped."""
    import logging

    import orbax.checkpoint as ocp

    from nnx_train.checkpointing import Checkpointer

    full = ValueError(
        'RESOURCE_EXHAUSTED: Error writing local file "x/_sharding": Failed to write 25358 '
        "bytes to file 4: No space left on device [os_error_code='28']"
    )
    checkpointer = Checkpointer(str(tmp_path), keep=1, model_name="toy")
    # What orbax's background thread logs when a write fails (orbax _src/futures/future.py).
    record = logging.LogRecord(
        "absl",
        logging.ERROR,
        f"{os.sep}site-packages{os.sep}orbax{os.sep}future.py",
        1,
        "_SignalingThread.run() raised an exception: %s",
        (full,),
        (ValueError, full, None),
    )
    assert not logging.getLogger("absl").filter(record)
    monkeypatch.setattr(
        ocp.CheckpointManager, "wait_until_finished", lambda self: (_ for _ in ()).throw(full)
    )
    with pytest.raises(CheckpointError) as info:
        checkpointer.wait()
    message = str(info.value)
    assert "\n" not in message and message.startswith(
        f"No space left to write a checkpoint in {tmp_path} (ValueError: RESOURCE_EXHAUSTED"
    )
    assert message.endswith(
        "free space there or set checkpoint.directory to a larger disk, then resume with the "
        "same command (the last complete checkpoint is kept)."
    )
