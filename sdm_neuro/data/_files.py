"""Locating and reading dataset files: every failure becomes a DatasetError naming the path.

Every file passes :func:`sdm_neuro.fileio.regular_file` before it is opened (a named pipe would
block forever, ``/dev/zero`` would never end) and is read with a bound: compressed data is
decompressed only as far as the format's declared size (plus one byte, to detect trailing data),
so a gzip bomb costs no more memory than a well-formed file.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from ..errors import DatasetError
from ..fileio import regular_file

GZIP_MAGIC = b"\x1f\x8b"
# What a damaged gzip stream raises while it is read (BadGzipFile is an OSError).
GZIP_ERRORS = (OSError, EOFError, zlib.error)


def find_file(dirs: Sequence[Path], names: Iterable[str]) -> Path | None:
    """The first ``dir/name`` that exists, trying every name in each directory in turn.

    Whatever it is: a directory, pipe or device under a dataset file's name is then refused by
    name (:func:`guard`) instead of being reported as missing.
    """
    names = tuple(names)
    for d in dirs:
        for name in names:
            if os.path.lexists(d / name):
                return d / name
    return None


def list_dirs(dirs: Sequence[Path]) -> str:
    """``/d, /d/raw, /d/MNIST/raw`` for a 'not found' message."""
    return ", ".join(str(d) for d in dirs)


def guard(path: Path, *, what: str, max_bytes: int) -> Path:
    """``path`` if it is a regular file of at most ``max_bytes``, else a DatasetError."""
    return regular_file(path, what=what, error=DatasetError, max_bytes=max_bytes)


def read_bytes(path: Path, *, what: str, max_bytes: int) -> bytes:
    """The contents of a regular file of at most ``max_bytes`` (checked before reading, and
    again while reading in case the file grows)."""
    guard(path, what=what, max_bytes=max_bytes)
    try:
        with open(path, "rb") as f:
            raw = f.read(max_bytes + 1)
    except OSError as e:
        raise DatasetError(f"{path}: cannot read ({e.strerror or e})") from None
    if len(raw) > max_bytes:
        raise DatasetError(f"{path}: more than the {max_bytes:,} bytes {what} may have")
    return raw


@contextmanager
def open_maybe_gzip(path: Path) -> Iterator[tuple[BinaryIO, bool]]:
    """``(stream, gzipped)``: the file, decompressed on the fly when it starts with the gzip
    magic. Detection is by content, not by the ``.gz`` suffix, because browsers often
    decompress a download and keep the ``.gz`` name (a common way to get "MNIST" files)."""
    try:
        f = open(path, "rb")
    except OSError as e:
        raise DatasetError(f"{path}: cannot read ({e.strerror or e})") from None
    with f:
        gzipped = f.read(2) == GZIP_MAGIC
        f.seek(0)
        if not gzipped:
            yield f, False
            return
        with gzip.GzipFile(fileobj=f, mode="rb") as g:
            yield g, True  # type: ignore[misc]


def read_upto(stream: BinaryIO, n: int, path: Path, gzipped: bool) -> bytes:
    """At most ``n`` bytes (fewer only at the end of the data); gzip damage is a DatasetError."""
    parts, have = [], 0
    try:
        while have < n:
            block = stream.read(min(n - have, 1 << 22))
            if not block:
                break
            parts.append(block)
            have += len(block)
    except GZIP_ERRORS as e:
        if gzipped:
            raise DatasetError(f"{path}: corrupt gzip data ({e})") from None
        raise DatasetError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None
    return b"".join(parts)
