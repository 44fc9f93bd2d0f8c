"""Every fenced code block of the READMEs and docs pages runs, or says here why it does not.

Scope: ``README.md``, ``packages/*/README.md``, ``apps/*/README.md`` and ``docs/*.md`` (the
tutorial pages are run by ``test_tutorials.py``). A block is named ``"<file>: <first line>"``
(comment dropped; `` (2)`` on a repeated first line).

- ``python`` blocks of one file run in one fresh interpreter, in order and in one namespace,
  as a reader pastes them into one session, after the text substitutions of `TINY` (smaller
  networks; each substitution must still match its block, so a README edit that removes it
  fails here). The folder is a temporary one; no inherited ``XLA_FLAGS`` (one CPU device).
- ``bash`` / ``sh`` blocks: every command (continuation lines joined, comments dropped) that
  only asks for help (``--help``, ``-h``, ``--helpfull``, ``--list``) runs from the repository
  root, ``uv run [options] X`` read as this interpreter running ``X``; it must exit 0 and
  print something (a ``usage:`` line for the help flags).
- Everything else is in `EXCLUDED` with a reason: a python block that is not run, or a shell
  block with a command that is not run. A block missing from `EXCLUDED` that does not run
  fails; an `EXCLUDED` entry that names no block fails.

Cost: one interpreter per file with python blocks and one per help command, all started at
once by a module fixture.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
PAGES = [
    REPO / "README.md",
    *sorted(REPO.glob("packages/*/README.md")),
    *sorted(REPO.glob("apps/*/README.md")),
    *sorted(REPO.glob("docs/*.md")),
]
SHELL = {"bash", "sh", "shell", "console"}
HELP = {"--help", "-h", "--helpfull", "--list"}

_TRAIN_COMMANDS = (
    "trains (minutes) or needs a trained workdir: the default runs in "
    "apps/train/tests/test_default.py, the :tiny recipes in test_recipes.py, sample and "
    "evaluate in test_commands.py; its --help line runs here"
)
_CLUSTER = "a TPU pod / GPU cluster launch; the multi-process path runs in apps/train/tests/test_multihost.py"

# Block name -> why it is not run (all of it, or its commands that are not help commands).
EXCLUDED = {
    "README.md: uv run apps/train": "trains the default (minutes; apps/train/tests/"
    "test_default.py); `uv run --group test pytest` is the whole suite, CI itself",
    "README.md: pip install packages/nnx-samplers": "installs into the current environment; "
    "tests/test_packaging.py installs packages into fresh venvs (pip and uv)",
    "packages/nnx-fid/README.md: import numpy as np": "reads the published Inception weights "
    "and ADM reference batch (docs/weights_and_data.md); test_quickstarts.py checks its names "
    "and imports",
    "packages/nnx-fid/README.md: python tools/evaluate_samples.py VIRTUAL_imagenet256_labeled.npz "
    "samples.npz --inception pt_inception-2015-12-05-6726825d.pth": "reads the published "
    "reference batch and Inception weights; both tools run on tiny files in "
    "packages/nnx-fid/tests/test_tools.py",
    "packages/nnx-nets/README.md: import jax, jax.numpy as jnp": "builds full-size DINOv2-B, "
    "SD-VAE and ViT decoder networks eagerly (about 40 s of CPU even on tiny inputs); each "
    "preset is built and run in packages/nnx-nets/tests",
    "packages/nnx-objectives/README.md: loss, aux = objective(model, x0, y, key)": "the "
    "protocol's call signature; the next block (the quickstart) defines the names and runs",
    "packages/nnx-objectives/README.md: import jax, jax.numpy as jnp": "the quickstart: run "
    "by test_quickstarts.py",
    "packages/nnx-objectives/README.md: EDMObjective(P_mean=-1.2, P_std=1.2)(EDMPrecond(unet, "
    "sigma_data=0.5), x0, y, key)": "a catalogue of calls on the recipes' networks (unet, "
    "mf_dit, sit, ...); each objective runs in packages/nnx-objectives/tests",
    "packages/nnx-samplers/README.md: import jax": "the quickstart: run by test_quickstarts.py",
    "packages/nnx-samplers/README.md: ns.sample(field, x, ns.Heun(), ns.UniformGrid(125))": "a "
    "catalogue of solver / grid / wrapper calls on the recipes' networks; each runs in "
    "packages/nnx-samplers/tests",
    "packages/nnx-sharding/README.md: import nnx_sharding as ns": "a multi-host program "
    "(loader_for_process and log are the reader's); two processes run it in "
    "packages/nnx-sharding/tests/test_multiprocess.py",
    "packages/nnx-sharding/README.md: ns.initialize_distributed(": "needs four processes and a "
    "coordinator at 10.0.0.1:1234; the argument checks are in test_distributed.py",
    "packages/nnx-weightconv/README.md: from flax import nnx": "reads the published "
    "DiT-XL-2-256x256.pt (2.7 GB); the same calls run on tiny checkpoints in "
    "packages/nnx-weightconv/tests/test_dit_official.py",
    "packages/nnx-weightconv/README.md: import json": "continues tools/convert_checkpoint.py's "
    "output (out/sit_xl2/sampling.json) with the reader's model, labels and noise",
    "packages/nnx-weightconv/README.md: from flax import nnx (2)": "reads the published "
    "dinov2-with-registers-base and RAE stat.pt files; tested on tiny files in "
    "test_dinov2_conversion.py and test_rae_conversion.py",
    "apps/rae_eval/README.md: # everything published by RAE (decoders, stats, DiT-DH-XL and its "
    "DiT-DH-S guide) ...": "downloads (GBs) and full evaluations; the tiny default runs in "
    "apps/rae_eval/tests/test_end_to_end.py",
    "apps/train/README.md: uv run apps/train": _TRAIN_COMMANDS,
    "apps/train/README.md: uv run apps/train sample --workdir runs/digits": "needs a trained "
    "workdir: sample and evaluate run on the digits default in apps/train/tests/test_commands.py",
    "apps/train/README.md: # rebuild sigma_rel 0.130 (EDM2-S's FID choice) -> "
    "runs/edm2_s/posthoc_ema/phema_0.13_step<N>": "needs an EDM2 run with EMA snapshots; "
    "apps/train/tests/test_posthoc_ema.py runs the tool on a tiny one",
    "apps/train/README.md: # Cloud TPU pod slice (e.g. v5p-32, 4 hosts): nothing to set, the TPU "
    "metadata is read.": _CLUSTER,
    "apps/train/README.md: from nnx_train import load_config, train": "trains the digits default "
    "for 300 steps (38 s of CPU at 2 steps, mostly setup and evaluation); the default's training "
    "is tested in apps/train/tests/test_default.py",
    "docs/weights_and_data.md: uv run tools/fetch_weights.py --list": "its second command "
    "downloads 680 MB; tests/test_fetch_weights.py fetches file:// URLs through the same tool",
    "docs/index.md: uv run --group test mkdocs build --strict": "builds the site: "
    "tests/test_docs.py runs `mkdocs build --strict`; `mkdocs serve` is a server",
    'docs/scaling_out.md: gcloud compute tpus tpu-vm ssh NAME --zone=ZONE --worker=all --command="cd '
    "repo && \\": _CLUSTER,
    "docs/scaling_out.md: uv run --extra cuda apps/train --config apps/train/configs/sit_xl2.py "
    "--workdir runs/sit_xl2 \\": _CLUSTER,
    "docs/scaling_out.md: srun --nodes=4 --ntasks-per-node=1 .venv/bin/python -m nnx_train \\": (
        _CLUSTER
    ),
}

# Block name -> (text as written, text run): smaller networks, files in the temporary folder.
TINY = {
    "packages/nnx-nets/README.md: import jax.numpy as jnp": [("DiT-XL/2", "DiT-S/2")],
    "packages/nnx-sharding/README.md: import numpy as np": [
        ("hidden_size=384", "hidden_size=32"),
        ("depth=12", "depth=2"),
        ("num_heads=6", "num_heads=2"),
    ],
    "packages/nnx-sharding/README.md: import functools": [("/tmp/sharded_run", "sharded_run")],
    "docs/precision.md: from flax import nnx": [("DiT-XL/2", "DiT-S/2")],
}


def _blocks() -> dict[str, tuple[pathlib.Path, str, str]]:
    """Block name -> (page, language, code), in page order."""
    blocks = {}
    fence = re.compile(r"^( *)```([\w.{}-]*)\n(.*?)^ *```", re.S | re.M)
    for page in PAGES:
        rel = page.relative_to(REPO).as_posix()
        for match in fence.finditer(page.read_text()):
            indent, language, body = match.groups()
            code = "\n".join(line.removeprefix(indent) for line in body.splitlines()) + "\n"
            first = next((line for line in code.splitlines() if line.strip()), "")
            if not first.startswith("#"):
                first = re.split(r"\s+# ", first)[0]
            name, count = f"{rel}: {first.strip()}", 2
            while name in blocks:
                name = f"{rel}: {first.strip()} ({count})"
                count += 1
            blocks[name] = (page, language, code)
    return blocks


BLOCKS = _blocks()


def _commands(code: str) -> list[list[str]]:
    """The commands of a shell block: continuations joined, comments dropped."""
    return [shlex.split(line, comments=True) for line in code.replace("\\\n", " ").splitlines()]


def _as_run_here(argv: list[str]) -> list[str]:
    """``uv run [--group X | --extra X] target args`` -> this interpreter running ``target``."""
    if argv[:2] == ["uv", "run"]:
        rest = argv[2:]
        while rest and rest[0].startswith("--"):
            rest = rest[2:] if rest[0] in ("--group", "--extra") else rest[1:]
        argv = rest if rest[0] == "python" else ["python", *rest]
    return [sys.executable, *argv[1:]] if argv[0] == "python" else argv


HELP_COMMANDS = {
    " ".join(argv): _as_run_here(argv)
    for _, language, code in BLOCKS.values()
    if language in SHELL
    for argv in _commands(code)
    if argv and HELP & set(argv)
}


def _python_runs() -> dict[str, list[tuple[str, str]]]:
    """Page -> the (name, code) of its python blocks that run, substitutions applied."""
    runs: dict[str, list[tuple[str, str]]] = {}
    for name, (page, language, code) in BLOCKS.items():
        if language != "python" or name in EXCLUDED:
            continue
        for written, run in TINY.get(name, []):
            code = code.replace(written, run)
        runs.setdefault(page.relative_to(REPO).as_posix(), []).append((name, code))
    return runs


PYTHON_RUNS = _python_runs()

DRIVER = """
import json, sys, traceback
namespace = {"__name__": "__main__"}
for name, code in json.load(open(sys.argv[1])):
    try:
        exec(compile(code, name, "exec"), namespace)
    except BaseException:
        traceback.print_exc()
        sys.exit(f"FAILED: {name}")
    print(f"RAN: {name}", flush=True)
