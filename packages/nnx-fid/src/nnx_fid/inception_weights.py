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

import hashlib
import pathlib
import warnings
from collections.abc import Mapping

import jax
import numpy as np
from flax import nnx

from nnx_fid.inception import InceptionV3
from nnx_weightconv import (
    ConversionError,
    Rule,
    conv_kernel,
    conv_kernel_inv,
    export_state_dict,
    linear_rules,
    load_into,
    read_state_dict,
)

INCEPTION_FILE_NAME = "pt_inception-2015-12-05-6726825d.pth"
INCEPTION_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + INCEPTION_FILE_NAME
)
# From a third-party README; its first 8 hex digits match the file name's torch-hub hash prefix.
INCEPTION_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"

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


def file_sha256(path: str | pathlib.Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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
        actual = file_sha256(path)
        if actual != expected_sha256:
            warnings.warn(
                f"{str(path)!r} has SHA-256 {actual}, not the published {expected_sha256} of "
                f"{INCEPTION_FILE_NAME}; FID values may not be comparable with published ones",
                stacklevel=2,
            )
    model = InceptionV3(rngs=nnx.Rngs(0))
    load_inception_state_dict(model, read_state_dict(path))
    return model
