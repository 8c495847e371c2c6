"""Locating and reading dataset files: every failure becomes a DatasetError naming the path."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..errors import DatasetError

GZIP_MAGIC = b"\x1f\x8b"


def find_file(dirs: Sequence[Path], names: Iterable[str]) -> Path | None:
    """The first ``dir/name`` that is a file, trying every name in each directory in turn."""
    names = tuple(names)
    for d in dirs:
        for name in names:
            if (d / name).is_file():
                return d / name
    return None


def list_dirs(dirs: Sequence[Path]) -> str:
    """``/d, /d/raw, /d/MNIST/raw`` for a 'not found' message."""
    return ", ".join(str(d) for d in dirs)


def read_bytes(path: Path, *, gunzip: bool = False) -> bytes:
    """The file's contents; with ``gunzip``, decompressed when they start with the gzip magic.

    Detection is by content, not by the ``.gz`` suffix, because browsers often decompress a
    download on the fly and keep the ``.gz`` name (a common way to get "MNIST" files).
    """
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DatasetError(f"{path}: cannot read ({e.strerror or e})") from None
    if gunzip and raw[:2] == GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DatasetError(f"{path}: corrupt gzip data ({e})") from None
    return raw
