"""``.ci/coverage_gate.py``: per-package sums of a coverage.py JSON report and the floor check
that fails CI when a package loses coverage."""

from __future__ import annotations

import importlib.util
import json
import pathlib

# .ci holds scripts, not a package: load the gate by path.
_spec = importlib.util.spec_from_file_location(
    "coverage_gate", pathlib.Path(__file__).resolve().parents[1] / ".ci" / "coverage_gate.py"
)
gate = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gate)


def _report(tmp_path: pathlib.Path) -> pathlib.Path:
    def entry(covered, total):
        return {"summary": {"covered_lines": covered, "num_statements": total}}

    files = {
        "packages/nnx-nets/src/nnx_nets/dit.py": entry(80, 100),
        "packages/nnx-nets/src/nnx_nets/edm_layers.py": entry(10, 100),
        "/abs/apps/train/src/nnx_train/cli.py": entry(9, 10),
        "tests/test_workspace.py": entry(1, 50),  # not a package file: ignored
    }
    path = tmp_path / "coverage.json"
    path.write_text(json.dumps({"files": files}))
    return path


def test_sums_lines_per_package(tmp_path):
    report = json.loads(_report(tmp_path).read_text())
    assert gate.per_package(report) == {"nnx_nets": (90, 200), "nnx_train": (9, 10)}


def test_floor_breach_and_missing_package_fail(tmp_path, capsys):
    report = _report(tmp_path)
    floors = tmp_path / "floors.json"
    floors.write_text(json.dumps({"nnx_nets": 45.0, "nnx_train": 90.0}))
    assert gate.main([str(report), "--floors", str(floors)]) == 0  # 45.0% and 90.0%: at the floor
    floors.write_text(json.dumps({"nnx_nets": 46.0, "nnx_fid": 50.0}))
    assert gate.main([str(report), "--floors", str(floors)]) == 1
    err = capsys.readouterr().err
    assert "nnx_nets: line coverage 45.0% is below its floor 46%" in err
    assert "nnx_fid: no coverage data" in err


def test_write_floors_rounds_down_and_markdown(tmp_path, capsys):
    floors = tmp_path / "floors.json"
    args = [str(_report(tmp_path)), "--floors", str(floors), "--write-floors", "--markdown"]
    assert gate.main(args) == 0
    assert json.loads(floors.read_text()) == {"nnx_nets": 45.0, "nnx_train": 90.0}
    assert "| `nnx_nets` | 200 | 90 | 45.0% | 45% |" in capsys.readouterr().out
    assert gate.main([str(tmp_path / "absent.json")]) == 2
