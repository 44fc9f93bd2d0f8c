"""How each converted checkpoint family is sampled: its time convention, prediction and adapters.

The library's convention: ``t`` in [0, 1], ``t = 0`` is data, ``t = 1`` is noise, and a flow
network returns the velocity ``dx_t/dt``. A checkpoint trained otherwise needs network
adapters, named here and applied by ``nnx_samplers.adapt_network(convention.adapters, model)``
(this package names them only: it does not depend on nnx-samplers). The conversion CLI
(``tools/convert_checkpoint.py``) writes the convention next to the converted parameters.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["CHECKPOINT_CONVENTIONS", "CheckpointConvention", "checkpoint_convention"]


@dataclass(frozen=True)
class CheckpointConvention:
    """What a checkpoint family predicts and how its authors sample it.

    Attributes:
      source: the upstream code that defines the convention (file and function).
      prediction: ``"velocity"`` or ``"eps+variance"`` (DDPM noise and learned variance).
      time_scale: the network's ``time_scale`` constructor argument.
      adapters: names of ``nnx_samplers.NETWORK_ADAPTERS``, innermost first, that turn the
        converted network into one in the library's convention.
      sampler: the authors' own sampling, in the library's objects.
    """

    source: str
    prediction: str
    time_scale: float
    adapters: tuple[str, ...]
    sampler: str

    def to_json(self) -> dict:
        return asdict(self)


_FLIPPED = ("time_flipped_velocity",)
CHECKPOINT_CONVENTIONS: dict[str, CheckpointConvention] = {
    "dit": CheckpointConvention(
        source="facebookresearch/DiT diffusion/gaussian_diffusion.py (integer steps 0..999)",
        prediction="eps+variance",
        time_scale=1000.0,
        adapters=(),
        sampler="DDPMAncestral() on ddpm_grid(250); CFG on channels 0-2 "
        "(guided_channels=DIT_LEGACY_GUIDED_CHANNELS)",
    ),
    "diffusers_dit": CheckpointConvention(
        source="diffusers DiTPipeline (DDPM schedule of facebookresearch/DiT)",
        prediction="eps+variance",
        time_scale=1000.0,
        adapters=(),
        sampler="DDPMAncestral() on ddpm_grid(250), or DDIM()",
    ),
    "sit": CheckpointConvention(
        source="willisma/SiT transport/path.py (x_t = t x1 + (1 - t) x0, x1 = data; "
        "u = data - noise)",
        prediction="velocity",
        time_scale=1.0,
        adapters=_FLIPPED,
        sampler="Heun() on UniformGrid(250) (SiT's ODE, dopri5 in sample.py) or "
        "EulerMaruyama(SigmaDiffusion()); CFG on channels 0-2",
    ),
    "lightning_dit": CheckpointConvention(
        source="hustvl/LightningDiT transport/path.py (SiT's convention: t = 1 is data)",
        prediction="velocity",
        time_scale=1.0,
        adapters=_FLIPPED,
        sampler="Euler() on 250 steps with the timestep shift; CFG on channels 0-2 with "
        "an interval (its own time from 0.11-0.125)",
    ),
    "dit_dh": CheckpointConvention(
        source="RAE stage-2 DiT-DH (sampled by apps/rae_eval in the library's convention)",
        prediction="velocity",
        time_scale=1.0,
        adapters=(),
        sampler="Euler() on the shifted grid (apps/rae_eval)",
    ),
}
"""Conventions by the conversion CLI's ``--arch`` name."""


def checkpoint_convention(arch: str, *, learn_sigma: bool = False) -> CheckpointConvention:
    """The convention of a checkpoint family; a learned-sigma flow network also drops its
    variance half first (``"first_half_channels"``), as SiT's and LightningDiT's ``forward``.

    Raises:
      ValueError: ``arch`` has no recorded convention (the message lists those that do).
    """
    if arch not in CHECKPOINT_CONVENTIONS:
        raise ValueError(
            f"no sampling convention recorded for {arch!r}; known: {', '.join(CHECKPOINT_CONVENTIONS)}"
        )
    convention = CHECKPOINT_CONVENTIONS[arch]
    if learn_sigma and convention.prediction == "velocity":
        adapters = ("first_half_channels", *convention.adapters)
        return CheckpointConvention(**{**asdict(convention), "adapters": adapters})
    return convention
