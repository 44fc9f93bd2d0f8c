"""Encode an ImageFolder into an EDM2-format latent dataset (what `apps/train` reads).

Examples::

    # SD-VAE latents of 256-px ImageNet (DiT / SiT / REPA / MeanFlow recipes)
    python tools/extract_latents.py --source /data/imagenet/train --dest /data/in256_sdvae \\
        --resolution 256 --encoder sdvae --weights /weights/sd-vae-ft-ema.safetensors

    # ... plus a horizontally flipped copy of every image (twice the entries)
    python tools/extract_latents.py ... --flip

    # RAE latents: DINOv2-B with registers, normalised with the published statistics
    python tools/extract_latents.py --source /data/imagenet/train --dest /data/in256_rae \\
        --resolution 256 --encoder rae --weights /weights/dinov2-with-registers-base.safetensors \\
        --rae_stats /weights/stat.npz

Every image is ADM-centre-cropped (`nnx_train.adm_center_crop`) and written as one
``<dest>/<group>/img<index>.npy`` float32 array in CHW layout, with ``<dest>/dataset.json``
listing ``[file, label]`` pairs (EDM2's ``dataset_tool.py`` layout). SD-VAE files hold the
posterior mean and standard deviation stacked along channels (2C; ``data.posterior=
"mean_std"``: the trainer draws a fresh sample every epoch); RAE files hold the normalised
tokens (``posterior="sample"``).

Batches are split over all local devices (data parallel). The run is resumable: each file is
written to a temporary name and renamed when complete, existing files are skipped, and
``dataset.json`` is rewritten at the end, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence

import numpy as np

INPUT_RANGES = ("minus_one_one", "zero_one")
ENCODERS = ("sdvae", "rae")


def output_name(index: int) -> str:
    """``00000/img00000000.npy``: 1000 files per folder, as EDM2."""
    return f"{index // 1000:05d}/img{index:08d}.npy"


def plan_entries(
    files: Sequence[str], labels: Sequence[int], *, flip: bool
) -> list[tuple[int, str, int, bool]]:
    """``(index, source file, label, flipped)`` for every output; flips come after originals."""
    entries = [(i, f, int(label), False) for i, (f, label) in enumerate(zip(files, labels))]
    if flip:
        offset = len(entries)
        entries += [
            (offset + i, f, int(label), True) for i, (f, label) in enumerate(zip(files, labels))
        ]
    return entries


def _atomic_save(path: str, array: np.ndarray) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = f"{path}.tmp"
    with open(temporary, "wb") as handle:
        np.save(handle, array)
    os.replace(temporary, path)


def extract(
    source: str,
    dest: str,
    *,
    encode: Callable[[np.ndarray], np.ndarray],
    resolution: int,
    flip: bool = False,
    batch_size: int = 32,
    input_range: str = "minus_one_one",
    progress: bool = True,
) -> dict:
    """Encodes ``source`` (ImageFolder) into ``dest`` (EDM2 latent folder); resumable.

    Args:
      source: ``root/<class>/<image>`` folder (classes sorted -> labels 0..K-1).
      dest: output folder.
      encode: ``(B, R, R, 3) float32 pixels -> (B, C, h, w) float32`` arrays to store.
      resolution: ADM centre-crop side.
      flip: also store a horizontally flipped copy of every image.
      batch_size: images per ``encode`` call (the last batch is padded to this size).
      input_range: pixels given to ``encode`` in [-1, 1] (``minus_one_one``: DiT, SiT, REPA)
        or [0, 1] (``zero_one``: EDM2's convention); never mix statistics across the two.
      progress: show a tqdm bar.

    Returns:
      ``{"written": n, "skipped": n, "total": n}``.
    """
    from PIL import Image
    from tqdm.auto import tqdm

    from nnx_train import adm_center_crop, list_image_folder

    if input_range not in INPUT_RANGES:
        raise ValueError(f"input_range={input_range!r}; use one of {INPUT_RANGES}.")
    files, labels, _ = list_image_folder(source)
    entries = plan_entries(files, labels, flip=flip)
    todo = [e for e in entries if not os.path.exists(os.path.join(dest, output_name(e[0])))]
    bar = tqdm(
        total=len(entries), initial=len(entries) - len(todo), desc="latents", disable=not progress
    )
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        pixels = []
        for _, name, _, flipped in chunk:
            with Image.open(os.path.join(source, name)) as image:
                array = adm_center_crop(image, resolution)
            pixels.append(array[:, ::-1] if flipped else array)
        batch = np.stack(pixels).astype(np.float32) / 255.0
        if input_range == "minus_one_one":
            batch = 2.0 * batch - 1.0
        padded = np.concatenate([batch, np.repeat(batch[-1:], batch_size - len(batch), 0)])
        latents = np.asarray(encode(padded), np.float32)[: len(chunk)]
        for (index, _, _, _), latent in zip(chunk, latents):
            _atomic_save(os.path.join(dest, output_name(index)), latent)
        bar.update(len(chunk))
    bar.close()
    index = {"labels": [[output_name(i), label] for i, _, label, _ in entries]}
    os.makedirs(dest, exist_ok=True)
    with open(os.path.join(dest, "dataset.json.tmp"), "w") as handle:
        json.dump(index, handle)
    os.replace(os.path.join(dest, "dataset.json.tmp"), os.path.join(dest, "dataset.json"))
    return {"written": len(todo), "skipped": len(entries) - len(todo), "total": len(entries)}


def sdvae_encoder(vae, *, mesh=None) -> Callable[[np.ndarray], np.ndarray]:
    """Posterior ``mean || std`` (2C channels, CHW) of an ``nnx_nets.SDVAE``, data parallel."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    graphdef, state = nnx.split(vae)

    @jax.jit
    def run(state, pixels):
        posterior = nnx.merge(graphdef, state).encode(pixels)
        moments = jnp.concatenate([posterior.mean, jnp.exp(0.5 * posterior.logvar)], axis=-1)
        return jnp.transpose(moments, (0, 3, 1, 2))

    return _data_parallel(lambda pixels: run(state, pixels), mesh)


def rae_encoder(dinov2, normalizer, *, encoder_resolution: int, mesh=None) -> Callable:
    """Normalised DINOv2 patch tokens ``(B, 768, 16, 16)`` (RAE's latents), data parallel."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from nnx_train.tasks import encoder_input

    graphdef, state = nnx.split(dinov2)
    norm_graphdef, norm_state = nnx.split(normalizer)

    @jax.jit
    def run(state, norm_state, pixels):
        inputs = encoder_input(pixels, encoder_resolution, antialias=False)
        tokens = nnx.merge(graphdef, state)(inputs)["patch_tokens"]
        side = int(round(tokens.shape[1] ** 0.5))
        grid = tokens.reshape(tokens.shape[0], side, side, tokens.shape[-1])
        grid = nnx.merge(norm_graphdef, norm_state).normalize(grid)
        return jnp.transpose(grid, (0, 3, 1, 2))

    return _data_parallel(lambda pixels: run(state, norm_state, pixels), mesh)


def _data_parallel(fn: Callable, mesh) -> Callable[[np.ndarray], np.ndarray]:
    import jax

    if mesh is None:
        return lambda pixels: np.asarray(jax.device_get(fn(pixels)))
    import nnx_sharding as ns

    rules = ns.replicate_rules()

    def call(pixels):
        return np.asarray(jax.device_get(fn(ns.global_batch(pixels, mesh=mesh, rules=rules))))

    return call


def _build_encoder(args: argparse.Namespace) -> Callable[[np.ndarray], np.ndarray]:
    import jax
    from flax import nnx

    import nnx_nets
    import nnx_sharding as ns
    import nnx_weightconv as wc

    if not args.weights or not os.path.isfile(args.weights):
        raise SystemExit(
            f"error: --weights {args.weights!r} is not a file; pass the encoder's weights."
        )
    mesh = ns.make_mesh(ns.MeshConfig(data=-1), devices=jax.local_devices())
    if args.batch_size % mesh.size:
        raise SystemExit(
            f"error: --batch_size {args.batch_size} does not divide over {mesh.size} devices; "
            f"use a multiple of {mesh.size}."
        )
    state_dict = wc.read_state_dict(args.weights)
    if args.encoder == "sdvae":
        vae = nnx_nets.SDVAE(rngs=nnx.Rngs(0))
        wc.load_sd_vae(vae, state_dict)  # old or new attention key names
        return sdvae_encoder(vae, mesh=mesh)
    if not args.rae_stats or not os.path.isfile(args.rae_stats):
        raise SystemExit("error: --encoder rae needs --rae_stats (the published stat.pt or .npz).")
    dinov2 = nnx_nets.dinov2_from_preset(
        "dinov2-vitb14-reg", final_norm_affine=False, rngs=nnx.Rngs(0)
    )
    wc.load_dinov2(dinov2, state_dict)
    stats = wc.read_state_dict(args.rae_stats)
    normalizer = nnx_nets.LatentNormalizer.from_chw(stats["var"], stats.get("mean"))
    return rae_encoder(dinov2, normalizer, encoder_resolution=args.encoder_resolution, mesh=mesh)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", required=True, help="ImageFolder root (root/<class>/<image>)")
    parser.add_argument("--dest", required=True, help="output latent folder")
    parser.add_argument("--resolution", type=int, default=256, help="ADM centre-crop side")
    parser.add_argument("--encoder", choices=ENCODERS, default="sdvae")
    parser.add_argument("--weights", default="", help="SD-VAE or DINOv2-with-registers weights")
    parser.add_argument(
        "--rae_stats", default="", help="RAE latent statistics (var, optional mean)"
    )
    parser.add_argument(
        "--encoder_resolution", type=int, default=224, help="RAE encoder input side"
    )
    parser.add_argument("--input_range", choices=INPUT_RANGES, default="minus_one_one")
    parser.add_argument("--flip", action="store_true", help="also store flipped copies")
    parser.add_argument("--batch_size", type=int, default=64)
    args = parser.parse_args(argv)
    from nnx_train.errors import TrainError

    try:
        encode = _build_encoder(args)
        result = extract(
            args.source,
            args.dest,
            encode=encode,
            resolution=args.resolution,
            flip=args.flip,
            batch_size=args.batch_size,
            input_range=args.input_range,
        )
    except TrainError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
