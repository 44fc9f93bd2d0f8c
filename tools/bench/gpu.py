"""One GPU run: DiT-XL/2 training, Euler-50 CFG sampling and Inception features, ours (JAX)
against the official DiT in PyTorch, compiled (the best PyTorch setup) and eager, same process.

    XLA_PYTHON_CLIENT_MEM_FRACTION=.95 PYTHONPATH=tools/bench \\
        uv run --group test python tools/bench/gpu.py --out $OUT/gpu.json [--profile]
    uv run --group test python tools/bench/gpu.py --quick --out /tmp/gpu_quick.json  # CPU, tiny

Cases (rows of the JSON report, rewritten after every case so that a run cut short keeps what
it measured; an exception becomes an ``error`` row and the run goes on):

- DiT-XL/2 256 px (32x32x4 latents) training at batch 256 and 32. Ours: the library's train
  step (`nnx_train.step`, AdamW + EMA, donated state) under the XL recipes' policy
  (``nnx_train.defaults.XL_ONE_GPU_POLICY``: bfloat16 precision, scanned blocks; remat
  ``dots_saveable`` at batch 256, ``none`` at 32 unless ``--remat`` says otherwise), and the
  same with unrolled blocks (on the H200 of 2026-11-30 unrolled was faster at batch 32: 419
  against 295 img/s; its memory is not asserted on CPU, whose compile of it is too slow). PyTorch:
  fused AdamW, bfloat16 autocast, flash SDPA, ``torch.compile`` and eager.
- Euler-50 + CFG 1.5 sampling of 256 images, guided at every step and inside the guidance
  interval [0, 0.7] only (Kynkaanniemi et al. 2024); both frameworks skip the unconditional
  half outside the interval.
- InceptionV3 pool3 features of 10k images at HIGHEST / HIGH / DEFAULT precision, with the
  FID of each against HIGHEST (`gpu_inception`); pytorch-fid TF32 and fp32.

MFU: DiT-XL/2 at 256 px costs 118.64 G multiply-adds per forward pass (Peebles & Xie 2023,
table 4), a training step 3 passes: MFU = img/s x 3 x 2 x 118.64 GFLOP / 989 TFLOP/s (H200
dense bf16 peak, NVIDIA data sheet). Targets of issue 18: ours >= 690 img/s (50% MFU) and
>= 1.3x PyTorch compiled at batch 256; sampling >= 1.3x PyTorch compiled; Inception >= 3000
img/s within the FID bar. ``--quick``: a tiny DiT and 32 small images, runs on CPU in minutes
(proves the script, measures nothing about a GPU).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib.metadata
import time
import traceback

import gpu_inception
import gpu_train
import harness

FORWARD_GMACS_XL2_256 = 118.64
PEAK_BF16_TFLOPS = 989.0
XL2 = dict(input_size=32, patch_size=2, in_channels=4, hidden_size=1152, depth=28, num_heads=16,
           num_classes=1000)  # fmt: skip
TINY = dict(input_size=8, patch_size=2, in_channels=4, hidden_size=64, depth=2, num_heads=2,
            num_classes=10)  # fmt: skip
FULL = dict(model=XL2, batches=(256, 32), steps=20, samples=256, images=10_000, image_batch=500,
            image_size=256)  # fmt: skip
QUICK = dict(model=TINY, batches=(8, 4), steps=2, samples=4, images=32, image_batch=16,
             image_size=64)  # fmt: skip
VERSIONS = ("jax", "jaxlib", "flax", "optax", "torch", "numpy")


def versions() -> dict:
    found = {}
    for name in VERSIONS:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def _train_case(size: dict, batch: int, framework: str, args) -> dict:
    profile = None
    if args.profile and batch == size["batches"][0]:
        profile = gpu_inception.jax_profile if framework == "jax" else gpu_inception.torch_profile
    if framework.startswith("jax"):
        remat = args.remat or ("dots_saveable" if batch >= 128 else "none")
        scan = framework == "jax"
        row = gpu_train.jax_train(
            size["model"], batch, size["steps"], remat=remat, scan=scan, profile=profile
        )
        blocks = "scanned" if scan else "unrolled"
        name = f"jax (library step, bf16 policy, {blocks} blocks, remat {remat})"
    else:
        compiled = framework == "torch_compiled"
        row = gpu_train.torch_train(
            size["model"], batch, size["steps"], compiled=compiled, profile=profile
        )
        name = f"torch (official DiT, {'torch.compile' if compiled else 'eager'}, autocast bf16)"
    value = batch / row["seconds"]
    flops = 3 * 2 * FORWARD_GMACS_XL2_256 * 1e9 if size["model"] is XL2 else float("nan")
    return dict(case=f"DiT train, batch {batch}", framework=name, metric="throughput",
                value=value, unit="img/s", mfu=value * flops / (PEAK_BF16_TFLOPS * 1e12), **row)  # fmt: skip


def _sampling_case(size: dict, framework: str, interval: bool) -> dict:
    samples, model = size["samples"], size["model"]
    if framework == "jax":
        row = gpu_train.jax_sampling(model, samples, interval=interval)
        name = "jax (nnx-samplers Euler + CFG, one jit, bf16 policy)"
    else:
        compiled = framework == "torch_compiled"
        row = gpu_train.torch_sampling(model, samples, interval=interval, compiled=compiled)
        name = f"torch (official DiT, {'torch.compile' if compiled else 'eager'}, autocast bf16)"
    window = f", interval {list(gpu_train.INTERVAL)}" if interval else ""
    case = f"Euler-{gpu_train.NUM_STEPS} CFG {gpu_train.SCALE}{window}, {samples} samples"
    return dict(case=case, framework=name, metric="throughput", value=samples / row["seconds"],
                unit="img/s", **row)  # fmt: skip


def _inception_case(size: dict, args) -> list[dict]:
    images = gpu_inception.image_sets(size["images"], size["image_size"])
    rows = gpu_inception.jax_inception_rows(images, size["image_batch"], args.inception_weights)
    rows += gpu_inception.torch_inception_rows(images, size["image_batch"])
    case = f"InceptionV3 pool3, {len(images)} images {size['image_size']}px -> 299"
    return [dict(case=case, metric="throughput", unit="img/s", **row) for row in rows]


def cases(size: dict, args) -> list[tuple[str, object]]:
    out = []
    for batch in size["batches"]:
        for framework in ("jax", "jax_unrolled", "torch_compiled", "torch_eager"):
            out.append((f"train_{batch}_{framework}", lambda b=batch, f=framework: [_train_case(size, b, f, args)]))  # fmt: skip
    for interval in (False, True):
        for framework in ("jax", "torch_compiled", "torch_eager"):
            name = f"sampling{'_interval' if interval else ''}_{framework}"
            out.append((name, lambda f=framework, i=interval: [_sampling_case(size, f, i)]))
    out.append(("inception", lambda: _inception_case(size, args)))
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="runs/bench/gpu.json")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a CPU smoke run)")
    parser.add_argument("--only", nargs="*", help="case names to run (default: all)")
    parser.add_argument("--remat", choices=("none", "dots_saveable", "full"), default=None)
    parser.add_argument("--profile", action="store_true", help="top kernels of the first batch")
    parser.add_argument("--inception-weights", default=None, help="pytorch-fid .pth file")
    args = parser.parse_args(argv)
    size = QUICK if args.quick else FULL
    meta = dict(date=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                versions=versions(), quick=args.quick, sizes={k: v for k, v in size.items()})  # fmt: skip
    results: list[dict] = []
    report: dict = {}
    for name, case in cases(size, args):
        if args.only and name not in args.only:
            continue
        tic = time.perf_counter()
        try:
            rows = case()
        except Exception as error:  # keep measuring the other cases; the error is reported
            traceback.print_exc()
            rows = [dict(case=name, framework="-", metric="error", value=float("nan"), unit="",
                         error=f"{type(error).__name__}: {error}"[:2000])]  # fmt: skip
        for row in rows:
            row["case_wall_s"] = time.perf_counter() - tic
            print({k: v for k, v in row.items() if k != "profile"}, flush=True)
        results.extend(rows)
        gc.collect()
        report = harness.write_report("gpu", results, args.out, **meta)
    return report


if __name__ == "__main__":
    main()
