"""One GPU run (prepared for a lent H200): DiT-XL/2 bf16 training, Euler-50 CFG sampling and
Inception features, ours (JAX) against PyTorch in the same process, in the JSON schema of the
CPU benchmarks.

    XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONPATH=tools/bench:packages/nnx-nets/src:... \\
        python tools/bench/gpu.py --out $OUT/gpu.json        # a few minutes on one H200

Both frameworks keep float32 parameters and compute in bfloat16 (ours: ``dtype=bfloat16``;
PyTorch: ``torch.autocast(bfloat16)``, eager, ``scaled_dot_product_attention``), with the
same flow-matching loss and AdamW step as the CPU benchmark. The report is rewritten after
every case, so a run cut short still returns what it measured.

Model FLOP utilisation: DiT-XL/2 at 256 px costs 118.64 G multiply-adds per forward pass
(DiT paper, Table 4), i.e. 2 x 118.64 GFLOP; a training step costs 3 forward passes
(forward + backward). MFU = images/s x 3 x 2 x 118.64 GFLOP / 989 TFLOP/s (H200 dense bf16
peak from the data sheet; a plain 8192^3 bf16 matmul reaches about 790 TFLOP/s there).
"""

from __future__ import annotations

import argparse
import gc
import time
import traceback

import dit_steps
import harness
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from nnx_nets import DiT

FORWARD_GMACS_XL2_256 = 118.64
TRAIN_GFLOP_PER_IMAGE = 3 * 2 * FORWARD_GMACS_XL2_256
PEAK_BF16_TFLOPS = 989.0
XL2 = dict(input_size=32, patch_size=2, in_channels=4, hidden_size=1152, depth=28, num_heads=16,
           num_classes=1000)  # fmt: skip
NULL_LABEL = 1000
SCALE = 1.5
NUM_STEPS = 50


def _train_row(framework: str, batch: int, seconds: float, **extra) -> dict:
    images_per_s = batch / seconds
    return dict(case=f"DiT-XL/2 256px (32x32x4 latents) bf16 train, batch {batch}",
                framework=framework, metric="throughput", value=images_per_s, unit="img/s",
                step_time_s=seconds, mfu=images_per_s * TRAIN_GFLOP_PER_IMAGE
                / (PEAK_BF16_TFLOPS * 1e3), **extra)  # fmt: skip


