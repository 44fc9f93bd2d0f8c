"""Every tutorial in docs/tutorials runs as a user would run it, and prints sane results.

Each script runs in a fresh interpreter on the CPU (one BLAS / OpenMP thread, no inherited
XLA_FLAGS: the 8 fake devices of the root conftest are not what a user has; tutorial 2 asks
for them itself). A test fails if the script fails, or if a printed figure leaves the range
stated next to it; the ranges are wide enough for float32 reordering across machines and far
from what a broken pipeline prints.
"""

from __future__ import annotations

import math
import os
import pathlib
import re
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
TUTORIALS = REPO / "docs" / "tutorials"
NUMBER = r"([-+]?[0-9.]+(?:e[-+]?[0-9]+)?|nan|inf)"


def run_tutorial(name: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(
        JAX_PLATFORMS="cpu",
        OMP_NUM_THREADS="1",
        OPENBLAS_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        WANDB_MODE="disabled",
    )
    result = subprocess.run(
        [sys.executable, str(TUTORIALS / name)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result.stdout


def value(pattern: str, output: str) -> float:
    match = re.search(pattern.replace("{n}", NUMBER), output)
    assert match, (pattern, output)
    return float(match.group(1))


@pytest.mark.slow
def test_01_train_and_sample():
    out = run_tutorial("01_train_and_sample.py")
    first = value(r"first-100 mean loss {n}", out)
    last = value(r"last-100 mean loss {n}", out)
    # Flow-matching loss of a velocity net starts near E|eps - x0|^2 ~ 1.5-2 and must fall
    # (measured 1.11 -> 0.58).
    assert last < 0.8 * first
    # NFE: Euler N, Heun 2N - 1 (no corrector on the last step), Euler-Maruyama N.
    assert value(r"Euler, 16 steps: NFE {n}", out) == 16
    assert value(r"Heun, 8 steps: NFE {n}", out) == 15
    assert value(r"Euler-Maruyama, 32 steps: NFE {n}", out) == 32
    # The pixel-space nearest-class-mean classifier (0.90 on real held-out digits) assigns
    # the samples to their requested class far above chance (0.1): measured 0.79, 0.79, 0.86.
    assert value(r"held-out real digits: accuracy {n}", out) >= 0.85
    for solver in ("Euler, 16 steps", "Heun, 8 steps", "Euler-Maruyama, 32 steps"):
        accuracy = value(re.escape(solver) + r": class accuracy {n}", out)
        assert 0.5 < accuracy <= 1.0, (solver, accuracy)


@pytest.mark.slow
def test_02_sharding():
    out = run_tutorial("02_sharding.py")
    assert "8 devices (cpu)" in out
    for name in ("fsdp", "tensor"):
        measured = value(rf"{name}: .*measured memory per device {{n}} MiB", out)
        planned = value(rf"{name}: .*\(planned {{n}}\)", out)
        assert measured == planned, name  # the abstract plan is what the devices hold
        first = value(rf"{name}: losses {{n}}", out)
        second = value(rf"{name}: losses [0-9.]+ -> {{n}}", out)
        assert second < first, name  # same batch and noise: one AdamW step lowers the loss
    # 8-way FSDP keeps ~1/8 of every array per device (measured 0.213: the 64-wide norms
    # and biases do not split 8 ways); 4-way tensor parallelism splits the mlp/heads
    # dimensions only (measured 0.263).
    assert value(r"FSDP memory per device / replicated: {n}", out) < 0.3
    assert value(r"tensor memory per device / replicated: {n}", out) < 0.35
    assert "P('fsdp', None)" in out and "P(None, 'tensor')" in out
    # Sharding reorders float32 sums only (measured difference 0).
    assert value(r"second loss, FSDP vs tensor: {n}", out) < 1e-5


def test_03_convert_pytorch():
    out = run_tutorial("03_convert_pytorch.py")
    error = value(r"max abs error NNX vs PyTorch: {n}", out)
    # float32 on both sides, summation order only (measured 8.3e-7 on outputs of size ~2).
    assert error < 1e-4
    assert value(r"max \|output\| {n}", out) > 0.5  # the comparison is not between zeros
    assert "blocks.0.attn.qkv.weight part (2, 3) -> blocks.0.attn.value.kernel" in out
    assert "ConversionError" in out and "blocks.2.attn.qkv.weight" in out
    assert re.search(r"exported \d+ tensors, 0 differ from the checkpoint", out)


def test_04_fid_metrics():
    out = run_tutorial("04_fid_metrics.py")
    blocks = out.split("--- samples_")[1:]
    assert [b.split(".npz")[0] for b in blocks] == ["good", "noise"]
    metrics = {}
    for block in blocks:
        name = block.split(".npz")[0]
        metrics[name] = {
            key: value(rf"{label}: {{n}}", block)
            for key, label in (
                ("is", "Inception Score"),
                ("fid", "FID"),
                ("sfid", "sFID"),
                ("precision", "Precision"),
                ("recall", "Recall"),
            )
        }
    for name, m in metrics.items():
        assert all(math.isfinite(v) for v in m.values()), (name, m)
        assert m["fid"] >= 0 and m["sfid"] >= 0, name
        assert 1.0 <= m["is"] <= 1008, name  # IS lies in [1, number of classes]
        assert 0.0 <= m["precision"] <= 1.0 and 0.0 <= m["recall"] <= 1.0, name
    # Random Inception weights, 8 images: not real FIDs, but samples of the reference
    # distribution are closer than noise (measured FID 1159 vs 3197, recall 1.0 vs 0.0).
    assert metrics["good"]["fid"] < metrics["noise"]["fid"]
    assert metrics["good"]["recall"] > metrics["noise"]["recall"]
    direct = value(r"frechet_distance on the noise batch: {n}", out)
    assert math.isclose(direct, metrics["noise"]["fid"], rel_tol=1e-3)


@pytest.mark.parametrize("page", sorted(p.name for p in TUTORIALS.glob("[0-9][0-9]_*.md")))
def test_page_names_only_what_its_script_uses(page):
    # Each API link of a page's introduction (outside parentheses) must be used by the
    # script's code, comments excluded: tutorial 1's page once said it scores with
    # DigitsEvaluator, which its script never calls.
    intro = (TUTORIALS / page).read_text().split("\n\n")[1]
    script = (TUTORIALS / page.replace(".md", ".py")).read_text()
    code = "\n".join(line.split("#")[0] for line in script.splitlines())
    names = re.findall(r"\[`([\w.]+)`\]\[[\w.]+\]", re.sub(r"\([^)]*\)", "", intro))
    assert names, page
    for name in (n.split(".")[-1] for n in names):
        assert re.search(rf"\b{name}\b", code), f"{page} names {name}, which its script never uses"
