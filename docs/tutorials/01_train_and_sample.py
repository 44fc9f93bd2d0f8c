# %% [markdown]
# # Tutorial 1: train a class-conditional model on the digits and sample it with three solvers
#
# This script trains a small class-conditional DiT with SiT's linear flow-matching objective
# on the 8x8 digits that ship inside scikit-learn (no download), then samples it with three
# solvers of `nnx_samplers` and scores the samples with an independent classifier.
#
# It is the embedded default of `apps/train` taken apart into its library pieces:
# data (`nnx_train.load_digits_split`), network (`nnx_nets.DiT`), objective
# (`nnx_objectives.InterpolantObjective` wrapped in `ClassDropout` for classifier-free
# guidance), an NNX optimiser, and the sampler driver (`nnx_samplers.sample`).
#
# **Shortened for CI**: a DiT of width 64 and depth 2 with 4x4 patches (4 tokens per
# image) trained for 300 steps of 64 images. The app's default,
# `uv run apps/train`, trains a larger model (2x2 patches) for longer, and writes
# checkpoints, pictures and the metrics of an independent CNN classifier
# (`nnx_train.DigitsEvaluator`). The samples here are rough digits; the point is the API.
# Time convention: `t = 0` is data, `t = 1` is noise, and the network predicts
# the velocity `v = eps - x0` of the linear path `x_t = (1 - t) x0 + t eps`.
#
# Run it with `python docs/tutorials/01_train_and_sample.py` (CPU is enough).

# %%
import os

# The model is tiny, so compiling costs more than running: XLA:CPU compiles about twice as
# fast at optimisation level 0 (set before JAX is imported). Drop the flag on real hardware.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
).strip()

import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

import nnx_nets  # noqa: E402
import nnx_objectives  # noqa: E402
import nnx_samplers  # noqa: E402
import nnx_train  # noqa: E402

NUM_CLASSES = 10
TRAIN_STEPS = 300
BATCH_SIZE = 64

# %% [markdown]
# ## Data
#
# `load_digits_split` returns the 1797 digits scaled to [-1, 1], NHWC `(N, 8, 8, 1)`, split
# once (stratified, fixed seed) into 1527 training and 270 held-out images.

# %%
split = nnx_train.load_digits_split(holdout_fraction=0.15, split_seed=0)
train_images = jnp.asarray(split.train_images)
train_labels = jnp.asarray(split.train_labels)
print(f"train images {train_images.shape}, held out {split.heldout_images.shape}")

# %% [markdown]
# ## Network, objective and optimiser
#
# The null label of classifier-free guidance is `NUM_CLASSES`, passed explicitly to the
# objective (which drops 10% of the labels to it) and later to the guidance wrapper.

# %%
model = nnx_nets.DiT(
    input_size=8,
    patch_size=4,
    in_channels=1,
    hidden_size=64,
    depth=2,
    num_heads=4,
    num_classes=NUM_CLASSES,
    rngs=nnx.Rngs(0),
)
objective = nnx_objectives.ClassDropout(
    nnx_objectives.InterpolantObjective(),  # linear path, velocity, uniform t
    probability=0.1,
    null_label=NUM_CLASSES,
)
schedule = optax.warmup_cosine_decay_schedule(0.0, 3e-3, 40, TRAIN_STEPS, 3e-5)
optimizer = nnx.Optimizer(
    model, optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(schedule)), wrt=nnx.Param
)
num_params = sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
print(f"DiT parameters: {num_params}")


@nnx.jit
def train_step(model, optimizer, x0, y, key):
    def loss_fn(model):
        loss, _ = objective(model, x0, y, key)
        return jnp.mean(loss)

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss


# %% [markdown]
# ## Training
#
# Batches are drawn with replacement; every random draw comes from a key folded with the
# step number, so the run is reproducible.

