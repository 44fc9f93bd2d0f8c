"""Fingerprint of the embedded default run: sha256 of its final state and its metrics.

A behaviour-preserving change (a refactor) must leave both unchanged; CONTRIBUTING.md records
the values of the current main. Runs the digits default (about 5 minutes on 2 CPU cores) in
``--workdir`` (a fresh folder), then restores the last checkpoint with the trainer's own
`nnx_train.run.Run` and hashes every array of the state (parameters, optimizer, EMA, RNG),
path names included, in tree order::

    uv run python tools/digits_fingerprint.py --workdir /tmp/digits_fingerprint
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

import jax
import numpy as np

from nnx_train.cli import load_config
from nnx_train.run import Run
from nnx_train.train import train

CONFIG = os.path.join(os.path.dirname(__file__), "..", "apps", "train", "configs", "digits.py")
METRIC_KEYS = ("generated_class_accuracy", "classifier_frechet_distance")


def state_digest(state) -> tuple[str, int]:
    """``(sha256 hex, number of arrays)`` over the state's leaves and their paths."""
    digest = hashlib.sha256()
    leaves = jax.tree_util.tree_leaves_with_path(jax.device_get(state))
    for path, leaf in leaves:
        if jax.dtypes.issubdtype(getattr(leaf, "dtype", np.float32), jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        digest.update(jax.tree_util.keystr(path).encode())
        digest.update(np.asarray(leaf).tobytes())
    return digest.hexdigest(), len(leaves)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="a fresh folder for the run")
    args = parser.parse_args(argv)
    if os.path.exists(os.path.join(args.workdir, "checkpoints")):
        raise SystemExit(f"{args.workdir} already holds a run; give a fresh --workdir")
    config = load_config(CONFIG)
    final = train(config, args.workdir)
    sha256, count = state_digest(Run(config, args.workdir).state)
    result = {"state_sha256": sha256, "arrays": count}
    result.update({key: final[key] for key in METRIC_KEYS})
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
