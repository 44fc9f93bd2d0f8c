"""Encode images into an EDM2-format latent dataset (what `apps/train` reads).

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

    # TFDS-prepared ImageNet (ArrayRecord) or WebDataset shards, split over 4 hosts: run
    # this on each host with its own --process_index (0..3), all writing to one --dest
    python tools/extract_latents.py --format arrayrecord --split train \\
        --source /data/tensorflow_datasets/imagenet2012/5.1.0 --dest /data/in256_sdvae \\
        --weights /weights/sd-vae-ft-ema.safetensors --process_index 0 --process_count 4
    python tools/extract_latents.py --format webdataset \\
        --source '/data/imagenet-wds/shard-{000000..000146}.tar' ...

Sources (``--format``): ``imagefolder`` (``root/<class>/<image>``), ``arrayrecord``
(``tf.train.Example`` records with ``image`` and ``label``, as TFDS writes them) and
``webdataset`` (``{key}.jpg|png`` + ``{key}.cls`` tar shards). Process ``p`` of ``n`` encodes
records ``p::n`` (WebDataset: the records of shards ``p::n``); file names are global indices,
so processes never write the same file; each writes its part of the index
(``dataset.part-<p>-of-<n>.json``) and the last to finish merges them into ``dataset.json``.

Every image is ADM-centre-cropped (`nnx_fid.adm_center_crop`) and written as one
``<dest>/<group>/img<index>.npy`` float32 array in CHW layout, with ``<dest>/dataset.json``
listing ``[file, label]`` pairs (EDM2's ``dataset_tool.py`` layout). SD-VAE files hold the
posterior mean and standard deviation stacked along channels (2C; ``data.posterior=
"mean_std"``: the trainer draws a fresh sample every epoch); RAE files hold the normalised
tokens (``posterior="sample"``).

Batches are split over all local devices (data parallel). The run is resumable: each file is
written to a temporary name and renamed when complete, existing files are skipped, and
the index is rewritten at the end, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import argparse
import io
import itertools
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


def part_name(process_index: int, process_count: int) -> str:
    """The index of one process's outputs, merged into ``dataset.json`` by the last one."""
    return f"dataset.part-{process_index:05d}-of-{process_count:05d}.json"


def _atomic_save(path: str, array: np.ndarray) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = f"{path}.tmp"
    with open(temporary, "wb") as handle:
        np.save(handle, array)
    os.replace(temporary, path)


def _atomic_json(path: str, value: object) -> None:
    temporary = f"{path}.tmp{os.getpid()}"
    with open(temporary, "w") as handle:
        json.dump(value, handle)
    os.replace(temporary, path)


def _write_index(
    dest: str, entries: list, process_index: int, process_count: int, flip: bool = False
) -> bool:
    """Writes this process's part; when every part exists, merges them into dataset.json.

    With ``flip``, ``dataset.json`` also says ``"flipped_copies": true``: entry ``i + N`` is the
    flipped copy of entry ``i`` (``N`` images), which the trainer's ``data.horizontal_flip``
    picks with probability 1/2 (`nnx_train.data.LatentSource`).

    Returns:
      Whether ``dataset.json`` was written.
    """
    os.makedirs(dest, exist_ok=True)
    _atomic_json(os.path.join(dest, part_name(process_index, process_count)), entries)
    parts = [os.path.join(dest, part_name(p, process_count)) for p in range(process_count)]
    if not all(os.path.isfile(p) for p in parts):
        return False
    merged = []
    for part in parts:
        with open(part) as handle:
            merged += json.load(handle)
    merged.sort(key=lambda entry: entry[0])
    index = {"labels": [e[1:] for e in merged]}
    if flip:
        index["flipped_copies"] = True
    _atomic_json(os.path.join(dest, "dataset.json"), index)
    return True


