"""Reference statistics files: ADM ``.npz``, pytorch-fid ``.npz`` and EDM2 ``.pkl``.

As written by openai/guided-diffusion ``evaluations/evaluator.py``, mseitzer/pytorch-fid
``fid_score.py`` and NVlabs/edm2 ``calculate_metrics.py ref``.

===============  ==========================================================================
format           contents
===============  ==========================================================================
ADM ``.npz``     ``arr_0`` (N, H, W, 3) uint8 reference images (used only for precision /
                 recall), ``mu``/``sigma`` (pool3, 2048), ``mu_s``/``sigma_s`` (spatial, 2023)
pytorch-fid      ``mu``, ``sigma`` (pool3); clean-fid and MAR's ``adm_in256_stats.npz`` too
``.npz``
EDM2 ``.pkl``    ``{'num_images': int, 'fid': {'mu', 'sigma'}, 'fd_dinov2': {'mu', 'sigma'}}``;
                 an EDM (v1) ``.npz`` with ``mu``/``sigma`` reads as its ``'fid'`` entry
===============  ==========================================================================

:func:`load_reference` reads any of them into one :class:`ReferenceStats`; each writer produces
one format, and reading a written file gives back identical arrays (same dtype and bits).
Pickles are read with an unpickler that accepts only dicts, numbers and numpy arrays, so a
malicious file cannot run code.
"""

from __future__ import annotations

import dataclasses
import io
import pathlib
import pickle
import zipfile

import numpy as np

from nnx_fid.statistics import GaussianStats


class StatsFormatError(ValueError):
    """A statistics file is malformed; the message names the file and the problem."""


@dataclasses.dataclass(frozen=True, eq=False)
class ReferenceStats:
    """Everything a reference file can hold (absent parts are ``None``).

    Attributes:
      fid: Inception pool3 statistics (2048-d).
      sfid: Inception spatial statistics (``mixed_6/conv``, 2023-d).
      fd_dinov2: DINOv2 CLS statistics (1024-d for ViT-L).
      images: ``(N, H, W, 3)`` uint8 reference images (ADM ``arr_0``; precision / recall).
      num_images: number of images behind the statistics, when the file records it.
    """

    fid: GaussianStats | None = None
    sfid: GaussianStats | None = None
    fd_dinov2: GaussianStats | None = None
    images: np.ndarray | None = None
    num_images: int | None = None


_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("collections", "OrderedDict"),
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refusing to load global {module}.{name}: a statistics pickle may hold only dicts, "
            "numbers and numpy arrays"
        )


def _gaussian(mu, sigma, path: pathlib.Path, what: str, num: int | None = None) -> GaussianStats:
    try:
        return GaussianStats(np.asarray(mu), np.asarray(sigma), num)
    except ValueError as error:
        raise StatsFormatError(f"{str(path)!r}: {what}: {error}") from error


def _read_npz(path: pathlib.Path, load_images: bool) -> ReferenceStats:
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile) as error:
        raise StatsFormatError(f"cannot read {str(path)!r} as .npz: {error}") from error
    with archive:
        keys = set(archive.files)
        for mean_key, cov_key in (("mu", "sigma"), ("mu_s", "sigma_s")):
            if (mean_key in keys) != (cov_key in keys):
                raise StatsFormatError(
                    f"{str(path)!r} has {mean_key if mean_key in keys else cov_key!r} without "
                    f"its partner ({mean_key}/{cov_key} come in pairs); keys: {sorted(keys)}"
                )
        if not keys & {"mu", "mu_s", "arr_0"}:
            raise StatsFormatError(
                f"{str(path)!r} holds none of mu/sigma, mu_s/sigma_s or arr_0 (keys: "
                f"{sorted(keys)}); expected an ADM or pytorch-fid statistics file"
            )
        fid = _gaussian(archive["mu"], archive["sigma"], path, "mu/sigma") if "mu" in keys else None
        sfid = (
            _gaussian(archive["mu_s"], archive["sigma_s"], path, "mu_s/sigma_s")
            if "mu_s" in keys
            else None
        )
        images = None
        if "arr_0" in keys and load_images:
            images = archive["arr_0"]
            if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
                raise StatsFormatError(
                    f"{str(path)!r}: arr_0 must be (N, H, W, 3) uint8 images, got "
                    f"{images.shape} {images.dtype}"
                )
    return ReferenceStats(fid=fid, sfid=sfid, images=images)


