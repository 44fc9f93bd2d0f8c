"""Inception pool3 case of ``gpu.py`` and the kernel profiles of the training cases.

Inception: the same ``N`` uint8 images through `nnx_fid.InceptionFeatures` with every
convolution at ``jax.lax.Precision.HIGHEST`` (the FID reference: full float32) and at faster
precisions (``HIGH``: bfloat16_3x; ``DEFAULT``: TF32 on NVIDIA GPUs, one bfloat16 pass on TPU);
for each, throughput and the FID between two image sets (features of set A against set B,
``N / 2`` images each), with the relative difference to the HIGHEST FID. The issue's bar is a
relative difference <= 1e-3. Random Inception weights unless ``--inception-weights`` names the
pytorch-fid file (the bar is about numerics, which random weights exercise as well; the real
weights are the one that matters for a paper's FID; random weights are He-normal,
`nnx_nets.testing.randomise_parameters`). pytorch-fid (TF32 and fp32 convolutions)
is timed on the same images for continuity with the README's table.

Profiles: ``jax.profiler`` (a Perfetto trace) and ``torch.profiler``; the top kernels by device
time and their share of the traced steps.
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import tempfile
import time

import jax
import numpy as np
from flax import nnx

PRECISIONS = {"highest": jax.lax.Precision.HIGHEST, "high": jax.lax.Precision.HIGH,
              "default": jax.lax.Precision.DEFAULT}  # fmt: skip
FID_REL_BAR = 1e-3


def image_sets(count: int, size: int, seed: int = 0) -> np.ndarray:
    """``(count, size, size, 3)`` uint8 smooth random images (upsampled 8x8 noise): two halves
    drawn alike, so their FID is a small, well-defined number like that of two real samples."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (count, 8, 8, 3))
    fine = np.repeat(np.repeat(coarse, size // 8, axis=1), size // 8, axis=2)
    noise = rng.normal(0, 12, fine.shape)
    return np.clip(fine + noise, 0, 255).astype(np.uint8)


def _extractor(precision, weights: str | None):
    from nnx_fid import InceptionFeatures, InceptionV3, load_inception
    from nnx_nets.testing import randomise_parameters

    if weights:
        model = load_inception(weights)
    else:  # the zero-initialised network would give zero features and FID 0
        model = InceptionV3(rngs=nnx.Rngs(0))
        randomise_parameters(model, seed=0)
    for _, node in nnx.iter_graph(model):
        if isinstance(node, nnx.Conv | nnx.Linear):
            node.precision = precision
    return InceptionFeatures(model, front_end="pytorch_fid")


def _fid(features: np.ndarray) -> float:
    from nnx_fid import frechet_distance

    half = features.shape[0] // 2
    a, b = features[:half].astype(np.float64), features[half:].astype(np.float64)
    stats = [(x.mean(0), np.cov(x, rowvar=False)) for x in (a, b)]
    return float(frechet_distance(*stats[0], *stats[1]))


def jax_inception_rows(images: np.ndarray, batch: int, weights: str | None) -> list[dict]:
    rows, reference = [], None
    for name, precision in PRECISIONS.items():
        extract = _extractor(precision, weights)
        extract(images[:batch])  # compiles
        start = time.perf_counter()
        feats = np.concatenate(
            [extract(images[i : i + batch])["pool"] for i in range(0, len(images), batch)]
        )
        seconds = time.perf_counter() - start
        fid = _fid(feats)
        reference = fid if reference is None else reference
        rel = abs(fid - reference) / reference if reference else float("nan")
        rows.append(dict(framework=f"jax (nnx-fid, {name.upper()} precision)",
                         value=len(images) / seconds, seconds=seconds, fid=fid,
                         fid_rel_diff_vs_highest=rel, within_fid_bar=rel <= FID_REL_BAR))  # fmt: skip
    return rows


def torch_inception_rows(images: np.ndarray, batch: int) -> list[dict]:
    import bench_inception
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = []
    for tf32 in (True, False):
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        run = bench_inception.torch_features(batch, images.shape[1], device=device)
        run()
        start = time.perf_counter()
        for _ in range(0, len(images), batch):
            run()
        seconds = time.perf_counter() - start
        rows.append(dict(framework=f"torch (pytorch-fid, {'TF32' if tf32 else 'fp32'})",
                         value=len(images) / seconds, seconds=seconds))  # fmt: skip
    return rows


def _top(durations: dict[str, float], top: int) -> list[dict]:
    total = sum(durations.values()) or 1.0
    ranked = sorted(durations.items(), key=lambda kv: -kv[1])[:top]
    return [dict(kernel=k[:160], seconds=v, share=v / total) for k, v in ranked]


def jax_profile(run, steps: int = 3, top: int = 15) -> list[dict]:
    """Top device kernels (CPU: XLA ops on host threads) of ``steps`` calls of ``run``."""
    directory = tempfile.mkdtemp(prefix="jax_profile_")
    with jax.profiler.trace(directory, create_perfetto_trace=True):
        for _ in range(steps):
            out = run()
        jax.block_until_ready(out)
    path = sorted(glob.glob(f"{directory}/**/*.trace.json.gz", recursive=True))[-1]
    with gzip.open(path) as handle:
        events = json.loads(handle.read())["traceEvents"]
    names = {e["pid"]: e["args"]["name"] for e in events if e.get("name") == "process_name"}
    gpu = {pid for pid, name in names.items() if "GPU" in name or "TPU" in name}
    durations: dict[str, float] = collections.defaultdict(float)
    for e in events:
        if e.get("ph") != "X" or "dur" not in e:
            continue
        if (e["pid"] in gpu) if gpu else ("hlo_op" in e.get("args", {})):
            durations[e["name"]] += e["dur"] * 1e-6
    return _top(durations, top)


def torch_profile(run, steps: int = 3, top: int = 15) -> list[dict]:
    import torch
    from torch.profiler import ProfilerActivity, profile

    cuda = torch.cuda.is_available()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            run()
        if cuda:
            torch.cuda.synchronize()
    field = "self_device_time_total" if cuda else "self_cpu_time_total"
    durations = {e.key: getattr(e, field) * 1e-6 for e in prof.key_averages()}
    return _top({k: v for k, v in durations.items() if v > 0}, top)
