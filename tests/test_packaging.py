"""Each library installs alone with only its declared dependencies and imports its public API.

Two checks per package:
1. Static: every module that the package's source imports (at any depth, lazily or not)
   belongs to the standard library, to the package itself, or to a distribution that its
   ``pyproject.toml`` declares (optional extras count for imports guarded as optional).
2. Dynamic: the wheel, built with ``uv build``, is installed into a fresh virtual
   environment together with the wheels of its declared workspace siblings only, and
   every submodule is imported and every name of ``__all__`` resolves.
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = sorted(p.name for p in (ROOT / "packages").iterdir() if (p / "pyproject.toml").exists())
LIBRARIES = [
    "nnx-fid",
    "nnx-nets",
    "nnx-objectives",
    "nnx-samplers",
    "nnx-sharding",
    "nnx-weightconv",
]


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    return _normalise(re.split(r"[\s<>=!~\[;]", requirement, maxsplit=1)[0])


def _project(package: str) -> dict:
    return tomllib.loads((ROOT / "packages" / package / "pyproject.toml").read_text())["project"]


def _declared(package: str) -> tuple[set[str], set[str]]:
    project = _project(package)
    required = {_requirement_name(r) for r in project.get("dependencies", [])}
    optional = {
        _requirement_name(r)
        for group in project.get("optional-dependencies", {}).values()
        for r in group
    }
    return required, optional


def _imported_modules(source_dir: pathlib.Path) -> dict[str, str]:
    """Top-level module name -> first file that imports it."""
    found: dict[str, str] = {}
    for path in sorted(source_dir.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], str(path.relative_to(source_dir)))
    return found


def test_all_six_libraries_exist():
    assert PACKAGES == LIBRARIES


def test_dependency_graph_is_acyclic():
    graph = {
        p: {d for d in _declared(p)[0] if d in LIBRARIES} for p in LIBRARIES
    }  # workspace edges only
    visiting, done = set(), set()

    def visit(node, trail):
        assert node not in visiting, f"dependency cycle: {' -> '.join([*trail, node])}"
        if node in done:
            return
        visiting.add(node)
        for dep in graph[node]:
            visit(dep, [*trail, node])
        visiting.discard(node)
        done.add(node)

    for package in LIBRARIES:
        visit(package, [])


def _undeclared_imports(
    source_dir: pathlib.Path, module: str, required: set[str], optional: set[str]
) -> list[str]:
    distributions = importlib.metadata.packages_distributions()
    undeclared = []
    for name, where in _imported_modules(source_dir).items():
        if name in sys.stdlib_module_names or name == module or name == "__future__":
            continue
        owners = {_normalise(d) for d in distributions.get(name, [])}
        if not owners:  # workspace siblings and unknown modules resolve through their names
            owners = {_normalise(name.replace("_", "-"))}
        if not owners & (required | optional):
            undeclared.append(f"{name} (imported in {where}; provided by {sorted(owners)})")
    return undeclared


@pytest.mark.parametrize("package", LIBRARIES)
def test_imports_are_declared(package):
    required, optional = _declared(package)
    source = ROOT / "packages" / package / "src"
    undeclared = _undeclared_imports(source, package.replace("-", "_"), required, optional)
    assert not undeclared, f"{package} imports undeclared modules: {undeclared}"


def test_undeclared_import_is_caught(tmp_path):
    source = tmp_path / "src" / "demo"
    source.mkdir(parents=True)
    (source / "__init__.py").write_text(
        "import os\nimport jax\n\ndef f():\n    import scipy.linalg\n"
    )
    found = _undeclared_imports(tmp_path / "src", "demo", {"jax"}, set())
    assert len(found) == 1 and found[0].startswith("scipy ")
    sibling = _undeclared_imports(tmp_path / "src", "demo", {"jax", "scipy"}, set())
    assert sibling == []
    (source / "more.py").write_text("from nnx_nets import DiT\n")
    assert _undeclared_imports(tmp_path / "src", "demo", {"jax", "scipy"}, set())[0].startswith(
        "nnx_nets "
    )


def _workspace_closure(package: str) -> list[str]:
    closure, stack = [], [package]
    while stack:
        current = stack.pop()
        if current in closure:
            continue
        closure.append(current)
        stack.extend(d for d in _declared(current)[0] if d in LIBRARIES)
    return closure


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> dict[str, pathlib.Path]:
    uv = shutil.which("uv")
    assert uv, "the packaging test needs uv on PATH (the README's test command runs through uv)"
    out = tmp_path_factory.mktemp("wheels")
    built = {}
    for package in LIBRARIES:
        subprocess.run(
            [uv, "build", "--package", package, "--wheel", "--out-dir", str(out), "--quiet"],
            cwd=ROOT,
            check=True,
        )
        built[package] = next(out.glob(f"{package.replace('-', '_')}-*.whl"))
    return built


@pytest.mark.slow
@pytest.mark.parametrize("package", LIBRARIES)
def test_wheel_installs_alone_and_imports(package, wheels, tmp_path):
    uv = shutil.which("uv")
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    python = venv / "bin" / "python"
    to_install = [str(wheels[p]) for p in _workspace_closure(package)]
    subprocess.run(
        [uv, "pip", "install", "--quiet", "--python", str(python), *to_install],
        check=True,
    )
    module = package.replace("-", "_")
    check = f"""
