"""PyTorch <-> Flax NNX weight conversion for the networks of nnx-nets."""

from nnx_weightconv.core import (
    ConversionError,
    Rule,
    conv_kernel,
    conv_kernel_inv,
    conv_rules,
    export_state_dict,
    identity,
    linear_kernel,
    linear_kernel_inv,
    linear_rules,
    load_into,
    norm_rules,
    squeeze_conv1x1,
    squeeze_conv1x1_inv,
)
from nnx_weightconv.io import read_state_dict, restore_orbax, save_orbax

__version__ = "0.1.0"

__all__ = [
    "ConversionError",
    "Rule",
    "conv_kernel",
    "conv_kernel_inv",
    "conv_rules",
    "export_state_dict",
    "identity",
    "linear_kernel",
    "linear_kernel_inv",
    "linear_rules",
    "load_into",
    "norm_rules",
    "read_state_dict",
    "restore_orbax",
    "save_orbax",
    "squeeze_conv1x1",
    "squeeze_conv1x1_inv",
]
