"""File access for every reader and writer: atomic writes (a reader never sees a partial
output) and the guard every input passes before it is opened (a regular file of bounded size:
a named pipe would block forever, ``/dev/zero`` would never end)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO


def regular_file(path: str | os.PathLike, *, what: str, error: type[Exception],
                 max_bytes: int | None = None) -> Path:
    """``path`` if it is a regular file of at most ``max_bytes`` bytes, else ``error`` naming
    the file, ``what`` it should be and the rule it broke. Checked before anything is read."""
    import stat

    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise error(f"{path}: no such file (expected {what}).") from None
    except OSError as e:
        raise error(f"{path}: cannot be read ({e.strerror or e}; expected {what}).") from None
    if stat.S_ISDIR(st.st_mode):
        raise error(f"{path}: is a directory, not {what}.")
    if not stat.S_ISREG(st.st_mode):
        kind = ("a named pipe" if stat.S_ISFIFO(st.st_mode) else
                "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else
                "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
        raise error(f"{path}: is {kind}, not {what} (only regular files are read).")
    if not os.access(path, os.R_OK):
        raise error(f"{path}: cannot be read (permission denied; expected {what}).")
    if max_bytes is not None and st.st_size > max_bytes:
        raise error(f"{path}: {st.st_size:,} bytes, more than the {max_bytes:,} bytes {what} "
                    "may have.")
    return path


def read_text_limited(path: str | os.PathLike, *, what: str, error: type[Exception],
                      max_bytes: int) -> str:
    """The UTF-8 text of a regular file of at most ``max_bytes`` (see :func:`regular_file`)."""
    path = regular_file(path, what=what, error=error, max_bytes=max_bytes)
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{path}: not UTF-8 text (byte {e.start}); expected {what}.") from None
    except OSError as e:
        raise error(f"{path}: cannot be read ({e.strerror or e}).") from None


def read_json_limited(path: str | os.PathLike, *, what: str, error: type[Exception],
                      max_bytes: int) -> object:
    """The parsed JSON of a regular file of at most ``max_bytes`` (see :func:`regular_file`).
    Nesting too deep for the parser (``RecursionError``) is a malformed file like any other."""
    import json

    text = read_text_limited(path, what=what, error=error, max_bytes=max_bytes)
    try:
        return json.loads(text)
    except RecursionError:
        raise error(f"{path}: JSON nested too deeply; expected {what}.") from None
    except ValueError as e:
        raise error(f"{path}: not valid JSON ({e}); expected {what}.") from None


def read_npy_header(f: BinaryIO, *, where: str, what: str, error: type[Exception]
                    ) -> tuple[tuple[int, ...], bool, Any]:
    """``(shape, fortran_order, dtype)`` of the ``.npy`` data in the open file ``f`` (format 1.0
    or 2.0; 3.0 only adds UTF-8 record names), leaving ``f`` at the data: the readers check the
    declared form and size against their limits and the file before reading any data."""
    from numpy.lib import format as npy

    try:
        version = npy.read_magic(f)
        if version not in ((1, 0), (2, 0)):
            raise error(f"{where}: .npy format version {version[0]}.{version[1]}; expected 1.0 "
                        f"or 2.0 holding {what}.")
        read = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
        shape, fortran, dtype = read(f)
    except (ValueError, EOFError, SyntaxError, TypeError) as e:  # bad magic, header or dtype
        raise error(f"{where}: not {what} ({type(e).__name__}: {e}).") from None
    return tuple(shape), fortran, dtype


def write_atomic(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_dir(path: str | os.PathLike, *, force: bool = False) -> Iterator[Path]:
    """Yield a temporary directory; on success it replaces ``path`` (which must not exist unless
    ``force``); on failure it is removed and ``path`` is left as it was."""
    from .errors import UsageError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{path}: exists and is not a directory.")
    if path.exists() and any(path.iterdir()) and not force:
        raise UsageError(f"{path}: output directory exists and is not empty; "
                         "pass --force to replace it.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        _swap_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_dir(new: Path, path: Path) -> None:
    """Put directory ``new`` in the place of ``path``. The old directory is renamed aside first
    and removed only once ``new`` is in place, so a failure leaves ``path`` as it was."""
    if not path.exists():
        os.replace(new, path)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
    os.rmdir(old)  # a free name beside ``path``, on the same file system
    os.replace(path, old)
    try:
        os.replace(new, path)
    except BaseException:
        os.replace(old, path)
        raise
    shutil.rmtree(old, ignore_errors=True)


def write_json(path: str | os.PathLike, obj: object) -> Path:
    import json

    text = json.dumps(obj, indent=2, sort_keys=False) + "\n"
    return write_atomic(path, lambda tmp: tmp.write_text(text))


def write_npy(path: str | os.PathLike, array: object) -> Path:
    """``np.save`` atomically (through a file object: ``np.save`` would append ``.npy`` to the
    temporary name)."""
    import numpy as np

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, array)

    return write_atomic(path, write)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
