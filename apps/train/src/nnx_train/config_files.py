"""Config files (``configs/<name>.py`` with ``get_config(arg)``): loading and listing.

A config file is loaded by path, ``file.py`` or ``file.py:argument``. Every problem with the
file itself (missing, a syntax error, a failing import, no ``get_config``, an argument the
file does not know) is a `ConfigError` whose one-line message names the file and the fix.

The arguments a file accepts are read from its source: a module-level ``ARGUMENTS`` (a dict
``{argument: description}`` or a sequence of names) when there is one, otherwise every string
that ``get_config`` compares its parameter with (``arg == "tiny"``,
``variant in ("cfg", "reconstruct")``). ``--help`` lists them with `describe_config_files`.
Both apps (apps/train and apps/rae_eval) read their config files with this module.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import sys
import warnings
from typing import Any

from nnx_train.errors import ConfigError

__all__ = ["config_arguments", "describe_config_files", "load_config_file", "split_spec"]


def split_spec(spec: str) -> tuple[str, str | None]:
    """``"dir/sit_b2.py:tiny"`` -> ``("dir/sit_b2.py", "tiny")``; no ``:`` -> argument None."""
    path, sep, arg = spec.partition(":")
    return path, (arg if sep else None)


def _parse_source(path: str) -> ast.Module:
    try:
        with open(path, encoding="utf-8") as handle:
            source = handle.read()
    except FileNotFoundError:
        folder = os.path.dirname(os.path.abspath(path))
        listed = _names_in(folder)
        hint = f" Config files in {folder}: {', '.join(listed)}." if listed else ""
        raise ConfigError(
            f"Config file {path} does not exist; pass --config with an existing file.{hint}"
        ) from None
    except OSError as err:
        raise ConfigError(
            f"Config file {path} cannot be read ({err.strerror}); check the path and its "
            "permissions."
        ) from None
    try:
        return ast.parse(source, filename=path)
    except SyntaxError as err:
        raise ConfigError(
            f"Config file {path} line {err.lineno}: syntax error ({err.msg}); fix the file."
        ) from None


def _names_in(folder: str) -> list[str]:
    try:
        return sorted(n for n in os.listdir(folder) if n.endswith(".py") and n[0] != "_")
    except OSError:
        return []


def _compared_strings(function: ast.FunctionDef) -> list[str]:
    """Strings that ``function`` compares its first parameter with, in source order."""
    if not function.args.args:
        return []
    param = function.args.args[0].arg
    found: list[str] = []
    for node in ast.walk(function):
        if not isinstance(node, ast.Compare):
            continue
        sides = [node.left, *node.comparators]
        if not any(isinstance(s, ast.Name) and s.id == param for s in sides):
            continue
        for side in sides:
            items = side.elts if isinstance(side, ast.Tuple | ast.List | ast.Set) else [side]
            for item in items:
                is_text = isinstance(item, ast.Constant) and isinstance(item.value, str)
                if is_text and item.value not in found:
                    found.append(item.value)
    return found


def _declared(tree: ast.Module) -> dict[str, str] | None:
    """The module-level ``ARGUMENTS`` literal, as ``{name: description}``, or None."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "ARGUMENTS" for t in node.targets
        ):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                return None
            if isinstance(value, dict):
                return {str(k): str(v) for k, v in value.items()}
            return {str(k): "" for k in value}
    return None


def config_arguments(path: str) -> dict[str, str]:
    """``{argument: description}`` that the config file at ``path`` accepts (may be empty).

    Raises:
      ConfigError: the file is missing, unreadable, not Python, or has no ``get_config``.
    """
    tree = _parse_source(path)
    declared = _declared(tree)
    if declared is not None:
        return declared
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "get_config":
            return {name: "" for name in _compared_strings(node)}
    raise ConfigError(
        f"Config file {path} defines no get_config(arg) function; a config file returns its "
        "ConfigDict from get_config (see the config files of apps/train/configs or "
        "apps/rae_eval/configs)."
    )


def load_config_file(spec: str) -> Any:
    """``get_config(argument)`` of the config file ``spec`` (``file.py[:argument]``).

    Raises:
      ConfigError: a missing or unreadable file, a syntax error, a failing import, no
        ``get_config``, an argument the file does not accept, or ``get_config`` failing.
    """
    path, arg = split_spec(spec)
    valid = config_arguments(path)
    if arg is not None and arg not in valid:
        choices = ", ".join(f"{path}:{name}" for name in valid)
        fix = f"valid: {choices}, or {path} alone" if valid else f"use {path} without ':{arg}'"
        raise ConfigError(f"Config file {path} has no argument {arg!r}; {fix}.")
    name = "nnx_config_" + "".join(c if c.isalnum() else "_" for c in os.path.abspath(path))
    spec_ = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec_)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            spec_.loader.exec_module(module)
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 - any failure of a user's file is one line
        raise ConfigError(
            f"Config file {path} failed to import ({type(err).__name__}: {err}); fix the file "
            "or install what it imports."
        ) from None
    try:
        return module.get_config(arg) if arg is not None else module.get_config()
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001
        raise ConfigError(
            f"get_config({arg!r}) of {path} failed ({type(err).__name__}: {err}); fix the file "
            "or its argument."
        ) from None
    finally:
        sys.modules.pop(name, None)


def describe_config_files(folder: str) -> list[str]:
    """One line per config file of ``folder``: ``name.py[:arg|arg]  first docstring line``."""
    lines = []
    for name in _names_in(folder):
        path = os.path.join(folder, name)
        try:
            tree = _parse_source(path)
            args = config_arguments(path)
        except ConfigError:
            continue
        doc = (ast.get_docstring(tree) or "").strip().splitlines()
        summary = doc[0] if doc else ""
        shown = name + (f"[:{'|'.join(args)}]" if args else "")
        lines.append(f"  {shown:<38} {summary}")
    return lines
