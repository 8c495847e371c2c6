"""The one check of a file's declared format and format version, for every reader of an
sdm-neuro file (checkpoint, classifier, deployment graph, export bundle manifest and network).

A reader passes what it found (``format`` and ``format_version`` as stored) and what it reads;
a version is an integer (not a bool, not a float, not a string) from 1 to ``supported_max``."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def supported_versions(supported_max: int) -> str:
    """``"version 1"`` or ``"versions 1 to N"``."""
    return "version 1" if supported_max == 1 else f"versions 1 to {supported_max}"


def check_format(found_format: object, found_version: object, *, expected: str,
                 supported_max: int, where: str, what: str, error: type[Exception],
                 show: Callable[[object], str] = repr) -> int:
    """The version ``found_version`` as an int, after checking that ``found_format`` is
    ``expected`` and the version an integer in ``[1, supported_max]`` (a NumPy integer, as NIR
    metadata stores it, counts; a bool does not). Otherwise ``error``, naming ``where`` (the
    file), ``what`` the file should be (``"a sdm-neuro-bundle version 1 manifest"``) and what
    was found, shown by ``show``:

    * ``{where}: not {what} (format=..., expected '...').``
    * ``{where}: not {what}: format_version ... is not supported (this sdm-neuro reads ...).``
    """
    if not isinstance(found_format, str) or found_format != expected:
        raise error(f"{where}: not {what} (format={show(found_format)}, expected "
                    f"{expected!r}).")
    v = found_version
    if isinstance(v, bool | np.bool_) or not isinstance(v, int | np.integer) \
            or not 1 <= v <= supported_max:
        raise error(f"{where}: not {what}: format_version {show(v)} is not supported (this "
                    f"sdm-neuro reads {supported_versions(supported_max)}).")
    return int(v)