def _read_pkl(path: pathlib.Path) -> ReferenceStats:
    try:
        with open(path, "rb") as handle:
            tree = _ArrayUnpickler(handle).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as error:
        raise StatsFormatError(f"cannot read {str(path)!r} as an EDM2 pickle: {error}") from error
    if not isinstance(tree, dict):
        raise StatsFormatError(f"{str(path)!r} must hold a dict, got {type(tree).__name__}")
    known = {"num_images", "fid", "fd_dinov2"}
    if not tree.keys() & {"fid", "fd_dinov2"}:
        raise StatsFormatError(
            f"{str(path)!r} has neither 'fid' nor 'fd_dinov2' (keys: {sorted(map(str, tree))}); "
            "expected EDM2 statistics {'num_images', 'fid': {mu, sigma}, 'fd_dinov2': {mu, sigma}}"
        )
    num_images = tree.get("num_images")
    num_images = None if num_images is None else int(num_images)
    parts: dict[str, GaussianStats] = {}
    for name in ("fid", "fd_dinov2"):
        if name not in tree:
            continue
        entry = tree[name]
        if not isinstance(entry, dict) or not {"mu", "sigma"} <= entry.keys():
            raise StatsFormatError(
                f"{str(path)!r}: entry {name!r} must be a dict with mu and sigma"
            )
        parts[name] = _gaussian(entry["mu"], entry["sigma"], path, name, num_images)
    unknown = sorted(str(k) for k in tree if k not in known)
    if unknown:
        raise StatsFormatError(
            f"{str(path)!r}: unexpected entries {unknown}; keys are {sorted(known)}"
        )
    return ReferenceStats(num_images=num_images, **parts)


def load_reference(path: str | pathlib.Path, *, load_images: bool = True) -> ReferenceStats:
    """Read an ADM / pytorch-fid ``.npz`` or an EDM2 ``.pkl`` (see the module docstring).

    Args:
      path: the statistics file.
      load_images: read ADM's ``arr_0`` images (about 2 GB for the 256 px batches).

    Raises:
      FileNotFoundError: no such file.
      StatsFormatError: unknown suffix, unreadable or malformed file.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"statistics file {str(path)!r} does not exist")
    if path.suffix == ".npz":
        return _read_npz(path, load_images)
    if path.suffix in (".pkl", ".pickle"):
        return _read_pkl(path)
    raise StatsFormatError(
        f"unknown statistics suffix {path.suffix!r} for {str(path)!r}; expected .npz (ADM, "
        "pytorch-fid) or .pkl (EDM2)"
    )


def _require(stats: GaussianStats | None, what: str, fmt: str) -> GaussianStats:
    if stats is None:
        raise ValueError(f"the {fmt} format needs {what} statistics, which are missing")
    return stats


def save_adm_npz(path: str | pathlib.Path, reference: ReferenceStats) -> None:
    """Write ADM's format: ``mu, sigma, mu_s, sigma_s`` and ``arr_0`` when images are present."""
    fid = _require(reference.fid, "fid (pool3)", "ADM")
    sfid = _require(reference.sfid, "sfid (spatial)", "ADM")
    arrays = {"mu": fid.mu, "sigma": fid.sigma, "mu_s": sfid.mu, "sigma_s": sfid.sigma}
    if reference.images is not None:
        arrays["arr_0"] = reference.images
    np.savez(path, **arrays)


def save_pytorch_fid_npz(path: str | pathlib.Path, stats: GaussianStats) -> None:
    """Write pytorch-fid's format: ``mu, sigma``."""
    np.savez(path, mu=stats.mu, sigma=stats.sigma)


def save_edm2_pkl(path: str | pathlib.Path, reference: ReferenceStats) -> None:
    """Write EDM2's pickle ``{'num_images', 'fid': {mu, sigma}, 'fd_dinov2': {mu, sigma}}``
    (entries that are ``None`` are left out; at least one is required)."""
    if reference.fid is None and reference.fd_dinov2 is None:
        raise ValueError("the EDM2 format needs fid or fd_dinov2 statistics; both are missing")
    num_images = reference.num_images
    if num_images is None:
        present = reference.fid if reference.fid is not None else reference.fd_dinov2
        num_images = present.num_samples
    tree: dict = {"num_images": num_images}
    for name in ("fid", "fd_dinov2"):
        stats = getattr(reference, name)
        if stats is not None:
            tree[name] = {"mu": stats.mu, "sigma": stats.sigma}
    buffer = io.BytesIO()
    pickle.dump(tree, buffer)
    pathlib.Path(path).write_bytes(buffer.getvalue())
