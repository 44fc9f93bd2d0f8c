"""Inception feature throughput: nnx-fid against pytorch-fid, same images, same front end.

Both sides take the same ``uint8`` images of ``--size`` pixels, resize them bilinearly to
299 x 299, scale to [-1, 1] and return the 2048-d pool3 features as host arrays:

- ours: ``nnx_fid.InceptionFeatures(model, front_end="pytorch_fid")`` (one ``jax.jit`` over
  preprocessing and the network; the convolutions run at HIGHEST precision, as for FID);
- pytorch-fid: ``pytorch_fid.inception.InceptionV3([3])`` in eval mode under
  ``torch.no_grad()`` (its own ``resize_input`` / ``normalize_input``).

The weights are not needed to time the networks: both are built with random weights
(pytorch-fid's download is replaced by a fresh torchvision state dict). Reported in images
per second and the ratio ours / pytorch-fid (> 1: ours is faster).
"""

from __future__ import annotations

import argparse

import harness
import numpy as np


def images(batch: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)


def jax_features(batch: int, size: int = 256):
    """A call that computes pool3 features of one batch with nnx-fid and waits for them."""
    from flax import nnx

    from nnx_fid import InceptionFeatures, InceptionV3

    extractor = InceptionFeatures(InceptionV3(rngs=nnx.Rngs(0)), front_end="pytorch_fid")
    batch_images = images(batch, size)

    def run():
        return extractor(batch_images)["pool"]

    return run


def torch_features(batch: int, size: int = 256, device: str = "cpu"):
    """The same with pytorch-fid's ``InceptionV3`` (random weights, no download)."""
    import torch
    import torchvision
    from pytorch_fid import inception as pytorch_fid_inception

    def fresh_state_dict(*args, **kwargs):
        return torchvision.models.inception_v3(
            num_classes=1008, aux_logits=False, weights=None, init_weights=False
        ).state_dict()

    pytorch_fid_inception.load_state_dict_from_url = fresh_state_dict
    model = pytorch_fid_inception.InceptionV3([3]).eval().to(device)
    batch_images = images(batch, size)

    @torch.no_grad()
    def run():
        x = torch.from_numpy(batch_images).to(device).permute(0, 3, 1, 2).float() / 255.0
        return model(x)[0].squeeze(-1).squeeze(-1).cpu().numpy()

    return run


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="runs/bench/inception.json")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    case = f"InceptionV3 pool3, {args.size}px uint8 -> 299, batch {args.batch}"
    fns = {
        "jax (nnx-fid)": jax_features(args.batch, args.size),
        "torch (pytorch-fid)": torch_features(args.batch, args.size),
    }
    outputs = {name: fn() for name, fn in fns.items()}  # warm-up (compiles ours)
    assert all(out.shape == (args.batch, 2048) for out in outputs.values()), outputs
    medians = harness.alternate(fns, rounds=args.rounds, calls=1)
    results = harness.throughput_rows(
        case, medians, args.batch, ours="jax (nnx-fid)", baseline="torch (pytorch-fid)"
    )
    return harness.write_report("inception", results, args.out)


if __name__ == "__main__":
    for row in main()["results"]:
        print(row)
