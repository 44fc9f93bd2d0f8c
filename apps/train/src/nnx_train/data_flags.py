"""``--data``, ``--data_path``, ``--data_format``: the data section from the command line.

``--data=NAME`` replaces ``config.data`` with the defaults of that source (the section
builders of `nnx_train.sections`), keeping the model's ``num_classes``; ``--data_path`` and
``--data_format`` set ``data.path`` and ``data.content``; ``--config.data.<key>=...``
overrides apply afterwards. `check_data_section` then checks the section before anything is
built (a name, a path that exists, a format), so a bad data flag is one line at once.
"""

from __future__ import annotations

import glob
import os
from typing import Any

from ml_collections import ConfigDict

from nnx_train import sections
from nnx_train.errors import ConfigError

__all__ = ["DATA_SECTIONS", "apply_data_flags", "check_data_section"]

DATA_SECTIONS = {
    "digits": sections.digits_data,
    "synthetic": sections.synthetic_data,
    "latents": sections.latent_data,
    "imagefolder": sections.imagefolder_data,
    "arrayrecord": sections.arrayrecord_data,
    "webdataset": sections.webdataset_data,
    "moving_digits": sections.moving_digits_data,
}
FORMATS = ("pixels", "latents")


def apply_data_flags(config: ConfigDict, options: Any) -> None:
    """Applies ``options.data`` / ``data_path`` / ``data_format`` to ``config`` in place."""
    if options.data is not None:
        if options.data not in DATA_SECTIONS:
            raise ConfigError(
                f"--data={options.data!r} is not a data source; valid: {', '.join(DATA_SECTIONS)}."
            )
        section = DATA_SECTIONS[options.data]()
        classes = config.model.get("num_classes", None)
        if "num_classes" in section and classes is not None:
            section.num_classes = int(classes)
        config.data = section
    name = config.data.name
    if options.data_path is not None:
        if "path" not in config.data:
            raise ConfigError(
                f"data {name!r} reads no files, so --data_path does not apply; choose a source "
                "that does with --data=latents|imagefolder|arrayrecord|webdataset."
            )
        config.data.path = options.data_path
    if options.data_format is not None:
        if "content" not in config.data:
            raise ConfigError(
                f"data {name!r} has one format, so --data_format does not apply; it applies to "
                "--data=arrayrecord and --data=webdataset."
            )
        config.data.content = options.data_format


def _exists(path: str) -> bool:
    if "://" in path:  # buckets are checked by the reader
        return True
    if any(c in path for c in "*?[{"):  # globs and shard ranges such as shard-{000..146}.tar
        return bool(glob.glob(path.split("{", 1)[0] + "*"))
    return os.path.exists(path)


def check_data_section(config: ConfigDict) -> None:
    """Raises a one-line `ConfigError` for a data section that cannot be read.

    Checks the name, the format of container sources and, for sources that read files, that
    ``data.path`` is set and exists. The readers check the contents later.
    """
    data = config.data
    if data.name not in DATA_SECTIONS:
        raise ConfigError(
            f"data.name={data.name!r} is not a data source; valid: {', '.join(DATA_SECTIONS)} "
            "(--data=NAME)."
        )
    if "content" in data and data.content not in FORMATS:
        raise ConfigError(
            f"data.content={data.content!r} is not a format; valid: {', '.join(FORMATS)} "
            "(--data_format)."
        )
    if "path" not in data:
        return
    if not data.path:
        raise ConfigError(
            f"data.path is empty: data {data.name!r} reads files; set --data_path=PATH."
        )
    if not _exists(str(data.path)):
        raise ConfigError(
            f"data.path={data.path} does not exist; pass the folder or files of the "
            f"{data.name!r} data with --data_path (see docs/weights_and_data.md)."
        )
