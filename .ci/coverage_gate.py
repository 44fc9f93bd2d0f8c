"""Per-package line coverage of a CI run, checked against each package's floor.

Reads the JSON report of coverage.py (``pytest --cov --cov-report=json:coverage.json``, as
``.ci/run`` writes it), sums covered and executable lines per package (a file belongs to the
package whose ``packages/<dist>/src/<name>/`` or ``apps/<app>/src/<name>/`` folder holds it),
prints one row per package and exits 1 if a package falls below its floor in
``.ci/coverage_floors.json`` or is missing from the report.

Usage::

    python .ci/coverage_gate.py coverage.json                  # report and check
    python .ci/coverage_gate.py coverage.json --markdown       # the README's table
    python .ci/coverage_gate.py coverage.json --write-floors   # floors = measured, rounded down

The floors are the levels measured when the gate landed, rounded down to a whole percent, so
a package may not lose coverage; raise a floor when its tests improve.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import re
import sys

FLOORS = pathlib.Path(__file__).with_name("coverage_floors.json")
PACKAGE_OF = re.compile(r"(?:^|/)(?:packages|apps)/[^/]+/src/([A-Za-z_][A-Za-z0-9_]*)/")


def per_package(report: dict) -> dict[str, tuple[int, int]]:
    """``{package: (covered lines, executable lines)}`` from a coverage.py JSON report."""
    totals: dict[str, list[int]] = {}
    for path, data in report["files"].items():
        match = PACKAGE_OF.search(path.replace("\\", "/"))
        if match is None:
            continue
        summary = data["summary"]
        entry = totals.setdefault(match.group(1), [0, 0])
        entry[0] += summary["covered_lines"]
        entry[1] += summary["num_statements"]
    return {name: (covered, total) for name, (covered, total) in sorted(totals.items())}


def percent(covered: int, total: int) -> float:
    return 100.0 * covered / total if total else 100.0


def check(measured: dict[str, tuple[int, int]], floors: dict[str, float]) -> list[str]:
    """One message per package below its floor or absent from the report."""
    problems = []
    for name, floor in sorted(floors.items()):
        if name not in measured:
            problems.append(
                f"{name}: no coverage data (its tests did not import it, or the coverage "
                "source list in pyproject.toml lost it)"
            )
            continue
        value = percent(*measured[name])
        if value < floor:
            problems.append(
                f"{name}: line coverage {value:.1f}% is below its floor {floor:.0f}% "
                "(.ci/coverage_floors.json): add tests for the new code"
            )
    return problems


def table(measured: dict[str, tuple[int, int]], floors: dict[str, float], markdown: bool) -> str:
    rows = [(n, c, t, percent(c, t), floors.get(n)) for n, (c, t) in measured.items()]
    if markdown:
        lines = ["| package | lines | covered | coverage | CI floor |", "|---|---|---|---|---|"]
        for name, covered, total, value, floor in rows:
            floor_text = f"{floor:.0f}%" if floor is not None else "-"
            lines.append(f"| `{name}` | {total} | {covered} | {value:.1f}% | {floor_text} |")
        return "\n".join(lines)
    lines = [f"{'package':<16}{'lines':>8}{'covered':>9}{'coverage':>10}{'floor':>7}"]
    for name, covered, total, value, floor in rows:
        floor_text = f"{floor:.0f}%" if floor is not None else "-"
        lines.append(f"{name:<16}{total:>8}{covered:>9}{value:>9.1f}%{floor_text:>7}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=pathlib.Path, help="coverage.py JSON report")
    parser.add_argument("--floors", type=pathlib.Path, default=FLOORS)
    parser.add_argument("--markdown", action="store_true", help="print the README table")
    parser.add_argument(
        "--write-floors", action="store_true", help="set every floor to the measured level"
    )
    args = parser.parse_args(argv)
    if not args.report.is_file():
        print(f"error: {args.report} does not exist: run pytest with --cov first", file=sys.stderr)
        return 2
    measured = per_package(json.loads(args.report.read_text()))
    if args.write_floors:
        floors = {name: float(math.floor(percent(*cov))) for name, cov in measured.items()}
        args.floors.write_text(json.dumps(floors, indent=2, sort_keys=True) + "\n")
    floors = json.loads(args.floors.read_text()) if args.floors.is_file() else {}
    print(table(measured, floors, args.markdown))
    problems = check(measured, floors)
    for problem in problems:
        print(f"error: coverage: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
