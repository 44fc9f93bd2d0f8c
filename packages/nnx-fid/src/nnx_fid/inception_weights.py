"""Conversion of pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` into :class:`InceptionV3`.

The file is a torchvision ``Inception3(num_classes=1008, aux_logits=False)`` state dict ported
from TF's inception-2015-12-05 graph (mseitzer/pytorch-fid inception.py).
Key mapping (torch -> NNX)::

    <block>.conv.weight        (O, I, kh, kw) -> <block>.conv.kernel (kh, kw, I, O)
    <block>.bn.weight / .bias  (C,)            -> <block>.bn.scale / .bn.bias        (Params)
    <block>.bn.running_mean    (C,)            -> <block>.bn.mean                    (BatchStat)
    <block>.bn.running_var     (C,)            -> <block>.bn.var                     (BatchStat)
    fc.weight (1008, 2048) / fc.bias (1008,)   -> fc.kernel (2048, 1008) / fc.bias
    <block>.bn.num_batches_tracked             -> ignored (a training counter)

Parameters go through nnx-weightconv's :func:`load_into`; the BatchNorm running statistics are
``nnx.BatchStat`` variables, which that core does not address, so they are written here with
the same checks (every missing and mis-shaped key is named).

The weights are not redistributed with this package: pass the path of a file you downloaded.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping

import jax
import numpy as np
from flax import nnx

from nnx_fid.inception import InceptionV3
from nnx_weightconv import (
    PUBLISHED_FILES,
    ConversionError,
    Rule,
    check_published_sha256,
    conv_kernel,
    conv_kernel_inv,
    export_state_dict,
    linear_rules,
    load_into,
    read_state_dict,
)

# The one table of published files and hashes (shared with tools/fetch_weights.py).
INCEPTION_FILE_NAME = PUBLISHED_FILES["inception"].file_name
INCEPTION_URL = PUBLISHED_FILES["inception"].url
# From a third-party README; its first 8 hex digits match the file name's torch-hub hash prefix.
INCEPTION_SHA256: str = PUBLISHED_FILES["inception"].sha256  # type: ignore[assignment]

_STAT_SUFFIXES = {"mean": "running_mean", "var": "running_var"}


def _flat_paths(model: nnx.Module, kind: type) -> list[str]:
    return [".".join(str(k) for k in path) for path, _ in nnx.to_flat_state(nnx.state(model, kind))]


def inception_rules(model: InceptionV3) -> list[Rule]:
    """Rules for every Param of the FID Inception (conv kernels, BN scale/bias, fc)."""
    rules: list[Rule] = []
    for target in _flat_paths(model, nnx.Param):
        block, _, leaf = target.rpartition(".")
        if leaf == "kernel" and block.endswith(".conv"):
            rules.append(Rule(f"{block}.weight", target, conv_kernel, conv_kernel_inv))
        elif block.endswith(".bn") and leaf in ("scale", "bias"):
            rules.append(Rule(f"{block}.{'weight' if leaf == 'scale' else 'bias'}", target))
    return rules + linear_rules("fc", "fc")


def inception_stat_rules(model: InceptionV3) -> list[Rule]:
    """Rules for the BatchNorm running statistics (``nnx.BatchStat``)."""
    rules = []
    for target in _flat_paths(model, nnx.BatchStat):
        block, _, leaf = target.rpartition(".")
        rules.append(Rule(f"{block}.{_STAT_SUFFIXES[leaf]}", target))
    return rules


def _load_stats(model: nnx.Module, state_dict: Mapping[str, np.ndarray], rules: list[Rule]) -> None:
    variables = {
        ".".join(str(k) for k in path): var
        for path, var in nnx.to_flat_state(nnx.state(model, nnx.BatchStat))
    }
    missing = [r.source for r in rules if r.source not in state_dict]
    misshaped = [
        f"{r.source}: checkpoint gives {np.shape(state_dict[r.source])}, "
        f"model expects {tuple(variables[r.target].get_value().shape)}"
        for r in rules
        if r.source in state_dict
        and np.shape(state_dict[r.source]) != tuple(variables[r.target].get_value().shape)
    ]
    if missing or misshaped:
        raise ConversionError(
            "Inception checkpoint does not match the BatchNorm statistics:\n  "
            + "\n  ".join(
                ([f"missing ({len(missing)}): {', '.join(missing)}"] if missing else [])
                + ([f"mis-shaped: {'; '.join(misshaped)}"] if misshaped else [])
            )
        )
    for rule in rules:
        value = np.asarray(state_dict[rule.source], np.float32)
        variables[rule.target].set_value(jax.device_put(value))


def load_inception_state_dict(model: InceptionV3, state_dict: Mapping[str, np.ndarray]) -> None:
    """Write a torchvision-layout Inception state dict into ``model`` in place.

    Raises:
      ConversionError: naming every missing, unexpected and mis-shaped key.
    """
    stat_rules = inception_stat_rules(model)
    ignore = tuple(k for k in state_dict if k.endswith(".num_batches_tracked"))
    ignore += tuple(r.source for r in stat_rules)
    load_into(model, state_dict, inception_rules(model), ignore=ignore)
    _load_stats(model, state_dict, stat_rules)


def export_inception_state_dict(model: InceptionV3) -> dict[str, np.ndarray]:
    """The inverse of :func:`load_inception_state_dict` (torchvision layout, float32)."""
    out = export_state_dict(model, inception_rules(model))
    stats = {
        ".".join(str(k) for k in path): var
        for path, var in nnx.to_flat_state(nnx.state(model, nnx.BatchStat))
    }
    for rule in inception_stat_rules(model):
        out[rule.source] = np.asarray(stats[rule.target].get_value())
    return out


def load_inception(
    path: str | pathlib.Path | None, *, expected_sha256: str | None = INCEPTION_SHA256
) -> InceptionV3:
    """Build the FID Inception and fill it from the pytorch-fid weights file.

    Args:
      path: the downloaded ``pt_inception-2015-12-05-6726825d.pth`` (or a ``.safetensors``
        conversion of it, read without torch).
      expected_sha256: the published digest; a mismatch warns (a re-saved or converted file
        differs bytewise but may hold the same tensors). ``None`` skips the check.

    Returns:
      The loaded :class:`InceptionV3`.

    Raises:
      FileNotFoundError: no path, or no file there; the message says where the file is published.
      ConversionError: the file is not this network's state dict.
    """
    if path is None or not pathlib.Path(path).is_file():
        where = "no path was given" if path is None else f"{str(path)!r} does not exist"
        raise FileNotFoundError(
            f"the FID Inception weights file is needed but {where}. Download "
            f"{INCEPTION_FILE_NAME} from {INCEPTION_URL} (SHA-256 {INCEPTION_SHA256}) "
            "and pass its path."
        )
    if expected_sha256 is not None:
        # Every call warns (FID values may not be comparable with published ones).
        check_published_sha256(path, expected_sha256, every_time=True)
    model = InceptionV3(rngs=nnx.Rngs(0))
    load_inception_state_dict(model, read_state_dict(path, check_hash=False))
    return model
