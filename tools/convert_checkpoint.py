"""Convert a PyTorch checkpoint into an orbax checkpoint of an nnx-nets model.

Examples::

  # facebookresearch/DiT release (EMA weights, integer-step time: run it with time_scale=1000)
  python tools/convert_checkpoint.py DiT-XL-2-256x256.pt out/dit_xl2 \\
      --arch dit --preset DiT-XL/2 --input-size 32 --in-channels 4 --learn-sigma

  # willisma/SiT release: DiT's key layout, continuous time with t = 1 as data
  # (sampling.json names the adapters: nnx_samplers.adapt_network(adapters, model))
  python tools/convert_checkpoint.py SiT-XL-2-256.pt out/sit_xl2 \\
      --arch sit --preset DiT-XL/2 --input-size 32 --in-channels 4 --learn-sigma

  # diffusers DiTTransformer2DModel, sizes taken from its config.json
  python tools/convert_checkpoint.py transformer/diffusion_pytorch_model.safetensors out/dit \\
      --arch diffusers_dit --diffusers-config transformer/config.json

  # RAE stage-2 DiT-DH-XL (training checkpoint: weights under "ema")
  python tools/convert_checkpoint.py stage2_model.pt out/ditdh_xl \\
      --arch dit_dh --preset DiTDH-XL --input-size 16 --in-channels 768 --subkey ema

  # the same for --arch dinov2_reg (transformers config.json; --no-final-norm-affine: RAE's
  # encoder), --arch sd_vae (diffusers config.json or --preset sd-vae-ft-mse) and
  # --arch rae_decoder --preset ViT-XL (latent grid 16 x 16 x 768; --input-size, --in-channels)

Every missing, unexpected or mis-shaped key is reported by name (exit status 1) and
nothing is written; so are NaN/Inf weights (a diverged or damaged checkpoint). An existing
output folder is refused before anything is read (exit status 2) unless ``--force`` is given,
which replaces it. Only parameters are saved (``nnx.state(model, nnx.Param)``); fixed
tables (sin-cos positions, RoPE) are recomputed by the networks, and ``time_scale`` is a
constructor argument to set when the model is built for use. Build the model with the
constructor arguments printed on success and restore with ``nnx_weightconv.restore_orbax``.
For the DiT-family architectures the output directory also holds ``sampling.json``: the
checkpoint's convention (``nnx_weightconv.checkpoint_convention``: prediction, ``time_scale``,
the ``nnx_samplers`` network adapters and the authors' sampler).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import sys
from collections.abc import Callable

import numpy as np
from flax import nnx

from nnx_nets import (
    DINOV2_PRESETS,
    DIT_DH_PRESETS,
    DIT_PRESETS,
    LIGHTNING_DIT_PRESETS,
    RAE_DECODER_PRESETS,
    SD_VAE_PRESETS,
    SDVAE,
    DINOv2,
    DiT,
    DiTDH,
    LightningDiT,
    MeanFlowDiT,
    RAEDecoder,
)
from nnx_weightconv import (
    CHECKPOINT_CONVENTIONS,
    ConversionError,
    check_tied_copies,
    checkpoint_convention,
    diffusers_dit_buffer_keys,
    diffusers_dit_rules,
    dinov2_kwargs_from_transformers_config,
    dit_buffer_keys,
    dit_dh_buffer_keys,
    dit_dh_rules,
    dit_kwargs_from_diffusers_config,
    dit_rules,
    lightning_dit_buffer_keys,
    lightning_dit_rules,
    load_dinov2,
    load_into,
    load_rae_decoder,
    load_sd_vae,
    meanflow_dit_rules,
    read_state_dict,
    save_orbax,
    sd_vae_kwargs_from_diffusers_config,
)

ARCHITECTURES = (
    "dit",
    "sit",
    "meanflow_dit",
    "diffusers_dit",
    "lightning_dit",
    "dit_dh",
    "dinov2",
    "dinov2_reg",
    "sd_vae",
    "rae_decoder",
)
# load(model, state_dict, strict): fills the model in place or raises ConversionError.
Loader = Callable[[nnx.Module, dict, bool], None]
_SIZE_FIELDS = (
    "hidden_size",
    "depth",
    "num_heads",
    "patch_size",
    "head_hidden_size",
    "head_depth",
    "head_num_heads",
    "intermediate_size",
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
        help="preset name, e.g. DiT-XL/2, LightningDiT-XL/1, DiTDH-XL, dinov2-vitb14, "
        "sd-vae-ft-mse, ViT-XL (sizes given below override it; without a preset or "
        "--config give all of them)",
    )
    parser.add_argument("--subkey", help='entry holding the weights, e.g. "ema" or "model"')
    parser.add_argument(
        "--config",
        "--diffusers-config",
        dest="config",
        type=pathlib.Path,
        help="config.json of the checkpoint: diffusers (diffusers_dit, sd_vae) or "
        "transformers (dinov2, dinov2_reg)",
    )
    parser.add_argument(
        "--input-size",
        type=int,
        help="latent height = width (DiT family, rae_decoder: latent grid, default 16); "
        "dinov2: image side of the position table (default 518)",
    )
    parser.add_argument(
        "--in-channels", type=int, help="latent channels (rae_decoder: latent width, default 768)"
    )
    parser.add_argument(
        "--no-final-norm-affine",
        action="store_true",
        help="dinov2: no final LayerNorm scale/bias (RAE's encoder); the checkpoint's are skipped",
    )
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
    parser.add_argument("--force", action="store_true", help="replace an existing output folder")
    return parser


def _nonfinite(params) -> list[str]:
    """Names of the parameters holding NaN/Inf values."""
    return [
        "/".join(str(k) for k in path)
        for path, var in params
        if not np.isfinite(np.asarray(var.get_value())).all()
    ]


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


def _rules_loader(rules_fn, buffers_fn, check=None) -> Loader:
    """A loader applying ``rules_fn(model)``, ignoring the fixed tables ``buffers_fn(model)``."""

    def load(model, state_dict, strict):
        rules = rules_fn(model)
        if check is not None:
            check(state_dict, rules)
        load_into(model, state_dict, rules, strict=strict, ignore=buffers_fn(model))

    return load


def _preset(args, presets: dict[str, dict], name: str | None = None) -> dict:
    name = args.preset if name is None else name
    if name not in presets:
        raise ValueError(
            f"unknown preset {name!r} for --arch {args.arch}; valid: {', '.join(presets)}"
        )
    return dict(presets[name])


def _config(args) -> dict:
    try:
        return json.loads(args.config.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read --config {str(args.config)!r}: {error}") from error


def _override(args, kwargs: dict, fields: tuple[str, ...]) -> dict:
    kwargs.update({f: getattr(args, f) for f in fields if getattr(args, f) is not None})
    return kwargs


def _dinov2(args) -> dict:
    registers_wanted = args.arch == "dinov2_reg"
    if args.config is not None:
        kwargs = dinov2_kwargs_from_transformers_config(_config(args))
    elif args.preset is not None:
        name = args.preset
        if registers_wanted and not name.endswith("-reg"):
            name += "-reg"
        kwargs = _preset(args, DINOV2_PRESETS, name)
    else:
        raise ValueError(f"--arch {args.arch} needs --config (transformers) or --preset")
    _override(args, kwargs, ("hidden_size", "depth", "num_heads", "patch_size"))
    if args.input_size is not None:
        kwargs["image_size"] = args.input_size
    if bool(kwargs.get("num_register_tokens", 0)) != registers_wanted:
        other = "dinov2" if registers_wanted else "dinov2_reg"
        raise ValueError(
            f"--arch {args.arch} does not match this configuration "
            f"({kwargs.get('num_register_tokens', 0)} register tokens); use --arch {other}"
        )
    if args.no_final_norm_affine:
        kwargs["final_norm_affine"] = False
    return kwargs


def _sd_vae(args) -> dict:
    if args.config is not None:
        return sd_vae_kwargs_from_diffusers_config(_config(args))
    if args.preset is not None:
        return _preset(args, SD_VAE_PRESETS)
    raise ValueError("--arch sd_vae needs --config (diffusers vae/config.json) or --preset")


def _rae_decoder(args) -> dict:
    fields = ("hidden_size", "depth", "num_heads", "intermediate_size")
    kwargs = _preset(args, RAE_DECODER_PRESETS) if args.preset is not None else {}
    _override(args, kwargs, (*fields, "patch_size"))
    absent = [f for f in fields if kwargs.get(f) is None]
    if absent:
        flags = ", ".join("--" + f.replace("_", "-") for f in absent)
        raise ValueError(f"--arch rae_decoder needs {flags} (or a --preset that sets them)")
    kwargs["latent_dim"] = args.in_channels if args.in_channels is not None else 768
    kwargs["grid_size"] = args.input_size if args.input_size is not None else 16
    return kwargs


def _strict_loader(load_fn) -> Loader:
    """A loader calling a spec's ``load_*(model, state_dict, strict=...)`` (layout detected)."""
    return lambda model, state_dict, strict: load_fn(model, state_dict, strict=strict)


