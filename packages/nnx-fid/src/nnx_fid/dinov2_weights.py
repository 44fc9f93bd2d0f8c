"""The FD-DINOv2 network: nnx-nets' DINOv2 ViT-L/14 as EDM2 runs it, filled from a weights file.

EDM2 loads torch-hub ``dinov2_vitl14`` (no registers), whose position table is resized to the
16 x 16 grid of a 224 px input in scale-factor mode (``pos_embed_interpolation=
"bicubic_offset"`` in nnx-nets; NVlabs/edm2 FD-DINOv2). The torch-hub checkpoint
``dinov2_vitl14_pretrain.pth`` and the HF ``facebook/dinov2-large`` files hold the same tensors
under different keys; nnx-weightconv's ``load_dinov2`` detects the layout.
"""

from __future__ import annotations

import pathlib

from flax import nnx

DINOV2_FILE_NAME = "dinov2_vitl14_pretrain.pth"
DINOV2_URL = "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/" + DINOV2_FILE_NAME


def fd_dinov2_network(*, rngs: nnx.Rngs, **overrides) -> nnx.Module:
    """An (unloaded) DINOv2 ViT-L/14 configured as EDM2's FD-DINOv2 network.

    Args:
      rngs: initialisation stream.
      **overrides: preset overrides (e.g. a smaller width for tests).
    """
    from nnx_nets import dinov2_from_preset

    return dinov2_from_preset(
        "dinov2-vitl14", **{"pos_embed_interpolation": "bicubic_offset", **overrides}, rngs=rngs
    )


def load_fd_dinov2(path: str | pathlib.Path | None, **overrides) -> nnx.Module:
    """Build :func:`fd_dinov2_network` and load a DINOv2 ViT-L/14 checkpoint into it.

    Args:
      path: torch-hub ``dinov2_vitl14_pretrain.pth`` or an HF ``facebook/dinov2-large``
        ``model.safetensors``.
      **overrides: preset overrides (tests).

    Raises:
      FileNotFoundError: no path or no file; the message says where the file is published.
      nnx_weightconv.ConversionError: the file is not a matching DINOv2 checkpoint.
    """
    if path is None or not pathlib.Path(path).is_file():
        where = "no path was given" if path is None else f"{str(path)!r} does not exist"
        raise FileNotFoundError(
            f"the FD-DINOv2 weights are needed but {where}. Download {DINOV2_FILE_NAME} from "
            f"{DINOV2_URL} (or facebook/dinov2-large's model.safetensors) and pass its path."
        )
    from nnx_weightconv import load_dinov2, read_state_dict

    model = fd_dinov2_network(rngs=nnx.Rngs(0), **overrides)
    load_dinov2(model, read_state_dict(path))
    return model