import importlib, pkgutil
import {module} as package
names = [m.name for m in pkgutil.walk_packages(package.__path__, "{module}.")]
for name in names:
    importlib.import_module(name)
missing = [n for n in package.__all__ if not hasattr(package, n)]
assert not missing, f"__all__ names not defined: {{missing}}"
assert package.__all__, "empty public API"
print(len(names), len(package.__all__))
"""
    result = subprocess.run(
        [str(python), "-c", check],
        capture_output=True,
        text=True,
        env={"JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    installed = subprocess.run(
        [uv, "pip", "list", "--python", str(python), "--format", "freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    siblings = {_normalise(line.split("==")[0]) for line in installed.splitlines()} & set(LIBRARIES)
    assert siblings == set(_workspace_closure(package))


@pytest.mark.slow
def test_library_pip_installs_next_to_the_locked_jax(tmp_path):
    """``pip install packages/nnx-samplers`` keeps the JAX that a user already has.

    The fresh venv first gets the jax of the running environment (the lock's: 0.10.2 on
    Python 3.11, 0.12.0.1 on 3.13), then plain pip installs the library from its source folder.
    An upper bound on jax in the library below that version would make pip replace it (or
    fail to resolve); both fail here.
    """
    uv = shutil.which("uv")
    venv = tmp_path / "venv"
    subprocess.run(
        [uv, "venv", "--quiet", "--seed", "--python", sys.executable, str(venv)], check=True
    )
    python = venv / "bin" / "python"
    jax_version = importlib.metadata.version("jax")
    subprocess.run(
        [uv, "pip", "install", "--quiet", "--python", str(python), f"jax=={jax_version}"],
        check=True,
    )
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(ROOT / "packages" / "nnx-samplers")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    check = (
        "import importlib.metadata, jax, nnx_samplers\n"
        "print(importlib.metadata.version('jax'), len(nnx_samplers.__all__))"
    )
    result = subprocess.run(
        [str(python), "-c", check],
        capture_output=True,
        text=True,
        env={"JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    installed_jax, public_names = result.stdout.split()
    assert installed_jax == jax_version, f"pip replaced jax {jax_version} by {installed_jax}"
    assert int(public_names) > 0


def test_pip_builds_a_package_without_an_index_once_uv_build_is_installed(tmp_path):
    """The README's pip-alone path for an index that lacks ``uv_build``: install the backend
    once, then ``pip install --no-build-isolation`` builds the package with no index at all
    (``--no-index``; ``--no-deps`` because jax is not what is tested here)."""
    uv = shutil.which("uv")
    venv = tmp_path / "venv"
    subprocess.run(
        [uv, "venv", "--quiet", "--seed", "--python", sys.executable, str(venv)], check=True
    )
    python = venv / "bin" / "python"
    build_system = tomllib.loads((ROOT / "packages" / "nnx-fid" / "pyproject.toml").read_text())
    (backend,) = build_system["build-system"]["requires"]
    subprocess.run([uv, "pip", "install", "--quiet", "--python", str(python), backend], check=True)
    # An activated venv: uv_build finds its `uv-build` program on PATH (PEP 517 hooks).
    env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-index", "--no-build-isolation",
         "--no-deps", str(ROOT / "packages" / "nnx-fid")],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    check = "import importlib.metadata as m; print(m.version('nnx-fid'))"
    version = subprocess.run([str(python), "-c", check], capture_output=True, text=True)
    assert version.stdout.strip() == build_system["project"]["version"], version.stderr
