"""MNIST and Fashion-MNIST from their IDX files (the format of the original distributions).

IDX layout: two zero bytes, a data-type code (0x08 = unsigned byte), the number of dimensions,
then one big-endian int32 per dimension, then the row-major payload. Parsed with numpy alone
(no torchvision) and validated field by field so a wrong or damaged file fails with a message.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import DatasetError
from ._files import find_file, list_dirs, read_bytes

UBYTE = 0x08
IDX_TYPES = {0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "int16", 0x0C: "int32",
             0x0D: "float32", 0x0E: "float64"}
IMAGE_HW = (28, 28)
NUM_CLASSES = 10

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")
MNIST_CLASSES = tuple(str(i) for i in range(NUM_CLASSES))

# dataset -> (torchvision's folder name, name of the distribution for the hint)
_LAYOUT = {"mnist": ("MNIST", "MNIST"), "fashion-mnist": ("FashionMNIST", "Fashion-MNIST")}
_PREFIX = {"train": "train", "test": "t10k"}


def read_idx(path: Path, *, ndim: int) -> np.ndarray:
    """A uint8 IDX file (plain or gzipped) as a read-only array of ``ndim`` dimensions."""
    raw = read_bytes(path, gunzip=True)
    if len(raw) < 4:
        raise DatasetError(f"{path}: not an IDX file ({len(raw)} bytes, shorter than a header)")
    magic = int.from_bytes(raw[:4], "big")
    expected = (UBYTE << 8) | ndim
    if raw[0] or raw[1]:
        raise DatasetError(f"{path}: not an IDX file (magic 0x{magic:08x}, "
                           f"expected 0x{expected:08x})")
    if raw[2] != UBYTE:
        kind = IDX_TYPES.get(raw[2], "unknown")
        raise DatasetError(f"{path}: IDX data type 0x{raw[2]:02x} ({kind}), "
                           f"expected 0x{UBYTE:02x} (unsigned byte)")
    if raw[3] != ndim:
        raise DatasetError(f"{path}: IDX file has {raw[3]} dimension(s), expected {ndim}")
    start = 4 + 4 * ndim
    if len(raw) < start:
        raise DatasetError(f"{path}: truncated: IDX header needs {start} bytes, "
                           f"file has {len(raw)}")
    dims = tuple(int(v) for v in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    size, have = math.prod(dims), len(raw) - start
    if have != size:
        what = "truncated" if have < size else "trailing data"
        shape = "x".join(map(str, dims))
        raise DatasetError(f"{path}: {what}: header says {shape} = {size} bytes, file has {have}")
    return np.frombuffer(raw, dtype=np.uint8, offset=start).reshape(dims)


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
    images, labels = read_idx(img_path, ndim=3), read_idx(lbl_path, ndim=1)
    if images.shape[1:] != IMAGE_HW:
        raise DatasetError(f"{img_path}: images are {images.shape[1]}x{images.shape[2]}, "
                           f"expected {IMAGE_HW[0]}x{IMAGE_HW[1]}")
    if len(images) != len(labels):
        raise DatasetError(f"{lbl_path}: {len(labels)} labels, expected {len(images)} "
                           f"(the image count of {img_path})")
    if len(labels) and int(labels.max()) >= NUM_CLASSES:
        raise DatasetError(f"{lbl_path}: label {int(labels.max())} out of range, "
                           f"expected 0..{NUM_CLASSES - 1}")
    classes = FASHION_CLASSES if name == "fashion-mnist" else MNIST_CLASSES
    return images, labels, classes, f"{img_path}, {lbl_path}"