def build(args) -> tuple[type, dict, Loader]:
    """The model class, its constructor kwargs (without rngs) and its loader.

    The one place where architecture names become objects.
    """
    dit_sizes = ("hidden_size", "depth", "num_heads", "patch_size")
    match args.arch:
        case "dit" | "sit" | "meanflow_dit":
            kwargs = _sizes(args, DIT_PRESETS, dit_sizes)
            kwargs.update(num_classes=args.num_classes, learn_sigma=args.learn_sigma)
            if args.arch in ("dit", "sit"):
                return DiT, kwargs, _rules_loader(dit_rules, dit_buffer_keys)
            return MeanFlowDiT, kwargs, _rules_loader(meanflow_dit_rules, dit_buffer_keys)
        case "diffusers_dit":
            if args.config is not None:
                kwargs = dit_kwargs_from_diffusers_config(_config(args))
            else:
                kwargs = _sizes(args, DIT_PRESETS, dit_sizes)
                kwargs.update(
                    num_classes=args.num_classes,
                    learn_sigma=args.learn_sigma,
                    time_scale=1000.0,
                    time_freq_shift=1.0,
                )
            loader = _rules_loader(
                diffusers_dit_rules, diffusers_dit_buffer_keys, check=check_tied_copies
            )
            return DiT, kwargs, loader
        case "lightning_dit":
            kwargs = _sizes(args, LIGHTNING_DIT_PRESETS, dit_sizes)
            kwargs.update(
                num_classes=args.num_classes,
                learn_sigma=args.learn_sigma,
                qk_norm=args.qk_norm,
                adaln_shift=not args.no_adaln_shift,
                time_embedding=args.time_embedding,
            )
            loader = _rules_loader(lightning_dit_rules, lightning_dit_buffer_keys)
            return LightningDiT, kwargs, loader
        case "dit_dh":
            kwargs = _sizes(
                args,
                DIT_DH_PRESETS,
                (*dit_sizes, "head_hidden_size", "head_depth", "head_num_heads"),
            )
            kwargs.update(num_classes=args.num_classes)
            return DiTDH, kwargs, _rules_loader(dit_dh_rules, dit_dh_buffer_keys)
        case "dinov2" | "dinov2_reg":
            return DINOv2, _dinov2(args), _strict_loader(load_dinov2)
        case "sd_vae":
            return SDVAE, _sd_vae(args), _strict_loader(load_sd_vae)
        case "rae_decoder":
            return RAEDecoder, _rae_decoder(args), _strict_loader(load_rae_decoder)
        case _:
            raise ValueError(f"unknown --arch {args.arch!r}; valid: {', '.join(ARCHITECTURES)}")


