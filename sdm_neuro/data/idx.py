"""MNIST and Fashion-MNIST from their IDX files (the format of the original distributions).

IDX layout: two zero bytes, a data-type code (0x08 = unsigned byte), the number of dimensions,
then one big-endian unsigned 32-bit size per dimension, then the row-major payload. Parsed with
numpy alone (no torchvision) and validated field by field so a wrong or damaged file fails with a
message; the sizes are checked against the distribution's before the payload is read.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import DatasetError
from ._files import find_file, guard, list_dirs, open_maybe_gzip, read_upto

UBYTE = 0x08
IDX_TYPES = {0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "int16", 0x0C: "int32",
             0x0D: "float32", 0x0E: "float64"}
IMAGE_HW = (28, 28)
NUM_CLASSES = 10
# The image (and label) counts of the MNIST / Fashion-MNIST distribution files: a header that
# declares more is refused before its payload is read.
MAX_COUNT = {"train": 60_000, "test": 10_000}

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")
MNIST_CLASSES = tuple(str(i) for i in range(NUM_CLASSES))

# dataset -> (torchvision's folder name, name of the distribution for the hint)
_LAYOUT = {"mnist": ("MNIST", "MNIST"), "fashion-mnist": ("FashionMNIST", "Fashion-MNIST")}
_PREFIX = {"train": "train", "test": "t10k"}


def read_idx(path: Path, *, ndim: int, check_dims: Callable[[tuple[int, ...]], None],
             max_bytes: int) -> np.ndarray:
    """A uint8 IDX file (plain or gzipped) as a read-only array of ``ndim`` dimensions.

    ``check_dims`` validates the header's sizes against the dataset's limits before the payload
    is read; then exactly the declared bytes are read, plus one to detect trailing data, so a
    gzip bomb is never decompressed beyond that. ``max_bytes`` bounds the file itself.
    """
    guard(path, what="an IDX file", max_bytes=max_bytes)
    with open_maybe_gzip(path) as (stream, gzipped):
        head = read_upto(stream, 4, path, gzipped)
        _check_magic(path, head, ndim)
        start = 4 + 4 * ndim
        raw_dims = read_upto(stream, 4 * ndim, path, gzipped)
        if len(raw_dims) < 4 * ndim:
            raise DatasetError(f"{path}: truncated: IDX header needs {start} bytes, "
                               f"file has {4 + len(raw_dims)}")
        # The sizes are unsigned big-endian 32-bit integers.
        dims = tuple(int(v) for v in np.frombuffer(raw_dims, dtype=">u4"))
        check_dims(dims)
        size = math.prod(dims)
        payload = read_upto(stream, size + 1, path, gzipped)
    have = len(payload)
    if have != size:
        shape = "x".join(map(str, dims))
        if have < size:
            raise DatasetError(f"{path}: truncated: header says {shape} = {size} bytes, "
                               f"file has {have}")
        extra = (f"file has {path.stat().st_size - start}" if not gzipped else
                 f"the decompressed data goes on past them (read stopped at {size + 1})")
        raise DatasetError(f"{path}: trailing data: header says {shape} = {size} bytes, {extra}")
    return np.frombuffer(payload, dtype=np.uint8).reshape(dims)


def _check_magic(path: Path, head: bytes, ndim: int) -> None:
    if len(head) < 4:
        raise DatasetError(f"{path}: not an IDX file ({len(head)} bytes, shorter than a header)")
    magic = int.from_bytes(head, "big")
    expected = (UBYTE << 8) | ndim
    if head[0] or head[1]:
        raise DatasetError(f"{path}: not an IDX file (magic 0x{magic:08x}, "
                           f"expected 0x{expected:08x})")
    if head[2] != UBYTE:
        kind = IDX_TYPES.get(head[2], "unknown")
        raise DatasetError(f"{path}: IDX data type 0x{head[2]:02x} ({kind}), "
                           f"expected 0x{UBYTE:02x} (unsigned byte)")
    if head[3] != ndim:
        raise DatasetError(f"{path}: IDX file has {head[3]} dimension(s), expected {ndim}")


def idx_limit(ndim: int, max_dims: tuple[int, ...]) -> int:
    """The largest a file of these dimensions may be: header + payload, with room for gzip's
    framing of incompressible data (a few bytes per 16 KiB block) and headers."""
    size = 4 + 4 * ndim + math.prod(max_dims)
    return size + size // 64 + 4096


def _count_check(path: Path, split: str, what: str) -> Callable[[int], None]:
    limit = MAX_COUNT[split]

    def check(n: int) -> None:
        if n == 0:
            raise DatasetError(f"{path}: header declares 0 {what}; expected 1 to {limit:,}")
        if n > limit:
            raise DatasetError(f"{path}: header declares {n:,} {what}, more than the {limit:,} "
                               f"of the {split} split of MNIST / Fashion-MNIST")
    return check


def _image_dims_check(path: Path, split: str) -> Callable[[tuple[int, ...]], None]:
    count = _count_check(path, split, "images")

    def check(dims: tuple[int, ...]) -> None:
        if dims[1:] != IMAGE_HW:
            raise DatasetError(f"{path}: images are {dims[1]}x{dims[2]}, "
                               f"expected {IMAGE_HW[0]}x{IMAGE_HW[1]}")
        count(dims[0])
    return check


def search_dirs(name: str, data_dir: Path) -> list[Path]:
    """Where the IDX files may be: the directory itself, ``raw/``, and torchvision's layout."""
    return [data_dir, data_dir / "raw", data_dir / _LAYOUT[name][0] / "raw"]


def _locate(name: str, stem: str, dirs: list[Path]) -> Path:
    path = find_file(dirs, (stem, stem + ".gz"))
    if path is None:
        raise DatasetError(f"{name}: no {stem}[.gz] in {list_dirs(dirs)} (download the four IDX "
                           f"files from the {_LAYOUT[name][1]} distribution and pass --data-dir)")
    return path


def load_idx_dataset(name: str, split: str,
                     data_dir: Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], str]:
    """(uint8 images [N, 28, 28], labels [N], class names, source) of ``name``'s ``split``."""
    dirs = search_dirs(name, data_dir)
    prefix = _PREFIX[split]
    img_path = _locate(name, f"{prefix}-images-idx3-ubyte", dirs)
    lbl_path = _locate(name, f"{prefix}-labels-idx1-ubyte", dirs)
    n_max = MAX_COUNT[split]
    images = read_idx(img_path, ndim=3, check_dims=_image_dims_check(img_path, split),
                      max_bytes=idx_limit(3, (n_max, *IMAGE_HW)))
    label_count = _count_check(lbl_path, split, "labels")
    labels = read_idx(lbl_path, ndim=1, check_dims=lambda dims: label_count(dims[0]),
                      max_bytes=idx_limit(1, (n_max,)))
    if len(images) != len(labels):
        raise DatasetError(f"{lbl_path}: {len(labels)} labels, expected {len(images)} "
                           f"(the image count of {img_path})")
    if len(labels) and int(labels.max()) >= NUM_CLASSES:
        raise DatasetError(f"{lbl_path}: label {int(labels.max())} out of range, "
                           f"expected 0..{NUM_CLASSES - 1}")
    classes = FASHION_CLASSES if name == "fashion-mnist" else MNIST_CLASSES
    return images, labels, classes, f"{img_path}, {lbl_path}"
