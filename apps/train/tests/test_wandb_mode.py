"""wandb: the configured mode wins, a key only matters in ``online``, and ``online`` without a
key or without the server fails at once, in one line (no fallback to offline).

wandb itself is installed (a dependency of nnx-train); a real offline run with a key in the
environment is ``test_credentials.py``'s. No test reaches the network: the unreachable server
is a closed local port.
"""

import socket
import time

import pytest
from train_testlib import config_path

from nnx_train.cli import main
from nnx_train.metrics_log import CONNECT_TIMEOUT_S, check_wandb, wandb_mode


@pytest.fixture
def no_env_mode(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_MODE", raising=False)  # the conftest sets it to disabled
    monkeypatch.setenv("NETRC", str(tmp_path / "no_netrc"))  # no `wandb login` of this machine
    monkeypatch.setenv("WANDB_SILENT", "true")


@pytest.mark.parametrize("mode", ["disabled", "offline"])
def test_a_key_does_not_change_the_configured_mode(no_env_mode, monkeypatch, mode):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_mode(mode) == mode
    assert check_wandb(mode) == mode  # no key or network check outside online


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed once the socket is: connections are refused


@pytest.mark.parametrize(
    "key, words",
    [("", ("needs WANDB_API_KEY", "wandb_mode=offline")), ("x" * 40, ("cannot be reached",))],
)
def test_online_without_key_or_server_is_one_line_and_fast(
    no_env_mode, monkeypatch, tmp_path, capsys, key, words
):
    monkeypatch.setenv("WANDB_API_KEY", key)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{_closed_port()}")
    start = time.perf_counter()
    status = main(
        ["train", f"--workdir={tmp_path}", "--config.logging.wandb_mode=online"],
        default_config=config_path("digits"),
    )
    elapsed = time.perf_counter() - start
    err = capsys.readouterr().err.strip()
    assert status == 2 and err.startswith("error: ") and "\n" not in err, err
    for word in words:
        assert word in err, (word, err)
    # Before anything is built or trained: no checkpoint, no run files. The bound is the
    # connection timeout plus parsing the command line on a loaded 2-core machine.
    assert not (tmp_path / "config.json").exists()
    assert elapsed < CONNECT_TIMEOUT_S + 20
