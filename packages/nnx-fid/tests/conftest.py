"""Shared fixtures: pytorch-fid's FID Inception with random weights, built without downloading.

pytorch-fid's ``fid_inception_v3`` builds torchvision's ``Inception3(num_classes=1008,
aux_logits=False)``, swaps in its ``FIDInceptionA/C/E_1/E_2`` blocks and downloads the weights.
The fixture does the same construction and fills every tensor with seeded random values instead:
He-scaled conv weights, BN scale in [0.5, 1.5], BN bias, running mean and running variance all
non-trivial, so that a wrong layout, pooling or epsilon changes the features.

The suite runs on fake CPU devices with cheap compiles (``nnx_nets.testing``).
"""

from __future__ import annotations

import math
import os

# numpy reads it at its first import (next line): one BLAS thread, since a threaded eigh (two
# per Frechet distance) costs several times more CPU on two busy cores.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from nnx_nets.testing import configure_cpu_tests  # noqa: E402

configure_cpu_tests()

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
from pytorch_fid import inception as pytorch_fid_inception  # noqa: E402

torch.set_num_threads(1)


def build_torch_fid_inception(seed: int = 0) -> torch.nn.Module:
    """torchvision Inception3 patched exactly as ``pytorch_fid.inception.fid_inception_v3``."""
    net = torchvision.models.inception_v3(
        num_classes=1008, aux_logits=False, weights=None, init_weights=False
    )
    net.Mixed_5b = pytorch_fid_inception.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = pytorch_fid_inception.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = pytorch_fid_inception.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = pytorch_fid_inception.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = pytorch_fid_inception.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = pytorch_fid_inception.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = pytorch_fid_inception.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = pytorch_fid_inception.FIDInceptionE_1(1280)
    net.Mixed_7c = pytorch_fid_inception.FIDInceptionE_2(2048)
    generator = torch.Generator().manual_seed(seed)

    def uniform(shape, low, high):
        return low + (high - low) * torch.rand(shape, generator=generator)

    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            if name.endswith("conv.weight"):
                fan_in = math.prod(tensor.shape[1:])
                value = torch.randn(tensor.shape, generator=generator) * math.sqrt(2.0 / fan_in)
            elif name.endswith("bn.weight"):
                value = uniform(tensor.shape, 0.5, 1.5)
            elif name.endswith(("bn.bias", "bn.running_mean", "fc.bias")):
                value = 0.1 * torch.randn(tensor.shape, generator=generator)
            elif name.endswith("bn.running_var"):
                value = uniform(tensor.shape, 0.5, 2.0)
            elif name == "fc.weight":
                value = torch.randn(tensor.shape, generator=generator) / math.sqrt(2048)
            else:  # num_batches_tracked
                continue
            tensor.copy_(value)
    return net.eval()


@pytest.fixture(scope="session")
def torch_fid_inception() -> torch.nn.Module:
    return build_torch_fid_inception()


@pytest.fixture(scope="session")
def inception_weights_file(torch_fid_inception, tmp_path_factory) -> str:
    """The random network saved as a torchvision state dict, as the real weights file is."""
    path = tmp_path_factory.mktemp("weights") / "random_inception.pth"
    torch.save(torch_fid_inception.state_dict(), path)
    return str(path)


@pytest.fixture(scope="session")
def jax_inception(inception_weights_file):
    import nnx_fid

    with pytest.warns(UserWarning, match="SHA-256"):
        return nnx_fid.load_inception(inception_weights_file)


@pytest.fixture(scope="session")
def small_images() -> np.ndarray:
    """Two 32 x 40 uint8 images (non-square, so that a transposed resize axis shows)."""
    return np.random.default_rng(0).integers(0, 256, (2, 32, 40, 3), dtype=np.uint8)
