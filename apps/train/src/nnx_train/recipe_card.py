"""Recipe cards: every hyperparameter of a recipe next to its paper / seed value and source.

One card per config file, ``docs/recipes/<config>.md``, holding one markdown table::

    | key | paper / seed | source | ours | why ours differs |
    |---|---|---|---|---|
    | `optimizer.learning_rate` | 0.0100 | NVlabs/edm2 `train_edm2.py`, preset `edm2-img512-s` | 0.0100 | |

- ``key``: a config key in backticks (`CARD_KEYS` says which keys a card must list), or plain
  text for a protocol item that is not a config key (a loss term this recipe leaves out).
- ``paper / seed``: the published value (free text when it is not a number).
- ``source``: where it is published (paper table / section, or upstream file and key).
- ``ours``: the config's value as a Python literal; arithmetic is allowed
  (``800 * (1281167 // 1024)``, ``(16 * 16 * 768 / 4096) ** 0.5``).
- ``why ours differs``: required whenever ``ours`` is not equal to ``paper / seed``; a
  ``paper / seed`` of ``n/a`` marks a setting with no published counterpart (an
  implementation option such as ``model.remat``), whose source cell says why.

`check_card` lists what disagrees; ``tests/test_recipe_cards.py`` runs it on every config, so
changing a config value without its card (or the reverse) fails. ``python -m
nnx_train.recipe_card apps/train/configs/<config>.py`` prints a card skeleton with every key
and our values, to fill in the paper columns.
"""

from __future__ import annotations

import ast
import math
import operator
import sys
from typing import Any

from ml_collections import ConfigDict

__all__ = ["CARD_KEYS", "card_keys", "check_card", "parse_card", "render_skeleton"]

# Whole sections, then single keys; a key absent from a config is skipped.
CARD_KEYS: tuple[str, ...] = (
    "model",
    "objective",
    "optimizer",
    "schedule",
    "ema",
    "sampler",
    "guidance",
    "time_shift",
    "train.batch_size",
    "train.num_steps",
    "data.name",
    "data.resolution",
    "data.posterior",
    "data.horizontal_flip",
    "autoencoder.name",
    "autoencoder.shift",
    "autoencoder.scale",
    "eval.name",
    "eval.num_samples",
    "eval.settings",
    "eval.ema",
)
# Weight files are the user's, not the recipe's (data paths are not in CARD_KEYS).
_NOT_HYPERPARAMETERS = ("weights",)
_HEADER = ("key", "paper / seed", "source", "ours", "why ours differs")
_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Pow: operator.pow,
}


def _leaves(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, ConfigDict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key not in _NOT_HYPERPARAMETERS:
                out.update(_leaves(item, f"{prefix}.{key}"))
        return out
    return {prefix: value}


def card_keys(config: ConfigDict) -> dict[str, Any]:
    """``{dotted key: value}`` of every hyperparameter a card of ``config`` must list."""
    keys: dict[str, Any] = {}
    for path in CARD_KEYS:
        node: Any = config
        for part in path.split("."):
            if not isinstance(node, ConfigDict) or part not in node:
                node = None
                break
            node = node[part]
        if node is not None:
            keys.update(_leaves(node, path))
    return keys


def literal(text: str) -> Any:
    """A card's ``ours`` cell: a Python literal or arithmetic on literals."""

    def value(node: ast.AST) -> Any:
        match node:
            case ast.Constant():
                return node.value
            case ast.Tuple() | ast.List():
                return tuple(value(e) for e in node.elts)
            case ast.UnaryOp(op=ast.USub()):
                return -value(node.operand)
            case ast.BinOp() if type(node.op) in _BINARY:
                return _BINARY[type(node.op)](value(node.left), value(node.right))
        raise ValueError(f"not a literal: {ast.unparse(node)}")

    return value(ast.parse(text.strip(), mode="eval").body)


def parse_card(text: str) -> list[dict[str, str]]:
    """The rows of the card table in ``text``: dicts keyed by the header's columns.

    Raises:
      ValueError: no table with the card header, or a row with the wrong number of cells.
    """
    rows: list[dict[str, str]] = []
    header_seen = False
    for line in text.splitlines():
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if tuple(c.lower() for c in cells) == _HEADER:
            header_seen = True
            continue
        if not header_seen or set("".join(cells)) <= set("-: "):
            continue
        if len(cells) != len(_HEADER):
            raise ValueError(f"card row with {len(cells)} cells, expected 5: {line}")
        rows.append(dict(zip(_HEADER, cells, strict=True)))
    if not header_seen:
        raise ValueError("no card table: expected the header | " + " | ".join(_HEADER) + " |")
    return rows


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, tuple | list) and isinstance(b, tuple | list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def _config_key(cell: str) -> str | None:
    return cell[1:-1] if len(cell) > 2 and cell[0] == cell[-1] == "`" else None


def _paper_value(cell: str) -> Any:
    try:
        return literal(cell)
    except (ValueError, SyntaxError):
        return cell


def check_card(config: ConfigDict, text: str) -> list[str]:
    """Disagreements between ``config`` and its card ``text``, one line each (empty: agree).

    Checks that every key of `card_keys` has a row, every backticked row names a key of the
    config with ``ours`` equal to the config's value, every row has a source, and every row
    whose ``ours`` differs from ``paper / seed`` says why.
    """
    expected = card_keys(config)
    problems: list[str] = []
    seen: set[str] = set()
    for row in parse_card(text):
        key = _config_key(row["key"])
        if not row["source"]:
            problems.append(f"{row['key']}: no source")
        if key is None:
            continue
        seen.add(key)
        if key not in expected:
            problems.append(f"{key}: on the card but not a hyperparameter of the config")
            continue
        try:
            ours = literal(row["ours"])
        except (ValueError, SyntaxError):
            problems.append(f"{key}: 'ours' cell {row['ours']!r} is not a Python literal")
            continue
        if not _same(ours, expected[key]):
            problems.append(f"{key}: the card says {row['ours']}, the config has {expected[key]!r}")
        paper = row["paper / seed"]
        if paper != "n/a" and not _same(ours, _paper_value(paper)) and not row["why ours differs"]:
            problems.append(f"{key}: differs from the paper / seed value and says not why")
    problems += [f"{key}: missing from the card" for key in expected if key not in seen]
    return problems


def render_skeleton(config: ConfigDict) -> str:
    """A card table with every key of `card_keys` and our values; paper columns empty."""
    lines = ["| " + " | ".join(_HEADER) + " |", "|---|---|---|---|---|"]
    for key, value in card_keys(config).items():
        lines.append(f"| `{key}` |  |  | {value!r} |  |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # python -m nnx_train.recipe_card apps/train/configs/<x>.py[:arg]
    from nnx_train.cli import load_config

    sys.stdout.write(render_skeleton(load_config(sys.argv[1], ())))
