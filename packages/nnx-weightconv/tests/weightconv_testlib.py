"""Helpers shared by the nnx-weightconv tests (this folder is in pytest's ``pythonpath``)."""

import torch


def randomise_torch(module: torch.nn.Module, seed: int, scale: float = 0.3) -> None:
    """Overwrite every parameter of a torch reference with ``scale * N(0, 1)`` (seeded)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(scale * torch.randn(param.shape, generator=generator))
