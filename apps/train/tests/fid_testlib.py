"""Files that the FID tests of the trainer write: a random-weight FID Inception and random
reference statistics (imported by name, like ``train_testlib``)."""

import jax
import numpy as np
from flax import nnx
from safetensors.numpy import save_file

import nnx_fid


def random_inception_file(path: str) -> None:
    """Writes a randomly filled FID Inception as ``.safetensors`` (as a converted weights file
    would be), with weights scaled so that activations stay of order one."""
    model = nnx_fid.InceptionV3(rngs=nnx.Rngs(0))
    params = nnx.state(model, nnx.Param)
    leaves = jax.tree.leaves(params)
    keys = jax.random.split(jax.random.key(0), len(leaves))
    scaled = [
        jax.random.normal(k, p.shape) * (0.5 / np.sqrt(max(np.prod(p.shape[:-1]), 1)) ** 0.5)
        for k, p in zip(keys, leaves)
    ]
    nnx.update(model, jax.tree.unflatten(jax.tree.structure(params), scaled))
    save_file(nnx_fid.export_inception_state_dict(model), path)


def random_reference_file(path: str) -> None:
    """Writes pytorch-fid ``.npz`` reference statistics: any valid Gaussian (a random PSD
    covariance) will do for comparing two evaluations."""
    rng = np.random.default_rng(1)
    factor = rng.standard_normal((2048, 64)) * 0.05
    stats = nnx_fid.GaussianStats(mu=rng.standard_normal(2048) * 0.1, sigma=factor @ factor.T)
    nnx_fid.save_pytorch_fid_npz(path, stats)