def jax_train(batch: int, steps: int, *, scan_blocks: bool) -> dict:
    model = DiT(**XL2, dtype=jnp.bfloat16, scan_blocks=scan_blocks, rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.adamw(1e-4, weight_decay=0.0)
    opt_state = tx.init(params)
    x0, y = (jnp.asarray(a) for a in dit_steps.batch_arrays(batch, 32, 4, 1000))

    def loss(p, key):
        return dit_steps.flow_loss(nnx.merge(graphdef, p, rest), x0, y, key)

    def step(params, opt_state, key):
        value, grads = jax.value_and_grad(loss)(params, key)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    step = jax.jit(step, donate_argnums=(0, 1))
    tic = time.perf_counter()
    params, opt_state, value = step(params, opt_state, jax.random.key(0))
    jax.block_until_ready(value)
    compile_s = time.perf_counter() - tic
    params, opt_state, value = step(params, opt_state, jax.random.key(1))
    jax.block_until_ready(value)
    start = time.perf_counter()
    for i in range(steps):
        params, opt_state, value = step(params, opt_state, jax.random.key(i + 2))
    jax.block_until_ready(value)
    seconds = (time.perf_counter() - start) / steps
    name = "jax (nnx-nets DiT, scanned blocks)" if scan_blocks else "jax (nnx-nets DiT)"
    return _train_row(name, batch, seconds, first_call_s=compile_s, loss=float(value))


def torch_train(batch: int, steps: int) -> dict:
    import torch
    from torch_dit import DiT as TorchDiT

    torch.manual_seed(0)
    model = TorchDiT(**XL2).cuda()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0, fused=True)
    x0, y = dit_steps.batch_arrays(batch, 32, 4, 1000)
    x0 = torch.from_numpy(x0).permute(0, 3, 1, 2).contiguous().cuda()
    y = torch.from_numpy(y).long().cuda()

    def step():
        t = torch.rand(batch, device="cuda")
        eps = torch.randn_like(x0)
        x_t = (1 - t)[:, None, None, None] * x0 + t[:, None, None, None] * eps
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(x_t, t, y)
        loss = ((out.float() - (eps - x0)) ** 2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        loss = step()
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    row = _train_row("torch (official DiT, eager, autocast bf16)", batch, seconds,
                     loss=float(loss.detach()), peak_memory_gib=torch.cuda.max_memory_allocated() / 2**30)  # fmt: skip
    return row


def _sampling_row(framework: str, batch: int, seconds: float, **extra) -> dict:
    return dict(case=f"DiT-XL/2 256px bf16 Euler-{NUM_STEPS} CFG {SCALE}, {batch} samples",
                framework=framework, metric="throughput", value=batch / seconds, unit="img/s",
                seconds=seconds, **extra)  # fmt: skip


def jax_sampling(batch: int) -> dict:
    from nnx_samplers import ClassifierFreeGuidance, Euler, UniformGrid, sample

    model = dit_steps._perturbed(DiT(**XL2, dtype=jnp.bfloat16, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(model)
    labels = jnp.arange(batch, dtype=jnp.int32) % 1000

    @jax.jit
    def generate(state, key):
        field = ClassifierFreeGuidance(
            nnx.merge(graphdef, state), labels, null_label=NULL_LABEL, scale=SCALE
        )
        noise = jax.random.normal(key, (batch, 32, 32, 4))
        return sample(field, noise, Euler(), UniformGrid(NUM_STEPS)).sample

    tic = time.perf_counter()
    jax.block_until_ready(generate(state, jax.random.key(0)))
    compile_s = time.perf_counter() - tic
    start = time.perf_counter()
    out = jax.block_until_ready(generate(state, jax.random.key(1)))
    seconds = time.perf_counter() - start
    finite = bool(jnp.all(jnp.isfinite(out)))
    return _sampling_row("jax (nnx-samplers Euler + CFG, one jit)", batch, seconds,
                         first_call_s=compile_s, finite=finite)  # fmt: skip


def torch_sampling(batch: int) -> dict:
    import torch
    from torch_dit import DiT as TorchDiT

    torch.manual_seed(0)
    model = TorchDiT(**XL2).cuda().eval()
    labels = torch.arange(batch, device="cuda") % 1000
    both = torch.cat([labels, torch.full_like(labels, NULL_LABEL)])
    times = np.linspace(1.0, 0.0, NUM_STEPS + 1)

    @torch.no_grad()
    def run():
        x = torch.randn(batch, 4, 32, 32, device="cuda")
        for t, t_next in zip(times[:-1], times[1:]):
            t_batch = torch.full((2 * batch,), float(t), device="cuda")
            with torch.autocast("cuda", dtype=torch.bfloat16):
                out = model(torch.cat([x, x]), t_batch, both).float()
            cond, uncond = out.chunk(2)
            x = x + (t_next - t) * (uncond + SCALE * (cond - uncond))
        return x

    run()
    torch.cuda.synchronize()
    start = time.perf_counter()
    run()
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return _sampling_row("torch (official DiT, eager, autocast bf16)", batch, seconds)


def inception_rows(batch: int, repeats: int) -> list[dict]:
    import bench_inception
    import torch

    case = f"InceptionV3 pool3, 256px uint8 -> 299, batch {batch}"
    rows = []
    fns = {"jax (nnx-fid, HIGHEST precision)": bench_inception.jax_features(batch)}
    for tf32 in (True, False):
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        name = f"torch (pytorch-fid, {'TF32' if tf32 else 'fp32'} convolutions)"
        run = bench_inception.torch_features(batch, device="cuda")
        fns[name] = lambda run=run, tf32=tf32: _with_tf32(run, tf32)
    for fn in fns.values():
        fn()
    for name, fn in fns.items():
        fn()
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        seconds = (time.perf_counter() - start) / repeats
        rows.append(dict(case=case, framework=name, metric="throughput", value=batch / seconds,
                         unit="img/s"))  # fmt: skip
    return rows


def _with_tf32(run, tf32: bool):
    import torch

    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    return run()


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="runs/bench/gpu.json")
    parser.add_argument("--batch", type=int, default=32, help="training batch (DiT: 32 per GPU)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--sampling-batch", type=int, default=256)
    parser.add_argument("--inception-batch", type=int, default=500)
    parser.add_argument("--only", nargs="*", help="names of the cases to run (default: all)")
    args = parser.parse_args(argv)
    cases = [
        ("jax_train_scan", lambda: [jax_train(args.batch, args.steps, scan_blocks=True)]),
        ("jax_train", lambda: [jax_train(args.batch, args.steps, scan_blocks=False)]),
        ("torch_train", lambda: [torch_train(args.batch, args.steps)]),
        ("jax_sampling", lambda: [jax_sampling(args.sampling_batch)]),
        ("torch_sampling", lambda: [torch_sampling(args.sampling_batch)]),
        ("inception", lambda: inception_rows(args.inception_batch, 5)),
    ]
    results: list[dict] = []
    report: dict = {}
    for name, case in cases:
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
            print(row, flush=True)
        results.extend(rows)
        gc.collect()
        report = harness.write_report("gpu", results, args.out)
    return report


if __name__ == "__main__":
    main()
