"""Every package README's quickstart runs as written.

The first ```python block under "## Quickstart" of ``packages/*/README.md`` is extracted and
(a) checked statically: no undefined name (ruff's F821) and no import outside the package's
own dependencies (the quickstart must work after ``pip install <package>``, plus the extras
named in `EXTRA_IMPORTS`); (b) run in a fresh interpreter, all of them at once, except the
ones in `NEEDS_FILES`, whose published weight files are not available here.
Every other fenced block of the READMEs and docs pages: ``test_readme_blocks.py``.
"""

from __future__ import annotations

import ast
import os
import pathlib
import re
import subprocess
import sys
import tomllib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
READMES = sorted(REPO.glob("packages/*/README.md"))

# Imports a quickstart may use beyond its package's dependencies (the README says so).
EXTRA_IMPORTS = {"nnx-sharding": {"optax", "nnx_nets"}}
# Quickstarts that read published files (named in the block); checked statically only.
NEEDS_FILES = {"nnx-fid": "the Inception weights and the ADM reference batch"}
STDLIB = set(sys.stdlib_module_names)


def quickstart(readme: pathlib.Path) -> str | None:
    match = re.search(r"^## Quickstart\n(.*?)(?=^## |\Z)", readme.read_text(), re.S | re.M)
    if match is None:
        return None
    block = re.search(r"```python\n(.*?)```", match.group(1), re.S)
    return block.group(1) if block else None


QUICKSTARTS = {r.parent.name: q for r in READMES if (q := quickstart(r)) is not None}


def test_the_packages_with_a_quickstart():
    # Failing here means a quickstart was added or lost: update this list and NEEDS_FILES.
    assert sorted(QUICKSTARTS) == ["nnx-fid", "nnx-objectives", "nnx-samplers", "nnx-sharding"]


def _allowed(package: str) -> set[str]:
    project = tomllib.loads((REPO / "packages" / package / "pyproject.toml").read_text())
    names = {re.split(r"[<>=!\[ ;]", d)[0] for d in project["project"]["dependencies"]}
    names = {n.replace("-", "_") for n in names} | {package.replace("-", "_")}
    return names | EXTRA_IMPORTS.get(package, set()) | STDLIB


@pytest.mark.parametrize("package", sorted(QUICKSTARTS))
def test_quickstart_imports_only_its_dependencies(package):
    tree = ast.parse(QUICKSTARTS[package])
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    assert imported <= _allowed(package), imported - _allowed(package)


@pytest.mark.parametrize("package", sorted(QUICKSTARTS))
def test_quickstart_has_no_undefined_name(package, tmp_path):
    path = tmp_path / f"{package.replace('-', '_')}_quickstart.py"
    path.write_text(QUICKSTARTS[package])
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--isolated", "--select", "F821",
         "--output-format", "concise", str(path)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("quickstarts")
    running = {}
    for package, code in QUICKSTARTS.items():
        if package in NEEDS_FILES:
            continue
        path = folder / f"{package.replace('-', '_')}_quickstart.py"
        path.write_text(code)
        running[package] = subprocess.Popen(
            [sys.executable, str(path)],
            cwd=folder,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "JAX_PLATFORMS": "cpu"},
        )
    return {p: (proc.wait(timeout=600), proc.communicate()[0]) for p, proc in running.items()}


@pytest.mark.parametrize("package", sorted(set(QUICKSTARTS) - set(NEEDS_FILES)))
def test_quickstart_runs_as_written(runs, package):
    status, output = runs[package]
    assert status == 0, output[-3000:]


def test_samplers_quickstart_prints_what_its_comment_says(runs):
    # The block ends with print(out.sample.shape, out.nfe)  # (8, 32, 32, 4) 250
    assert runs["nnx-samplers"][1].strip().splitlines()[-1] == "(8, 32, 32, 4) 250"
