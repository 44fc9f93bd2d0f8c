"""Convert a PyTorch DiT-family checkpoint into an orbax checkpoint of an nnx-nets model.

Examples::

  # facebookresearch/DiT release (EMA weights, integer-step time: run it with time_scale=1000)
  python tools/convert_checkpoint.py DiT-XL-2-256x256.pt out/dit_xl2 \\
      --arch dit --preset DiT-XL/2 --input-size 32 --in-channels 4 --learn-sigma

  # diffusers DiTTransformer2DModel, sizes taken from its config.json
  python tools/convert_checkpoint.py transformer/diffusion_pytorch_model.safetensors out/dit \\
      --arch diffusers_dit --diffusers-config transformer/config.json

  # RAE stage-2 DiT-DH-XL (training checkpoint: weights under "ema")
  python tools/convert_checkpoint.py stage2_model.pt out/ditdh_xl \\
      --arch dit_dh --preset DiTDH-XL --input-size 16 --in-channels 768 --subkey ema

Every missing, unexpected or mis-shaped key is reported by name (exit status 1) and
nothing is written. Only parameters are saved (``nnx.state(model, nnx.Param)``); fixed
tables (sin-cos positions, RoPE) are recomputed by the networks, and ``time_scale`` is a
constructor argument to set when the model is built for use.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np
from flax import nnx

from nnx_nets import (
    DIT_DH_PRESETS,
    DIT_PRESETS,
    LIGHTNING_DIT_PRESETS,
    DiT,
    DiTDH,
    LightningDiT,
    MeanFlowDiT,
)
from nnx_weightconv import ConversionError, load_into, read_state_dict, save_orbax
from nnx_weightconv.specs.diffusers_dit import (
    check_tied_copies,
    diffusers_dit_buffer_keys,
    diffusers_dit_rules,
    dit_kwargs_from_diffusers_config,
)
from nnx_weightconv.specs.dit import dit_buffer_keys, dit_rules, meanflow_dit_rules
from nnx_weightconv.specs.dit_dh import dit_dh_buffer_keys, dit_dh_rules
from nnx_weightconv.specs.lightning_dit import lightning_dit_buffer_keys, lightning_dit_rules

ARCHITECTURES = ("dit", "meanflow_dit", "diffusers_dit", "lightning_dit", "dit_dh")
_SIZE_FIELDS = (
    "hidden_size",
    "depth",
    "num_heads",
    "patch_size",
    "head_hidden_size",
    "head_depth",
    "head_num_heads",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", type=pathlib.Path, help=".pt/.pth/.bin or .safetensors")
    parser.add_argument("output", type=pathlib.Path, help="orbax checkpoint directory to write")
    parser.add_argument("--arch", required=True, choices=ARCHITECTURES)
    parser.add_argument(
        "--preset",
        help="preset name, e.g. DiT-XL/2, LightningDiT-XL/1, DiTDH-XL (sizes given below "
        "override it; without a preset give all of them)",
    )
    parser.add_argument("--subkey", help='entry holding the weights, e.g. "ema" or "model"')
    parser.add_argument("--diffusers-config", type=pathlib.Path, help="diffusers config.json")
    parser.add_argument("--input-size", type=int, help="latent height = width")
    parser.add_argument("--in-channels", type=int)
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--learn-sigma", action="store_true", help="DiT / LightningDiT: 2C out")
    parser.add_argument("--qk-norm", action="store_true", help="LightningDiT: QK-norm")
    parser.add_argument("--no-adaln-shift", action="store_true", help="LightningDiT: wo_shift")
    parser.add_argument(
        "--time-embedding",
        choices=("sinusoidal", "gaussian_fourier"),
        default="sinusoidal",
        help="LightningDiT: sinusoidal (hustvl) or gaussian_fourier (RAE)",
    )
    for field in _SIZE_FIELDS:
        parser.add_argument(f"--{field.replace('_', '-')}", type=int, dest=field)
    parser.add_argument(
        "--non-strict",
        action="store_true",
        help="allow unexpected keys and parameters no key fills (they keep a random init)",
    )
    parser.add_argument("--dry-run", action="store_true", help="check the keys, write nothing")
    return parser


def _sizes(args, presets: dict[str, dict[str, int]], needed: tuple[str, ...]) -> dict:
    sizes = {}
    if args.preset is not None:
        if args.preset not in presets:
            raise ValueError(
                f"unknown preset {args.preset!r} for --arch {args.arch}; "
                f"valid: {', '.join(presets)}"
            )
        sizes.update(presets[args.preset])
    sizes.update({f: getattr(args, f) for f in needed if getattr(args, f) is not None})
    sizes["input_size"], sizes["in_channels"] = args.input_size, args.in_channels
    absent = [f for f in (*needed, "input_size", "in_channels") if sizes.get(f) is None]
    if absent:
        flags = ", ".join("--" + f.replace("_", "-") for f in absent)
        raise ValueError(f"--arch {args.arch} needs {flags} (or a --preset that sets them)")
    return sizes


def build(args) -> tuple[type, dict, object, object]:
    """The model class, its constructor kwargs (without rngs), its rules and buffer keys.

    The one place where architecture names become objects.
    """
    dit_sizes = ("hidden_size", "depth", "num_heads", "patch_size")
    match args.arch:
        case "dit" | "meanflow_dit":
            kwargs = _sizes(args, DIT_PRESETS, dit_sizes)
            kwargs.update(num_classes=args.num_classes, learn_sigma=args.learn_sigma)
            if args.arch == "dit":
                return DiT, kwargs, dit_rules, dit_buffer_keys
            return MeanFlowDiT, kwargs, meanflow_dit_rules, dit_buffer_keys
        case "diffusers_dit":
            if args.diffusers_config is not None:
                kwargs = dit_kwargs_from_diffusers_config(
                    json.loads(args.diffusers_config.read_text())
                )
            else:
                kwargs = _sizes(args, DIT_PRESETS, dit_sizes)
                kwargs.update(
                    num_classes=args.num_classes,
                    learn_sigma=args.learn_sigma,
                    time_scale=1000.0,
                    time_freq_shift=1.0,
                )
            return DiT, kwargs, diffusers_dit_rules, diffusers_dit_buffer_keys
        case "lightning_dit":
            kwargs = _sizes(args, LIGHTNING_DIT_PRESETS, dit_sizes)
            kwargs.update(
                num_classes=args.num_classes,
                learn_sigma=args.learn_sigma,
                qk_norm=args.qk_norm,
                adaln_shift=not args.no_adaln_shift,
                time_embedding=args.time_embedding,
            )
            return LightningDiT, kwargs, lightning_dit_rules, lightning_dit_buffer_keys
        case "dit_dh":
            kwargs = _sizes(args, DIT_DH_PRESETS, _SIZE_FIELDS)
            kwargs.update(num_classes=args.num_classes)
            return DiTDH, kwargs, dit_dh_rules, dit_dh_buffer_keys
        case _:
            raise ValueError(f"unknown --arch {args.arch!r}; valid: {', '.join(ARCHITECTURES)}")


def main(argv: list[str] | None = None) -> int:
    """Run the conversion; returns the exit status (0 ok, 1 checkpoint mismatch, 2 usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cls, kwargs, rules_fn, buffers_fn = build(args)
    except ValueError as error:
        parser.error(str(error))
    try:
        state_dict = read_state_dict(args.checkpoint, subkey=args.subkey)
        if args.non_strict:  # unfilled parameters need a real initialisation
            model = cls(**kwargs, rngs=nnx.Rngs(0))
        else:  # every parameter will come from the checkpoint: build shapes only
            model = nnx.eval_shape(lambda: cls(**kwargs, rngs=nnx.Rngs(0)))
        rules = rules_fn(model)
        if args.arch == "diffusers_dit":
            check_tied_copies(state_dict, rules)
        load_into(model, state_dict, rules, strict=not args.non_strict, ignore=buffers_fn(model))
    except (ConversionError, FileNotFoundError, ImportError) as error:
        print(f"error: {args.checkpoint}: {error}", file=sys.stderr)
        return 1
    params = nnx.state(model, nnx.Param).flat_state()
    count = sum(int(np.prod(var.get_value().shape)) for _, var in params)
    summary = (
        f"{cls.__name__}({', '.join(f'{k}={v}' for k, v in kwargs.items())}): {count:,} parameters"
    )
    if args.dry_run:
        print(f"ok (dry run): {summary}")
        return 0
    save_orbax(model, args.output)
    print(f"wrote {args.output}: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
