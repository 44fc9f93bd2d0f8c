"""The API documentation builds with warnings as errors, covers every public name, and can fail.

`mkdocs build --strict` (config: ``mkdocs.yml``) renders one page per package from its
``__all__`` with mkdocstrings. In strict mode any warning aborts the build: a page or a
cross-reference naming an object that does not exist, a docstring argument that is not in
the signature (griffe's check), a broken link, a missing tutorial snippet. The last test
builds deliberately broken copies of the same configuration to show that each of these
mistakes fails the build and is named in its output.
"""

from __future__ import annotations

import ast
import html
import pathlib
import re
import subprocess
import sys
import zlib

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[1]

# Import name -> folder of its sources (the handler's `paths` in mkdocs.yml).
PACKAGES = {
    "nnx_nets": "packages/nnx-nets/src",
    "nnx_objectives": "packages/nnx-objectives/src",
    "nnx_samplers": "packages/nnx-samplers/src",
    "nnx_sharding": "packages/nnx-sharding/src",
    "nnx_fid": "packages/nnx-fid/src",
    "nnx_weightconv": "packages/nnx-weightconv/src",
    "nnx_train": "apps/train/src",
    "rae_eval": "apps/rae_eval/src",
}
TUTORIALS = sorted((REPO / "docs" / "tutorials").glob("[0-9][0-9]_*.py"))


def mkdocs_build(config: pathlib.Path, site: pathlib.Path) -> subprocess.CompletedProcess:
    # cwd = repository root: the snippets extension resolves paths from there.
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def public_names(module: str) -> list[str]:
    """The literal ``__all__`` of a package (``=``, annotated ``=`` and ``+=``), read statically."""
    tree = ast.parse((REPO / PACKAGES[module] / module / "__init__.py").read_text())
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
                names += ast.literal_eval(node.value)
    return names


def inventory(site: pathlib.Path) -> set[str]:
    """Object names in the Sphinx-format ``objects.inv`` that mkdocstrings writes."""
    raw = (site / "objects.inv").read_bytes()
    body = raw.split(b"\n", 4)[4]  # four header lines, then zlib
    return {line.split(" ", 1)[0] for line in zlib.decompress(body).decode().splitlines() if line}


def page_text(path: pathlib.Path) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", path.read_text()))


def test_strict_build_documents_every_public_name_and_every_tutorial(tmp_path):
    site = tmp_path / "site"
    result = mkdocs_build(REPO / "mkdocs.yml", site)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARNING" not in output, output

    # Every name of every package's __all__ is rendered. A function that shares its
    # module's name (nnx_fid.inception_score) is documented through that module.
    documented = inventory(site)
    undocumented = [
        f"{module}.{name}"
        for module in PACKAGES
        for name in public_names(module)
        if f"{module}.{name}" not in documented and f"{module}.{name}.{name}" not in documented
    ]
    assert not undocumented, undocumented
    assert len(documented) > 300  # not vacuous: the eight pages hold hundreds of objects

    # Each tutorial page shows its script, as run by tests/test_tutorials.py.
    assert len(TUTORIALS) == 4
    for script in TUTORIALS:
        text = page_text(site / "tutorials" / script.stem / "index.html")
        assert "--8<--" not in text, script.name
        lines = [line.strip() for line in script.read_text().splitlines() if line.strip()]
        for line in (lines[0], lines[len(lines) // 2], lines[-1]):
            assert line in text, (script.name, line)


def broken_copy(tmp_path: pathlib.Path, page: str, extra_source: str | None = None) -> pathlib.Path:
    """The real mkdocs.yml, with one page and absolute paths, in ``tmp_path``."""
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text(page)
    config["docs_dir"] = str(docs)
    config["nav"] = [{"Home": "index.md"}]
    handler = next(p for p in config["plugins"] if isinstance(p, dict) and "mkdocstrings" in p)
    python = handler["mkdocstrings"]["handlers"]["python"]
    python["paths"] = [str(REPO / path) for path in python["paths"]]
    if extra_source is not None:
        package = tmp_path / "src" / "drifted"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text(extra_source)
        python["paths"].append(str(tmp_path / "src"))
    path = tmp_path / "mkdocs.yml"
    path.write_text(yaml.safe_dump(config))
    return path


DRIFTED_DOCSTRING = '''"""A module whose function was changed without its docstring."""

__all__ = ["scale"]


def scale(x, factor):
    """Multiply.

    Args:
      x: the input.
      gain: renamed to ``factor`` in the signature, not here.
    """
    return x * factor
'''


@pytest.mark.parametrize(
    ("page", "extra_source", "message"),
    [
        # An API page naming a function that does not exist (renamed in the code).
        (
            "# API\n\n::: nnx_samplers.sample_renamed\n",
            None,
            "nnx_samplers.sample_renamed could not be found",
        ),
        # A prose cross-reference to a missing object.
        (
            "# Guide\n\nCall [sample][nnx_samplers.sample_gone].\n",
            None,
            "Could not find cross-reference target 'nnx_samplers.sample_gone'",
        ),
        # A documented argument that the signature no longer has.
        (
            "# API\n\n::: drifted\n",
            DRIFTED_DOCSTRING,
            "Parameter 'gain' does not appear in the function signature",
        ),
        # A tutorial snippet that no longer exists.
        (
            '# T\n\n```{.python}\n--8<-- "docs/tutorials/99_missing.py"\n```\n',
            None,
            "Snippet at path 'docs/tutorials/99_missing.py' could not be found",
        ),
    ],
    ids=["missing-object", "missing-crossref", "stale-docstring-arg", "missing-snippet"],
)
def test_strict_build_fails_and_names_the_drift(tmp_path, page, extra_source, message):
    config = broken_copy(tmp_path, page, extra_source)
    result = mkdocs_build(config, tmp_path / "site")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert message in output, output
