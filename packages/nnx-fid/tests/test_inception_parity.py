"""Parity of the NNX FID Inception with pytorch-fid's ``InceptionV3`` on random weights.

One forward pass per framework on two images: the torch side is pytorch-fid's own wrapper
(``InceptionV3([3])``: bilinear resize to 299 with ``align_corners=False``, ``2x - 1``, blocks),
fed the random state dict in place of the download; ours is ``InceptionFeatures`` with the
``"pytorch_fid"`` front end on the same uint8 images, after converting the saved ``.pth``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_fid import inception as pytorch_fid_inception

import nnx_fid

# Both sides compute in float32 through ~50 conv layers, summing in different orders (oneDNN
# vs XLA:CPU), and torch resizes [0, 1] values where we resize [0, 255] levels. Measured
# max |diff| / max |ref|: pool 3.9e-7, spatial 1.9e-6, logits 6.6e-7; 1e-5 leaves room for
# other CPUs while a layout, padding, pooling or epsilon error gives O(1e-2) or more.
RELATIVE_TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def torch_features(torch_fid_inception, small_images, monkeypatch_module):
    state = torch_fid_inception.state_dict()
    monkeypatch_module.setattr(
        pytorch_fid_inception, "load_state_dict_from_url", lambda *args, **kwargs: state
    )
    wrapper = pytorch_fid_inception.InceptionV3([3]).eval()
    captured = {}
    mixed_6d = wrapper.blocks[2][6]
    assert isinstance(mixed_6d, pytorch_fid_inception.FIDInceptionC)
    mixed_6d.branch1x1.register_forward_hook(lambda m, i, o: captured.setdefault("spatial", o))
    x = torch.from_numpy(small_images).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        pool = wrapper(x)[0][:, :, 0, 0]
    spatial = captured["spatial"].permute(0, 2, 3, 1)[..., :7].reshape(x.shape[0], -1)
    logits = pool @ state["fc.weight"].T
    return {"pool": pool.numpy(), "spatial": spatial.numpy(), "logits": logits.numpy()}


@pytest.fixture(scope="module")
def monkeypatch_module():
    patcher = pytest.MonkeyPatch()
    yield patcher
    patcher.undo()


def test_features_match_pytorch_fid(jax_inception, small_images, torch_features):
    ours = nnx_fid.InceptionFeatures(jax_inception, front_end="pytorch_fid")(small_images)
    assert ours["pool"].shape == (2, 2048)
    assert ours["spatial"].shape == (2, 17 * 17 * 7)
    assert ours["logits"].shape == (2, 1008)
    for name, reference in torch_features.items():
        scale = np.abs(reference).max()
        assert scale > 1e-2, f"{name}: degenerate reference features"
        error = np.abs(ours[name] - reference).max() / scale
        print(f"{name}: max |diff| / max |ref| = {error:.2e} (scale {scale:.3g})")
        assert error < RELATIVE_TOLERANCE, name
    # The two images must give different features, or the test could not see a batch mix-up.
    assert np.abs(torch_features["pool"][0] - torch_features["pool"][1]).max() > 1e-3


def test_weights_round_trip(jax_inception, torch_fid_inception):
    exported = nnx_fid.export_inception_state_dict(jax_inception)
    original = {
        k: v.numpy()
        for k, v in torch_fid_inception.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    assert exported.keys() == original.keys()
    for key, value in original.items():
        np.testing.assert_array_equal(exported[key], value, err_msg=key)
