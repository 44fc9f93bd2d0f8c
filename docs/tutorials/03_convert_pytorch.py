# %% [markdown]
# # Tutorial 3: convert a PyTorch checkpoint and check parity
#
# `nnx_weightconv` writes a PyTorch state dict into an NNX module by following a *spec*: a
# list of `Rule`s, each mapping one checkpoint key to one NNX parameter with a layout
# transform (Linear weights are transposed, conv kernels go from OIHW to HWIO, fused `qkv`
# weights are split into three projections). Every missing, unexpected or mis-shaped key is
# reported by name, and a spec runs backwards to export NNX weights in the PyTorch layout.
#
# No pretrained weights are needed here: we build a tiny PyTorch DiT with the architecture
# and key names of facebookresearch/DiT (the module in `tools/bench/torch_dit.py`, whose
# state dict has the keys of the released `DiT-XL-2-256x256.pt`), save its random weights to
# a `.pt` file, convert the file, and compare the two networks' outputs. Needs torch
# (`pip install 'nnx-weightconv[torch]'`, or the repository's `test` group).

# %%
import pathlib
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx

import nnx_nets
import nnx_weightconv

torch.manual_seed(0)
torch.set_num_threads(1)
# The PyTorch DiT of the official architecture lives with the benchmarks.
REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools" / "bench"))
from torch_dit import DiT as TorchDiT  # noqa: E402

CONFIG = dict(input_size=8, patch_size=2, in_channels=4, hidden_size=64, depth=2, num_heads=4)
NUM_CLASSES = 10

# %% [markdown]
# ## A PyTorch checkpoint with random weights
#
# PyTorch's default initialisation is random and non-zero everywhere (the official DiT
# zero-initialises its adaLN and output layers, which would make the comparison vacuous).

# %%
torch_model = TorchDiT(**CONFIG, num_classes=NUM_CLASSES, learn_sigma=True).eval()
workdir = pathlib.Path(tempfile.mkdtemp())
checkpoint = workdir / "tiny-dit.pt"
torch.save(torch_model.state_dict(), checkpoint)
print(f"saved {len(torch_model.state_dict())} tensors to {checkpoint.name}")

# %% [markdown]
# ## Convert
#
# `read_state_dict` reads `.pt` / `.pth` / `.bin` (with torch) or `.safetensors` (without)
# into a flat `{key: numpy array}` dict. The NNX model is built with `nnx.eval_shape`, so no
# memory is spent on an initialisation that `load_into` overwrites. DiT checkpoints were
# trained on integer steps 0..999, hence `time_scale=1000` (the NNX network takes `t` in
# [0, 1], with `t = 0` data and `t = 1` noise). `pos_embed` is a fixed sin-cos table that the
# NNX network recomputes, so it is listed in `ignore`.

# %%
state_dict = nnx_weightconv.read_state_dict(checkpoint)
model = nnx.eval_shape(
    lambda: nnx_nets.DiT(
        **CONFIG, num_classes=NUM_CLASSES, learn_sigma=True, time_scale=1000.0, rngs=nnx.Rngs(0)
    )
)
rules = nnx_weightconv.dit_rules(model)
nnx_weightconv.load_into(model, state_dict, rules, ignore=nnx_weightconv.dit_buffer_keys(model))
split = [rule for rule in rules if rule.source == "blocks.0.attn.qkv.weight"]
print(f"loaded {len(rules)} rules; the fused qkv weight is split three ways:")
for rule in split:
    print(f"  {rule.source} part {rule.part} -> {rule.target}")

# %% [markdown]
# ## Parity
#
# Same inputs on both sides: PyTorch takes NCHW images and integer-scale steps; the NNX
# network takes NHWC images and `t` in [0, 1]. Both run in float32 (the JAX side at
# `HIGHEST` matmul precision), so they differ only in the order of float32 sums.

# %%
rng = np.random.default_rng(0)
x = rng.standard_normal((4, 8, 8, 4)).astype(np.float32)
t = rng.uniform(0.0, 1.0, 4).astype(np.float32)
y = np.array([0, 3, 9, NUM_CLASSES], np.int32)  # the last one is the null label

with torch.no_grad():
    reference = (
        torch_model(
            torch.from_numpy(x).permute(0, 3, 1, 2),
            torch.from_numpy(t * np.float32(1000.0)),
            torch.from_numpy(y).long(),
        )
        .permute(0, 2, 3, 1)
        .numpy()
    )
with jax.default_matmul_precision("highest"):
    ours = np.asarray(
        nnx.jit(lambda m, x, t, y: m(x, t, y))(
            model, jnp.asarray(x), jnp.asarray(t), jnp.asarray(y)
        )
    )

max_abs_error = float(np.abs(ours - reference).max())
print(f"output shape {ours.shape}, max |output| {np.abs(reference).max():.3f}")
print(f"max abs error NNX vs PyTorch: {max_abs_error:.2e} (tolerance 1e-4)")
assert max_abs_error < 1e-4

# %% [markdown]
# ## Bad checkpoints are named, not guessed
#
# A checkpoint of another size fails with a `ConversionError` that lists every offending
# key, and nothing is written into the model.

# %%
deeper = nnx.eval_shape(
    lambda: nnx_nets.DiT(
        **{**CONFIG, "depth": 3},
        num_classes=NUM_CLASSES,
        learn_sigma=True,
        time_scale=1000.0,
        rngs=nnx.Rngs(0),
    )
)
try:
    nnx_weightconv.load_into(
        deeper,
        state_dict,
        nnx_weightconv.dit_rules(deeper),
        ignore=nnx_weightconv.dit_buffer_keys(deeper),
    )
except nnx_weightconv.ConversionError as error:
    print(f"ConversionError: {str(error)[:160]}...")
else:
    raise AssertionError("a 3-block model must refuse a 2-block checkpoint")

# %% [markdown]
# ## Export back to PyTorch
#
# `export_state_dict` runs the spec backwards (fused weights are concatenated again); the
# exported tensors equal the original file bit for bit.

# %%
exported = nnx_weightconv.export_state_dict(model, rules)
mismatched = [key for key, value in exported.items() if not np.array_equal(value, state_dict[key])]
print(f"exported {len(exported)} tensors, {len(mismatched)} differ from the checkpoint")
