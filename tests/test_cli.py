"""Both apps as a user runs them: ``python apps/<app> ...`` subprocesses, exit status and the
first line of output.

Every case starts its own interpreter (a jax import each, ~4 s of CPU), so all of them are
started at once by a module fixture and the tests read their results.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
TRAIN, RAE = str(REPO / "apps" / "train"), str(REPO / "apps" / "rae_eval")
SIT = str(REPO / "apps" / "train" / "configs" / "sit_b2.py")

BAD_FILES = {
    "syntax.py": "def get_config(arg=None):\n    return (\n",
    "failing_import.py": "import a_module_that_is_not_installed\n\ndef get_config(arg=None):\n"
    "    return None\n",
    "no_get_config.py": "X = 1\n",
}

# Started as subprocesses: name -> (app, arguments, exit status, start of the first line,
# words in that line).
CASES = {
    "train --help": (TRAIN, ["--help"], 0, "usage: uv run apps/train", ()),
    "train -h": (TRAIN, ["-h"], 0, "usage: uv run apps/train", ()),
    "train --helpfull": (TRAIN, ["--helpfull"], 0, "usage: uv run apps/train", ()),
    "train misspelled argument": (
        TRAIN,
        [f"--config={SIT}:smoke"],
        2,
        "error: Config file",
        ("'smoke'", "sit_b2.py:tiny"),
    ),
    "train missing data path": (
        TRAIN,
        ["--data=latents", "--data_path=/nonexistent/latents"],
        2,
        "error: data.path",
        ("does not exist",),
    ),
    "rae_eval --help": (RAE, ["--help"], 0, "usage: uv run apps/rae_eval", ()),
    "rae_eval misspelled argument": (
        RAE,
        ["--config={rae}/configs/tiny.py:smoke"],
        2,
        "error: Config file",
        ("tiny.py:cfg",),
    ),
}

# Run in this process through `main` (they fail before anything is built): arguments ->
# words of the one error line.
IN_PROCESS = {
    "missing file": (["--config=/nonexistent/sit_b3.py"], ("does not exist",)),
    "syntax error": (["--config={tmp}/syntax.py"], ("line 2", "syntax error")),
    "failing import": (["--config={tmp}/failing_import.py"], ("ModuleNotFoundError",)),
    "no get_config": (["--config={tmp}/no_get_config.py"], ("no get_config",)),
    "data path on digits": (["--config.data.path=/data"], ("Unknown config key", "--data=NAME")),
    "data path of digits": (["--data_path=/data"], ("reads no files",)),
    "unknown data source": (["--data=imagenet"], ("digits, synthetic, latents",)),
    "unknown data format": (
        ["--data=arrayrecord", f"--data_path={REPO}", "--data_format=jpeg"],
        ("pixels, latents",),
    ),
    "sample without workdir": (["sample"], ("needs --workdir",)),
    "flag of another command": (["--weights=raw"], ("applies to `sample`",)),
    "unknown command": (["smaple"], ("Unknown command", "sample")),
}


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad_configs")
    for name, text in BAD_FILES.items():
        (tmp / name).write_text(text)
    return tmp


@pytest.fixture(scope="module")
def results(bad_files):
    tmp = bad_files
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    running = {}
    for name, (app, args, *_) in CASES.items():
        argv = [a.format(tmp=tmp, rae=RAE) for a in args]
        running[name] = subprocess.Popen(
            [sys.executable, app, *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp,
            env=env,
        )
    return {name: (p.wait(timeout=300), *p.communicate()) for name, p in running.items()}


@pytest.mark.parametrize("name", list(CASES))
def test_first_line_and_status(results, name):
    _, _, status, start, words = CASES[name]
    code, out, err = results[name]
    text = out if status == 0 else err
    assert code == status, (code, out[-2000:], err[-2000:])
    assert "Traceback" not in out + err
    first = text.strip().splitlines()[0]
    assert first.startswith(start), first
    for word in words:
        assert word in first, (word, first)
    if status:
        assert len(err.strip().splitlines()) == 1, err  # one line, nothing else


@pytest.mark.parametrize("app", ["train", "rae_eval"])
def test_help_lists_flags_configs_and_arguments(results, app):
    code, out, _ = results[f"{app} --help"]
    assert code == 0
    for flag in ("--config", "--workdir", "--verbose", "--config.KEY=VALUE"):
        assert flag in out, flag
    configs = sorted(p.name for p in (REPO / "apps" / app / "configs").glob("[a-z]*.py"))
    for name in configs:
        assert f"  {name}" in out, name
    expected = "sit_b2.py[:tiny]" if app == "train" else "tiny.py[:autoguidance|cfg|reconstruct]"
    assert expected in out


def test_train_help_lists_commands_and_data_flags(results):
    out = results["train --help"][1]
    for word in ("sample", "evaluate", "--data NAME", "--data_path", "--data_format", "--step"):
        assert word in out, word
    assert "config sections (" in results["train --helpfull"][1]
    assert "config sections (" not in out


@pytest.mark.parametrize("name", list(IN_PROCESS))
def test_train_config_problems_are_one_line(bad_files, capsys, name):
    from nnx_train.cli import main

    args, words = IN_PROCESS[name]
    status = main(["train", *(a.format(tmp=bad_files) for a in args)])
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert err.startswith("error: ") and "\n" not in err, err
    for word in words:
        assert word in err, (word, err)


def test_rae_eval_misspelled_key_is_one_line(capsys):
    from rae_eval.cli import main

    status = main(
        ["rae_eval", "--config.sampler.num_stps=3"], default_config=f"{RAE}/configs/tiny.py"
    )
    err = capsys.readouterr().err.strip()
    assert status == 2 and "\n" not in err
    assert err.startswith("error: Unknown config key") and "num_steps" in err, err


@pytest.mark.parametrize("verbose", [False, True])
def test_third_party_noise_is_hidden_unless_verbose(monkeypatch, verbose):
    import logging
    import warnings

    from nnx_train.cli import main

    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    backend_log = logging.getLogger("jax._src.xla_bridge")  # "Unable to initialize backend"
    monkeypatch.setattr(backend_log, "level", logging.NOTSET)
    args = ["train", "--data=latents", "--data_path=/nonexistent/latents"]
    with warnings.catch_warnings():  # main sets the process's warning filter
        assert main(args + (["--verbose"] if verbose else [])) == 2  # after the console setup
    # XLA's C++ log level (the "Very slow compile" alarm is an ERROR line of it).
    assert os.environ.get("TF_CPP_MIN_LOG_LEVEL") == (None if verbose else "3")
    assert (backend_log.level == logging.ERROR) is not verbose
