"""CIFAR-10 from the "CIFAR-10 python version": pickled batches, read without running code.

The batches are Python-2 pickles of dicts with byte-string keys: ``b"data"`` is a uint8 array
[N, 3072] (the R, G and B planes of a 32x32 image, row-major) and ``b"labels"`` a list of ints;
``batches.meta`` holds ``b"label_names"``. A pickle can call any importable function, so they
are read with an unpickler that resolves only the few globals a numpy array needs
(https://docs.python.org/3/library/pickle.html#restricting-globals): a tampered file fails with
a DatasetError before anything in it runs.
"""

from __future__ import annotations

import codecs
import importlib
import io
import os
import pickle
import tarfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ..errors import DatasetError
from ._files import find_file, guard, list_dirs, read_bytes

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCHES = ("test_batch",)
META = "batches.meta"
FOLDER = "cifar-10-batches-py"
TARBALL = "cifar-10-python.tar.gz"
PIXELS = 3 * 32 * 32
# Size limits, checked before anything is read or decompressed. A real batch is 31 MB (10,000
# images); a Python-3 protocol-2 re-pickle stores the pixels as latin-1 text, about 1.5 times
# that. The real tarball is 163 MB, 186 MB unpacked in 8 members.
MAX_BATCH_BYTES = 64 << 20
MAX_META_BYTES = 1 << 20
MAX_TARBALL_BYTES = 256 << 20
MAX_TAR_TOTAL = 512 << 20   # every member's bytes, read or skipped (skipping decompresses too)
MAX_TAR_MEMBERS = 1000


def _latin1_encode(obj: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles written by Python 3 use it (to rebuild bytes),
    restricted to latin-1 so the global cannot reach any other codec."""
    if not isinstance(obj, str) or codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"_codecs.encode with {encoding!r} is not allowed")
    return obj.encode("latin-1")


def _numpy_global(module: str, name: str) -> Any:
    # Python-2 era pickles (the real batches) say numpy.core; numpy 2 renamed it numpy._core.
    if module == "numpy.core" or module.startswith("numpy.core."):
        module = "numpy._core" + module[len("numpy.core"):]
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError:  # numpy 1.x has no numpy._core
        return getattr(importlib.import_module(module.replace("numpy._core", "numpy.core")), name)


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
}


class _ArrayUnpickler(pickle.Unpickler):
    """Resolves numpy's array-rebuilding globals (and latin-1 ``_codecs.encode``) only."""

    def __init__(self, data: bytes, origin: str) -> None:
        super().__init__(io.BytesIO(data), encoding="bytes")
        self.origin = origin

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _numpy_global(module, name)
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        raise DatasetError(f"{self.origin}: refusing to unpickle global {module}.{name} (a CIFAR "
                           "batch holds only numpy arrays and lists; the file may be malicious)")


# What a damaged or non-pickle stream makes the unpickler raise (opcodes, memo, array state).
_CORRUPT = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, LookupError,
            OverflowError, MemoryError)


def unpickle(data: bytes, origin: str) -> Any:
    """Unpickle ``data`` (from ``origin``, for messages) allowing numpy arrays only."""
    try:
        return _ArrayUnpickler(data, origin).load()
    except DatasetError:
        raise
    except _CORRUPT as e:
        raise DatasetError(f"{origin}: not a readable CIFAR-10 pickle "
                           f"({type(e).__name__}: {e})") from None


def _field(d: dict, key: str, origin: str) -> Any:
    # The real batches have byte-string keys; accept str keys from a Python-3 re-pickle too.
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    raise DatasetError(f"{origin}: no {key!r} entry, expected a CIFAR-10 batch dict")