# %%
key = jax.random.key(0)
start = time.perf_counter()
losses = []
for step in range(TRAIN_STEPS):
    step_key = jax.random.fold_in(key, step)
    index = jax.random.randint(jax.random.fold_in(step_key, 1), (BATCH_SIZE,), 0, len(train_images))
    losses.append(
        float(train_step(model, optimizer, train_images[index], train_labels[index], step_key))
    )
    if (step + 1) % 100 == 0:
        print(f"step {step + 1}: loss {np.mean(losses[-100:]):.4f}")
print(
    f"first-100 mean loss {np.mean(losses[:100]):.4f}, "
    f"last-100 mean loss {np.mean(losses[-100:]):.4f}"
)
print(f"training took {time.perf_counter() - start:.1f} s")

# %% [markdown]
# ## Sampling with three solvers
#
# `nnx_samplers.sample(field, x_start, solver, grid)` integrates a velocity field from
# `t = 1` (noise) to `t = 0` (data). `ClassifierFreeGuidance` turns the network and the
# requested labels into such a field (one forward pass on a doubled batch per evaluation).
# We compare a first-order ODE solver (Euler), a second-order one (Heun, `2N - 1`
# evaluations) and a stochastic one (Euler-Maruyama with SiT's `sigma(t)` diffusion), and
# report the number of network evaluations (NFE) of each.

# %%
labels = jnp.repeat(jnp.arange(NUM_CLASSES, dtype=jnp.int32), 10)  # 100 images, class-balanced
noise = jax.random.normal(jax.random.key(1), (labels.shape[0], 8, 8, 1))
solvers = {
    "Euler, 16 steps": (nnx_samplers.Euler(), nnx_samplers.UniformGrid(16)),
    "Heun, 8 steps": (nnx_samplers.Heun(), nnx_samplers.UniformGrid(8)),
    "Euler-Maruyama, 32 steps": (
        nnx_samplers.EulerMaruyama(diffusion=nnx_samplers.SigmaDiffusion()),
        nnx_samplers.UniformGrid(32),
    ),
}


def generate(model, solver, grid):
    @nnx.jit
    def run(model, noise, labels, key):
        field = nnx_samplers.ClassifierFreeGuidance(
            model, labels, null_label=NUM_CLASSES, scale=2.0
        )
        solution = nnx_samplers.sample(field, noise, solver, grid, key=key)
        return solution.sample, solution.nfe

    return run(model, noise, labels, jax.random.key(2))


samples = {}
for name, (solver, grid) in solvers.items():
    images, nfe = generate(model, solver, grid)
    samples[name] = np.asarray(images)
    print(f"{name}: NFE {int(nfe)}, pixel range [{images.min():.2f}, {images.max():.2f}]")

# %% [markdown]
# ## Scoring
#
# A cheap, independent check: a nearest-class-mean classifier on raw pixels (each image is
# assigned the class whose mean training image is closest). It labels 90% of the held-out
# real digits correctly; chance is 10%. We report the share of generated images that it
# assigns to the class they were generated for, and how far the samples' pixel statistics
# are from the real ones.

# %%
train_x = np.asarray(split.train_images).reshape(len(split.train_images), -1)
class_means = np.stack([train_x[split.train_labels == c].mean(0) for c in range(NUM_CLASSES)])


def nearest_mean_accuracy(images, labels):
    flat = np.asarray(images).reshape(len(images), -1)
    distances = ((flat[:, None, :] - class_means[None]) ** 2).sum(-1)
    return float((distances.argmin(1) == np.asarray(labels)).mean())


heldout_accuracy = nearest_mean_accuracy(split.heldout_images, split.heldout_labels)
print(f"nearest-mean classifier on held-out real digits: accuracy {heldout_accuracy:.3f}")
for name, images in samples.items():
    accuracy = nearest_mean_accuracy(images, labels)
    print(
        f"{name}: class accuracy {accuracy:.3f}, mean {images.mean():+.3f} "
        f"(real {train_x.mean():+.3f}), std {images.std():.3f} (real {train_x.std():.3f})"
    )