def _pixels(payload: bytes, resolution: int, flipped: bool, name: object) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    from nnx_fid import adm_center_crop
    from nnx_train.errors import DataError

    try:
        with Image.open(io.BytesIO(payload)) as image:
            array = adm_center_crop(image, resolution)
    except (OSError, UnidentifiedImageError) as err:
        raise DataError(f"Cannot decode image {name} ({err}); replace or remove it.") from err
    return array[:, ::-1] if flipped else array


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
    source_format: str = "imagefolder",
    split: str = "",
    num_classes: int = 1000,
    process_index: int = 0,
    process_count: int = 1,
) -> dict:
    """Encodes this process's share of ``source`` into ``dest`` (EDM2 latent folder).

    Args:
      source: ImageFolder root, ArrayRecord path or WebDataset shards (``source_format``).
      dest: output folder (shared by all processes: file names are global indices).
      encode: ``(B, R, R, 3) float32 pixels -> (B, C, h, w) float32`` arrays to store.
      resolution: ADM centre-crop side.
      flip: also store a flipped copy of every image (index + number of records).
      batch_size: images per ``encode`` call (the last batch is padded to this size).
      input_range: pixels given to ``encode`` in [-1, 1] (``minus_one_one``: DiT, SiT, REPA)
        or [0, 1] (``zero_one``: EDM2's convention); never mix statistics across the two.
      progress: show a tqdm bar.
      source_format: ``imagefolder``, ``arrayrecord`` or ``webdataset``.
      split: ArrayRecord split in the file names (TFDS: ``train``), ``""`` for all.
      num_classes: ArrayRecord / WebDataset labels must lie below it.
      process_index: this process (``--process_index``).
      process_count: processes sharing the work.

    Returns:
      ``{"written", "skipped", "total"}`` of this process, and ``"index"``: whether it wrote
      ``dataset.json`` (the last process to finish merges every part).
    """
    from tqdm.auto import tqdm

    if input_range not in INPUT_RANGES:
        raise ValueError(f"input_range={input_range!r}; use one of {INPUT_RANGES}.")
    from nnx_train.data import EncodedImages

    images = EncodedImages(source_format, source, num_classes=num_classes, split=split)
    total = images.count(process_index, process_count) * (2 if flip else 1)
    bar = tqdm(total=total, desc="latents", disable=not progress)
    entries: list = []
    crops = _missing_crops(
        images, process_index, process_count, dest, flip, resolution, entries, bar
    )
    written = 0
    while chunk := list(itertools.islice(crops, batch_size)):
        written += _encode_batch(chunk, dest, encode, batch_size, input_range)
        bar.update(len(chunk))
    bar.close()
    merged = _write_index(dest, entries, process_index, process_count, flip)
    return {"written": written, "skipped": total - written, "total": total, "index": merged}


def _missing_crops(images, process_index, process_count, dest, flip, resolution, entries, bar):
    """Yields ``(output index, (R, R, 3) uint8 crop)`` of this process's outputs that are not
    on disk yet; appends every output's ``[index, file, label]`` to ``entries``."""
    for index, label, read in images.records(process_index, process_count):
        payload = None
        for flipped in (False, True) if flip else (False,):
            out = int(index) + len(images) * flipped
            entries.append([out, output_name(out), label])
            if os.path.exists(os.path.join(dest, output_name(out))):
                bar.update(1)
                continue
            payload = read() if payload is None else payload
            yield out, _pixels(payload, resolution, flipped, index)


def _encode_batch(chunk, dest, encode, batch_size: int, input_range: str) -> int:
    """Encodes ``[(output index, (R, R, 3) uint8)]`` and saves one file per entry."""
    batch = np.stack([pixels for _, pixels in chunk]).astype(np.float32) / 255.0
    if input_range == "minus_one_one":
        batch = 2.0 * batch - 1.0
    padded = np.concatenate([batch, np.repeat(batch[-1:], batch_size - len(batch), 0)])
    latents = np.asarray(encode(padded), np.float32)[: len(chunk)]
    for (index, _), latent in zip(chunk, latents):
        _atomic_save(os.path.join(dest, output_name(index)), latent)
    return len(chunk)


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
        inputs = encoder_input(pixels, encoder_resolution)
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
    parser.add_argument(
        "--source", required=True, help="ImageFolder root, ArrayRecord path or WebDataset shards"
    )
    parser.add_argument(
        "--format",
        choices=("imagefolder", "arrayrecord", "webdataset"),
        default="imagefolder",
        help="of --source",
    )
    parser.add_argument("--split", default="", help="ArrayRecord split in file names (train)")
    parser.add_argument("--num_classes", type=int, default=1000, help="labels must be below")
    parser.add_argument("--process_index", type=int, default=0, help="this process (0..n-1)")
    parser.add_argument("--process_count", type=int, default=1, help="processes sharing work")
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
    if not 0 <= args.process_index < args.process_count:
        raise SystemExit(
            f"error: --process_index {args.process_index} is not in 0..{args.process_count - 1}; "
            "give each of the --process_count processes its own index."
        )
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
            source_format=args.format,
            split=args.split,
            num_classes=args.num_classes,
            process_index=args.process_index,
            process_count=args.process_count,
        )
    except TrainError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
