"""Credentials come only from the environment and are never written or logged.

``WANDB_API_KEY`` and ``GOOGLE_APPLICATION_CREDENTIALS`` (a fake service-account file whose
private key is a recognisable string) are set; then everything a run writes is produced:
the run files (``config.json``, ``run_info.json``), a wandb run in offline mode (its files
under ``workdir/wandb``), the metrics file and an orbax checkpoint. Neither secret may appear
in any of these files, in stdout / stderr, or in any logging record. The full training loop
does the same with these variables set in ``test_kill_resume.py`` (five processes, every file
and their output checked) and ``test_default.py`` (the wandb key). A secret passed as a config
key is refused: the config has no credential keys.
"""

import json
import logging

import jax.numpy as jnp
import pytest
from train_testlib import config_path

from nnx_train.checkpointing import Checkpointer
from nnx_train.cli import main
from nnx_train.data import SyntheticSource, make_iterator
from nnx_train.metrics_log import MetricsLogger
from nnx_train.provenance import write_run_files
from nnx_train.state import TrainState

WANDB_SECRET = "wandb0secret0" + "9f3c1d" * 5
GCS_SECRET = "gcs-private-key-7e51b0a2c4"


@pytest.fixture
def secrets(tmp_path, monkeypatch):
    """Both credentials in the environment; the key file lives outside the workdir."""
    key_file = tmp_path / "service_account.json"
    key_file.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "test-project",
                "private_key_id": "0123",
                "private_key": f"-----BEGIN PRIVATE KEY-----\n{GCS_SECRET}\n-----END PRIVATE KEY-----\n",
                "client_email": "trainer@test-project.iam.gserviceaccount.com",
            }
        )
    )
    monkeypatch.setenv("WANDB_API_KEY", WANDB_SECRET)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    return tmp_path / "run"


def _assert_no_secret_in(text: bytes | str, where: str) -> None:
    data = text.encode() if isinstance(text, str) else text
    for secret in (WANDB_SECRET, GCS_SECRET):
        assert secret.encode() not in data, f"{where} holds a credential"


def test_run_outputs_hold_no_credentials(secrets, capfd, caplog):
    workdir = secrets
    workdir.mkdir()
    from train_testlib import load

    config = load("sit_b2", arg="tiny")
    caplog.set_level(logging.DEBUG)
    write_run_files(str(workdir), config.to_dict())
    logger = MetricsLogger(
        str(workdir), config=config.to_dict(), project="p", mode="offline", run_name="r"
    )
    assert logger._run is not None  # wandb really ran (offline), so its files are checked
    for step in (1, 2):
        logger.log(step, {"loss": 1.0 / step})
    logger.close()
    state = TrainState(
        step=jnp.int32(2),
        params={"w": jnp.ones((4, 4))},
        rest={},
        opt_state={},
        ema={},
        key=jnp.zeros(2, jnp.uint32),
        num_nonfinite=jnp.int32(0),
    )
    iterator = make_iterator(
        SyntheticSource(shape=(1, 1, 1), num_examples=4),
        global_batch_size=2,
        seed=0,
        read_threads=0,
    )
    checkpointer = Checkpointer(str(workdir / "checkpoints"), keep=1, model_name="toy")
    checkpointer.save(state, iterator)
    checkpointer.close()

    # The scan finds a secret where there is one (the key file, outside the workdir).
    with pytest.raises(AssertionError, match="holds a credential"):
        _assert_no_secret_in((workdir.parent / "service_account.json").read_bytes(), "key file")
    files = [p for p in workdir.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"config.json", "run_info.json", "metrics.jsonl", "commit_success.txt"} <= names
    assert any(p.suffix == ".wandb" for p in files), names  # the offline wandb run
    for path in files:
        _assert_no_secret_in(path.read_bytes(), str(path))
    captured = capfd.readouterr()
    _assert_no_secret_in(captured.out + captured.err, "stdout/stderr")
    for record in caplog.records:
        _assert_no_secret_in(record.getMessage(), f"log record {record.name}")


def test_credential_in_the_config_is_refused(secrets, capsys):
    status = main(
        ["train", f"--workdir={secrets}", f"--config.logging.wandb_api_key={WANDB_SECRET}"],
        default_config=config_path("digits"),
    )
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("error: Unknown config key in the overrides: 'wandb_api_key'"), err
    assert "\n" not in err.rstrip("\n")
    _assert_no_secret_in(err, "the error message")
    assert not secrets.exists()  # refused before anything was written
