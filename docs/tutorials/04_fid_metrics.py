# %% [markdown]
# # Tutorial 4: FID, IS, precision and recall from a `.npz` of samples
#
# The standard way to report an ImageNet generator (ADM's evaluator, used by DiT, SiT, REPA,
# LightningDiT, MeanFlow) takes two files: a *sample batch* `.npz` whose `arr_0` holds uint8
# `(N, H, W, 3)` images, and a *reference batch* `.npz` with Inception statistics (`mu`,
# `sigma` of pool3 features for FID; `mu_s`, `sigma_s` of spatial features for sFID) and
# reference images `arr_0` (for precision and recall). This script writes both files and
# computes the metrics with `nnx_fid`, as `tools/evaluate_samples.py` does.
#
# **The figures printed here are not real FIDs.** The Inception network below has random
# weights (no download in CI), and the batches hold 8 tiny synthetic images instead of
# 50,000 samples (each image is resized to 299 x 299, about 6 GFLOP through Inception).
# With the published weights, replace `random_inception()` by
# `nnx_fid.load_inception("pt_inception-2015-12-05-6726825d.pth")` (the file is published at
# `nnx_fid.INCEPTION_URL`); everything else is unchanged. What the script does show is the
# workflow, the file formats and the ordering: samples from the reference distribution score
# a lower FID and a higher recall than samples that are pure noise.

# %%
import pathlib
import tempfile

import numpy as np
from flax import nnx

import nnx_fid

NUM_IMAGES = 8
SIDE = 32

# %% [markdown]
# ## An Inception network with random weights
#
# `nnx_fid.InceptionV3` is the FID variant of InceptionV3 (the TF graph of 2015-12-05). It is
# built with zero kernels, to be filled by `load_inception`; here we fill it with seeded random
# values instead: He-scaled convolutions and non-trivial batch-norm statistics.


# %%
def random_inception(seed: int = 0) -> nnx_fid.InceptionV3:
    model = nnx_fid.InceptionV3(rngs=nnx.Rngs(0))
    rng = np.random.default_rng(seed)
    for path, variable in nnx.state(model).flat_state():
        shape = variable.get_value().shape
        name = path[-1]
        if name == "kernel" and len(shape) == 4:  # conv (kh, kw, in, out)
            value = rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[:3]))
        elif name == "kernel":  # the logits layer (2048, 1008)
            value = rng.standard_normal(shape) / np.sqrt(shape[0])
        elif name in ("scale", "var"):
            value = rng.uniform(0.5, 1.5, shape)
        else:  # batch-norm bias and mean, logits bias
            value = 0.1 * rng.standard_normal(shape)
        variable.set_value(np.asarray(value, np.float32))
    return model


inception = random_inception()
extractor = nnx_fid.InceptionFeatures(inception, front_end="tf1")  # ADM's resize to 299 px

# %% [markdown]
# ## A reference batch and two sample batches
#
# The "data" are smooth colour fields (random 4x4 images upsampled to 32x32). One sample batch
# comes from the same distribution (another seed), the other is uniform noise.


# %%
def smooth_images(seed: int) -> np.ndarray:
    coarse = np.random.default_rng(seed).uniform(0, 255, (NUM_IMAGES, 4, 4, 3))
    return np.repeat(np.repeat(coarse, SIDE // 4, axis=1), SIDE // 4, axis=2).astype(np.uint8)


reference_images = smooth_images(seed=0)
good_samples = smooth_images(seed=1)
noise_samples = np.random.default_rng(2).integers(
    0, 256, (NUM_IMAGES, SIDE, SIDE, 3), dtype=np.uint8
)

workdir = pathlib.Path(tempfile.mkdtemp())
np.savez(workdir / "samples_good.npz", arr_0=good_samples)
np.savez(workdir / "samples_noise.npz", arr_0=noise_samples)

# %% [markdown]
# The reference file in ADM's format: statistics of pool3 (2048-d) and spatial (2023-d)
# features, in float64, plus the images. `tools/fid_reference_stats.py` writes it for a
# folder of images.

# %%
reference_features = nnx_fid.extract_features(
    [extractor], reference_images, batch_size=NUM_IMAGES, progress=False
)
reference = nnx_fid.ReferenceStats(
    fid=nnx_fid.GaussianStats.from_features(reference_features["pool"]),
    sfid=nnx_fid.GaussianStats.from_features(reference_features["spatial"]),
    images=reference_images,
)
nnx_fid.save_adm_npz(workdir / "reference_batch.npz", reference)
print({name: value.shape for name, value in reference_features.items()})

# %% [markdown]
# ## Evaluate each sample file
#
# `load_reference` reads ADM, pytorch-fid and EDM2 statistics files alike. `compute_metrics`
# gives FID, sFID, Inception Score (ADM's split size of 5000, so one split here), and
# precision / recall (k = 3 nearest neighbours, on pool3 features of the reference images).

# %%
reference = nnx_fid.load_reference(workdir / "reference_batch.npz")
results = {}
for name in ("good", "noise"):
    with np.load(workdir / f"samples_{name}.npz") as data:
        samples = data["arr_0"]
    features = nnx_fid.extract_features([extractor], samples, batch_size=NUM_IMAGES, progress=False)
    results[name] = nnx_fid.compute_metrics(
        features, reference, front_end="tf1", reference_features=reference_features
    )
    print(f"--- samples_{name}.npz ({len(samples)} images, random Inception weights)")
    print(nnx_fid.format_adm_report(results[name]))

# %% [markdown]
# The closed form behind FID is the Frechet distance between two Gaussians; it is exposed on
# its own (the statistics are float64, the matrix square root is taken by eigendecomposition).

# %%
ours = nnx_fid.GaussianStats.from_features(features["pool"])
direct = nnx_fid.frechet_distance(ours.mu, ours.sigma, reference.fid.mu, reference.fid.sigma)
print(
    f"frechet_distance on the noise batch: {direct:.4f} "
    f"(compute_metrics: {results['noise']['fid']:.4f})"
)
print(f"FID good < FID noise: {results['good']['fid'] < results['noise']['fid']}")
print(f"recall good > recall noise: {results['good']['recall'] > results['noise']['recall']}")