"""


def test_every_block_runs_or_is_excluded_with_a_reason():
    assert sorted(set(EXCLUDED) - set(BLOCKS)) == [], "EXCLUDED names blocks that do not exist"
    assert all(len(reason) > 20 for reason in EXCLUDED.values())
    for name, substitutions in TINY.items():
        assert name in BLOCKS and name not in EXCLUDED, name
        for written, _ in substitutions:
            assert written in BLOCKS[name][2], (name, written)
    not_run = [
        name
        for name, (_, language, code) in BLOCKS.items()
        if language in SHELL
        and name not in EXCLUDED
        and any(argv and not HELP & set(argv) for argv in _commands(code))
    ]
    assert not_run == [], "shell blocks with commands no test runs: add them to EXCLUDED"
    assert len(HELP_COMMANDS) >= 2 and len(PYTHON_RUNS) >= 2  # the test can see blocks


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "TF_CPP_MIN_LOG_LEVEL")}
    env.update(JAX_PLATFORMS="cpu", OMP_NUM_THREADS="1")
    started = {}
    for page, blocks in PYTHON_RUNS.items():
        folder = tmp_path_factory.mktemp(re.sub(r"\W", "_", page))
        (folder / "blocks.json").write_text(json.dumps(blocks))
        started[page] = subprocess.Popen(
            [sys.executable, "-c", DRIVER, "blocks.json"], cwd=folder, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
    for command, argv in HELP_COMMANDS.items():
        started[command] = subprocess.Popen(
            argv, cwd=REPO, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
    return {
        key: (proc.communicate(timeout=600)[0], proc.returncode) for key, proc in started.items()
    }


@pytest.mark.parametrize("page", sorted(PYTHON_RUNS))
def test_python_blocks_run_as_written(runs, page):
    output, status = runs[page]
    assert status == 0, output[-4000:]
    ran = [line.removeprefix("RAN: ") for line in output.splitlines() if line.startswith("RAN: ")]
    assert ran == [name for name, _ in PYTHON_RUNS[page]], output[-4000:]


@pytest.mark.parametrize("command", sorted(HELP_COMMANDS))
def test_help_commands_run(runs, command):
    output, status = runs[command]
    assert status == 0, output[-3000:]
    assert output.strip(), command
    if HELP & set(command.split()) - {"--list"}:
        assert re.search(r"^usage: ", output, re.M), output[:3000]