def main(argv: list[str] | None = None) -> int:
    """Run the conversion; returns the exit status (0 ok, 1 checkpoint mismatch, 2 usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cls, kwargs, load = build(args)
    except ValueError as error:
        parser.error(str(error))
    if args.output.exists() and not (args.force or args.dry_run):
        print(
            f"error: the output {args.output} exists; pass --force to replace it, or choose "
            "another output folder",
            file=sys.stderr,
        )
        return 2
    try:
        state_dict = read_state_dict(args.checkpoint, subkey=args.subkey)
        if args.non_strict:  # unfilled parameters need a real initialisation
            model = cls(**kwargs, rngs=nnx.Rngs(0))
        else:  # every parameter will come from the checkpoint: build shapes only
            model = nnx.eval_shape(lambda: cls(**kwargs, rngs=nnx.Rngs(0)))
        load(model, state_dict, not args.non_strict)
    except (ConversionError, FileNotFoundError, ImportError) as error:
        print(f"error: {args.checkpoint}: {error}", file=sys.stderr)
        return 1
    params = nnx.state(model, nnx.Param).flat_state()
    broken = _nonfinite(params)
    if broken:
        shown = ", ".join(broken[:3]) + (f", ... ({len(broken)} in all)" if len(broken) > 3 else "")
        print(
            f"error: {args.checkpoint}: NaN/Inf weights in {shown}; the checkpoint diverged or "
            "is damaged: convert another one (nothing was written)",
            file=sys.stderr,
        )
        return 1
    count = sum(int(np.prod(var.get_value().shape)) for _, var in params)
    summary = (
        f"{cls.__name__}({', '.join(f'{k}={v}' for k, v in kwargs.items())}): {count:,} parameters"
    )
    if args.dry_run:
        print(f"ok (dry run): {summary}")
        return 0
    if args.output.exists():  # --force: replace it
        shutil.rmtree(args.output)
    save_orbax(model, args.output)
    print(f"wrote {args.output}: {summary}")
    if args.arch in CHECKPOINT_CONVENTIONS:
        convention = checkpoint_convention(args.arch, learn_sigma=bool(kwargs.get("learn_sigma")))
        path = pathlib.Path(args.output) / "sampling.json"
        path.write_text(json.dumps(convention.to_json(), indent=2) + "\n")
        print(f"sampling: {convention.sampler}; adapters {list(convention.adapters)} ({path})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
