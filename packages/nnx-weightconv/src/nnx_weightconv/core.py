"""The conversion core: a checkpoint is a flat ``{key: array}`` dict, a spec is a list of rules.

A :class:`Rule` moves one PyTorch tensor (or one equal chunk of it, for fused qkv and
gate|up projections) to one NNX parameter, through a value transform. :func:`load_into`
applies a spec to a model in place and reports, by name, every key that is missing,
unexpected or mis-shaped; :func:`export_state_dict` runs the same spec backwards.

Layout rules (PyTorch -> NNX):
    Linear weight (out, in)    -> kernel (in, out)        :func:`linear_kernel`
    Conv2d weight (O, I, H, W) -> kernel (H, W, I, O)     :func:`conv_kernel`
    1x1 conv used as linear    -> kernel (in, out)        :func:`squeeze_conv1x1`
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx

Array = np.ndarray
StateDict = dict[str, np.ndarray]
Transform = Callable[[np.ndarray], np.ndarray]


class ConversionError(ValueError):
    """A checkpoint does not match a model; the message names every offending key."""


def identity(value: Array) -> Array:
    """Copy a tensor unchanged (biases, norm scales, embeddings)."""
    return value


def linear_kernel(value: Array) -> Array:
    """PyTorch Linear weight (out, in) -> NNX kernel (in, out)."""
    return value.T


def linear_kernel_inv(value: Array) -> Array:
    """NNX kernel (in, out) -> PyTorch Linear weight (out, in)."""
    return value.T


def conv_kernel(value: Array) -> Array:
    """PyTorch Conv weight (O, I, kh, kw) -> NNX kernel (kh, kw, I, O)."""
    return value.transpose(2, 3, 1, 0)


def conv_kernel_inv(value: Array) -> Array:
    """NNX kernel (kh, kw, I, O) -> PyTorch Conv weight (O, I, kh, kw)."""
    return value.transpose(3, 2, 0, 1)


def squeeze_conv1x1(value: Array) -> Array:
    """A 1x1 conv weight (O, I, 1, 1) used as a linear map -> NNX kernel (I, O)."""
    return value[:, :, 0, 0].T


def squeeze_conv1x1_inv(value: Array) -> Array:
    """NNX kernel (I, O) -> 1x1 conv weight (O, I, 1, 1)."""
    return value.T[:, :, None, None]


@dataclasses.dataclass(frozen=True)
class Rule:
    """Move one source tensor (or one chunk of it) to one NNX parameter.

    Attributes:
      source: key in the PyTorch state dict, e.g. ``"blocks.0.attn.qkv.weight"``.
      target: dotted path into ``nnx.state(model)``, e.g. ``"blocks.0.attn.qkv.kernel"``;
        integer components address ``nnx.List`` entries.
      transform: source layout -> NNX layout, applied after the chunk is taken.
      inverse: NNX layout -> source layout (for export).
      part: ``(i, n)`` takes the i-th of n equal chunks along axis 0 of the source
        (rows of a fused ``[3D, D]`` qkv weight are q, k, v in that order).
    """

    source: str
    target: str
    transform: Transform = identity
    inverse: Transform = identity
    part: tuple[int, int] | None = None


def linear_rules(source: str, target: str, *, bias: bool = True) -> list[Rule]:
    """Rules for a Linear layer: ``{source}.weight`` -> ``{target}.kernel`` (+ bias)."""
    rules = [Rule(f"{source}.weight", f"{target}.kernel", linear_kernel, linear_kernel_inv)]
    if bias:
        rules.append(Rule(f"{source}.bias", f"{target}.bias"))
    return rules


def conv_rules(source: str, target: str, *, bias: bool = True) -> list[Rule]:
    """Rules for a Conv2d layer: ``{source}.weight`` (OIHW) -> ``{target}.kernel`` (HWIO)."""
    rules = [Rule(f"{source}.weight", f"{target}.kernel", conv_kernel, conv_kernel_inv)]
    if bias:
        rules.append(Rule(f"{source}.bias", f"{target}.bias"))
    return rules


def norm_rules(source: str, target: str, *, bias: bool = True) -> list[Rule]:
    """Rules for LayerNorm / GroupNorm / RMSNorm: ``weight`` -> ``scale``, ``bias`` -> ``bias``."""
    rules = [Rule(f"{source}.weight", f"{target}.scale")]
    if bias:
        rules.append(Rule(f"{source}.bias", f"{target}.bias"))
    return rules


def _param_paths(model: nnx.Module, variables=nnx.Param) -> dict[str, nnx.Variable]:
    """Dotted path -> variable, for every variable of the model that ``variables`` selects."""
    flat = nnx.to_flat_state(nnx.state(model, variables))
    return {".".join(str(k) for k in path): var for path, var in flat}


def _chunk(value: Array, part: tuple[int, int] | None, key: str) -> Array:
    if part is None:
        return value
    index, count = part
    if value.shape[0] % count:
        raise ConversionError(
            f"{key}: axis 0 of shape {value.shape} does not split into {count} equal parts"
        )
    size = value.shape[0] // count
    return value[index * size : (index + 1) * size]


def load_into(
    model: nnx.Module,
    state_dict: Mapping[str, Array],
    rules: list[Rule],
    *,
    strict: bool = True,
    ignore: tuple[str, ...] = (),
    variables=nnx.Param,
) -> None:
    """Write a PyTorch state dict into ``model`` in place, following ``rules``.

    Args:
      model: the NNX module to fill; its parameter shapes are the expected ones.
      state_dict: flat ``{key: array}`` as returned by :func:`read_state_dict`.
      rules: the spec of this architecture.
      strict: if True, unexpected checkpoint keys and model parameters that no rule
        covers are errors as well (missing and mis-shaped keys always are).
      ignore: checkpoint keys that are known to be unused (buffers such as a fixed
        position table); they do not count as unexpected.
      variables: an ``nnx`` filter of the model variables that rules may fill and that
        strict mode requires to be filled (default: every ``nnx.Param``; EDM2 adds its
        fixed Fourier tables, which its checkpoints store).

    Raises:
      ConversionError: naming every missing, unexpected and mis-shaped key, and every
        model parameter that no rule covers.
    """
    params = _param_paths(model, variables)
    new_values, problems = _apply_rules(state_dict, rules, params)
    used = {rule.source for rule in rules}
    unexpected = sorted(k for k in state_dict if k not in used and k not in ignore)
    uncovered = sorted(p for p in params if p not in {r.target for r in rules})
    if strict and unexpected:
        problems.append(f"unexpected in checkpoint ({len(unexpected)}): {', '.join(unexpected)}")
    if strict and uncovered:
        problems.append(f"model parameters not filled ({len(uncovered)}): {', '.join(uncovered)}")
    if problems:
        raise ConversionError(
            "checkpoint does not match the model; check the architecture/preset and the file:\n  "
            + "\n  ".join(problems)
        )
    for target, value in new_values.items():
        var = params[target]
        var.set_value(jnp.asarray(value, dtype=var.get_value().dtype))


def _apply_rules(
    state_dict: Mapping[str, Array], rules: list[Rule], params: dict
) -> tuple[dict[str, Array], list[str]]:
    """Each rule's transformed value by target path, and the problems found (missing keys,
    mis-shaped values, rules whose target the model does not have)."""
    missing, misshaped, bad_targets = [], [], []
    new_values: dict[str, Array] = {}
    for rule in rules:
        if rule.source not in state_dict:
            missing.append(rule.source)
            continue
        if rule.target not in params:
            bad_targets.append(f"{rule.source} -> {rule.target}")
            continue
        value = rule.transform(_chunk(np.asarray(state_dict[rule.source]), rule.part, rule.source))
        expected = tuple(params[rule.target].get_value().shape)
        if tuple(value.shape) != expected:
            misshaped.append(
                f"{rule.source} -> {rule.target}: checkpoint gives {tuple(value.shape)}, "
                f"model expects {expected}"
            )
            continue
        new_values[rule.target] = value
    problems = []
    if missing:
        problems.append(f"missing in checkpoint ({len(missing)}): {', '.join(missing)}")
    if misshaped:
        problems.append(f"mis-shaped ({len(misshaped)}): {'; '.join(misshaped)}")
    if bad_targets:
        problems.append(f"rules naming no model parameter: {', '.join(bad_targets)}")
    return new_values, problems


def export_state_dict(model: nnx.Module, rules: list[Rule], *, variables=nnx.Param) -> StateDict:
    """Run a spec backwards: NNX parameters -> PyTorch-layout ``{key: array}``.

    Chunked rules (``part=(i, n)``) are concatenated along axis 0 in chunk order;
    ``variables`` selects the model variables that rules may read (see :func:`load_into`).
    """
    params = _param_paths(model, variables)
    chunks: dict[str, dict[int, Array]] = {}
    out: StateDict = {}
    for rule in rules:
        if rule.target not in params:
            raise ConversionError(f"rule target {rule.target!r} is not a model parameter")
        # Contiguous copies: safetensors writes the raw buffer of a transposed view.
        # (np.asarray with order="C", not np.ascontiguousarray, which turns scalars into (1,).)
        value = np.asarray(rule.inverse(np.asarray(params[rule.target].get_value())), order="C")
        if rule.part is None:
            out[rule.source] = value
        else:
            chunks.setdefault(rule.source, {})[rule.part[0]] = value
    for key, parts in chunks.items():
        out[key] = np.concatenate([parts[i] for i in sorted(parts)], axis=0)
    return out