def parse_batch(obj: Any, origin: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate one unpickled batch: (uint8 images [N, 3, 32, 32], int64 labels [N])."""
    if not isinstance(obj, dict):
        raise DatasetError(f"{origin}: holds a {type(obj).__name__}, expected a CIFAR-10 "
                           "batch dict")
    data, labels = _field(obj, "data", origin), _field(obj, "labels", origin)
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == PIXELS):
        got = (f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray)
               else type(data).__name__)
        raise DatasetError(f"{origin}: 'data' is a {got}, expected a uint8 array of shape "
                           f"(N, {PIXELS})")
    if len(data) == 0:
        raise DatasetError(f"{origin}: 'data' holds 0 images, expected a CIFAR-10 batch")
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu" or labels.shape != (len(data),):
        raise DatasetError(f"{origin}: 'labels' is {labels.dtype} of shape {labels.shape}, "
                           f"expected {len(data)} integers")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(CLASSES)):
        bad = int(labels.min() if labels.min() < 0 else labels.max())
        raise DatasetError(f"{origin}: label {bad} out of range, expected 0..{len(CLASSES) - 1}")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def parse_meta(obj: Any, origin: str) -> tuple[str, ...]:
    """The ten class names of ``batches.meta``."""
    names = _field(obj, "label_names", origin) if isinstance(obj, dict) else None
    if not (isinstance(names, list) and len(names) == len(CLASSES)
            and all(isinstance(n, bytes | str) for n in names)):
        raise DatasetError(f"{origin}: expected a dict with 'label_names', a list of "
                           f"{len(CLASSES)} strings")
    return tuple(n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in names)


def _member_limit(base: str) -> int:
    return MAX_META_BYTES if base == META else MAX_BATCH_BYTES


def _read_tar_members(tar_path: Path, wanted: set[str]) -> dict[str, bytes]:
    """The members of the tarball whose base name is in ``wanted``, read in one streaming pass
    (nothing is extracted to disk; streaming avoids re-seeking in the gzip stream). Every
    member's declared size is checked before its data is decompressed, and so are their total
    and count: a gzip bomb stops at a header, not at the end of memory."""
    guard(tar_path, what="the CIFAR-10 python version archive", max_bytes=MAX_TARBALL_BYTES)
    found: dict[str, bytes] = {}
    total = 0
    try:
        with tarfile.open(tar_path, mode="r|gz") as tar:
            for count, member in enumerate(tar, 1):
                base = PurePosixPath(member.name).name
                total += member.size
                _check_member(tar_path, member, base in wanted, count, total)
                if member.isfile() and base in wanted and base not in found:
                    found[base] = tar.extractfile(member).read()  # type: ignore[union-attr]
                    if len(found) == len(wanted):
                        break
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise DatasetError(f"{tar_path}: cannot read the tar.gz archive ({e})") from None
    return found


def _check_member(tar_path: Path, member: tarfile.TarInfo, wanted: bool, count: int,
                  total: int) -> None:
    base = PurePosixPath(member.name).name
    if wanted and member.size > _member_limit(base):
        raise DatasetError(f"{tar_path}: member {member.name} declares {member.size:,} bytes, "
                           f"more than the {_member_limit(base):,} a CIFAR-10 {base} may have")
    if count > MAX_TAR_MEMBERS:
        raise DatasetError(f"{tar_path}: more than {MAX_TAR_MEMBERS} members; the CIFAR-10 "
                           "python version archive has 8")
    if total > MAX_TAR_TOTAL:
        raise DatasetError(f"{tar_path}: members declare more than {MAX_TAR_TOTAL:,} bytes in "
                           f"all (at {member.name}); the CIFAR-10 python version unpacks to "
                           "186 MB")


def _batches_from_tar(tar_path: Path, names: tuple[str, ...]) -> dict[str, tuple[bytes, str]]:
    found = _read_tar_members(tar_path, {*names, META})
    for name in names:
        if name not in found:
            raise DatasetError(f"{tar_path}: no member {FOLDER}/{name}, expected the CIFAR-10 "
                               "python version archive")
    return {n: (data, f"{tar_path}[{FOLDER}/{n}]") for n, data in found.items()}


def load_cifar10(split: str,
                 data_dir: Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], str]:
    """(uint8 images [N, 3, 32, 32], labels [N], class names, source) of CIFAR-10's ``split``.

    Looks for the batches in ``data_dir`` and ``data_dir/cifar-10-batches-py``; if any is
    missing there, reads ``data_dir/cifar-10-python.tar.gz`` directly. ``batches.meta`` is
    optional (the class names are fixed); when present it is validated and used.
    """
    names = TRAIN_BATCHES if split == "train" else TEST_BATCHES
    dirs = [data_dir, data_dir / FOLDER]
    paths = {n: find_file(dirs, (n,)) for n in (*names, META)}
    missing = [n for n in names if paths[n] is None]
    if not missing:
        blobs = {n: (read_bytes(p, what=f"a CIFAR-10 {n} file", max_bytes=_member_limit(n)),
                     str(p)) for n, p in paths.items() if p is not None}
    elif os.path.lexists(data_dir / TARBALL):  # a pipe or device there is refused by name
        blobs = _batches_from_tar(data_dir / TARBALL, names)
    else:
        raise DatasetError(f"cifar10: no {missing[0]} in {list_dirs(dirs)} and no "
                           f"{data_dir / TARBALL} (download the CIFAR-10 python version and "
                           "pass --data-dir)")
    parts = [parse_batch(unpickle(*blobs[n]), blobs[n][1]) for n in names]
    classes = parse_meta(unpickle(*blobs[META]), blobs[META][1]) if META in blobs else CLASSES
    images = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
    labels = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
    return images, labels, classes, ", ".join(origin for _, origin in blobs.values())
