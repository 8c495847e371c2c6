"""``load_dataset``: the image datasets the toolchain trains and evaluates on, as tensors in
[-1, 1] (the diffusion models' data range). Nothing is ever downloaded: ``digits`` ships with
scikit-learn; the others are read from files the user already has (``--data-dir``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from ..errors import DatasetError, UsageError
from .cifar import load_cifar10
from .idx import load_idx_dataset

DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10")
SPLITS = ("train", "test")

DIGITS_COUNT = 1797
DIGITS_TEST = 300
DIGITS_SEED = 0

_HINT = {
    "mnist": "a directory holding the four MNIST IDX files",
    "fashion-mnist": "a directory holding the four Fashion-MNIST IDX files",
    "cifar10": "a directory holding the CIFAR-10 python version (cifar-10-batches-py/ or "
               "cifar-10-python.tar.gz)",
}


@dataclass(frozen=True, eq=False, repr=False)  # eq/repr on tensors would be ambiguous / huge
class ImageDataset:
    """One split of a dataset: ``images`` float32 [N, C, H, W] in [-1, 1], ``labels`` int64 [N]."""

    name: str
    split: str
    images: torch.Tensor
    labels: torch.Tensor
    class_names: tuple[str, ...]
    source: str

    def __post_init__(self) -> None:
        if self.images.dtype != torch.float32 or self.images.ndim != 4:
            raise ValueError(f"images must be float32 [N, C, H, W], got {self.images.dtype} "
                             f"{tuple(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.shape != self.images.shape[:1]:
            raise ValueError(f"labels must be int64 [{len(self.images)}], got "
                             f"{self.labels.dtype} {tuple(self.labels.shape)}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self.images.shape[1:]
        return (c, h, w)

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        return (f"ImageDataset(name={self.name!r}, split={self.split!r}, n={len(self)}, "
                f"image_shape={self.image_shape}, num_classes={self.num_classes}, "
                f"source={self.source!r})")


def load_dataset(name: str, *, split: str = "train", data_dir: str | os.PathLike | None = None,
                 img_size: int | None = None) -> ImageDataset:
    """Load one split of ``name`` (see ``DATASETS``) as an :class:`ImageDataset`.

    ``img_size=None`` keeps the native size (digits 8, MNIST 28, CIFAR-10 32); otherwise images
    are resized bilinearly to ``img_size`` square (antialiased when shrinking).

    - ``digits``: scikit-learn's bundled 1,797 8x8 digits (``data_dir`` is ignored). They have
      no official split, so one is fixed here: ``perm = np.random.default_rng(0)
      .permutation(1797)``; ``train`` is ``perm[:1497]``, ``test`` the 300 images
      ``perm[1497:]``, each in the order of ``perm``.
    - ``mnist`` / ``fashion-mnist``: the four IDX files (``train-images-idx3-ubyte``,
      ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``),
      gzipped or not, in ``data_dir``, ``data_dir/raw`` or torchvision's
      ``data_dir/MNIST/raw`` / ``data_dir/FashionMNIST/raw``.
    - ``cifar10``: the python-version batches in ``data_dir`` or
      ``data_dir/cifar-10-batches-py``, or ``data_dir/cifar-10-python.tar.gz`` read in place.

    Raises UsageError for a bad name, split or size, DatasetError for missing/malformed files.
    """
    if name not in DATASETS:
        raise UsageError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise UsageError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if img_size is not None and (isinstance(img_size, bool) or not isinstance(img_size, int)
                                 or img_size < 1):
        raise UsageError(f"img_size must be a positive integer, got {img_size!r}")
    if name == "digits":
        return _digits(split, img_size)
    root = _data_root(name, data_dir)
    if name == "cifar10":
        images, labels, classes, source = load_cifar10(split, root)
    else:
        images, labels, classes, source = load_idx_dataset(name, split, root)
        images = images[:, None]
    x = torch.from_numpy(images.astype(np.float32)).div_(255.0)
    labels_t = torch.from_numpy(labels.astype(np.int64))
    return ImageDataset(name, split, _finish(x, img_size), labels_t,
                        classes, source)


def digits_split(split: str) -> np.ndarray:
    """Indices of the digits ``split`` (the fixed seed-0 permutation, see ``load_dataset``)."""
    perm = np.random.default_rng(DIGITS_SEED).permutation(DIGITS_COUNT)
    cut = DIGITS_COUNT - DIGITS_TEST
    return perm[:cut] if split == "train" else perm[cut:]


def _digits(split: str, img_size: int | None) -> ImageDataset:
    from sklearn.datasets import load_digits  # slow import: only when asked for

    bunch = load_digits()
    # Same expression as examples/quickstart.py, so both give bit-identical tensors.
    x = torch.tensor(bunch.images, dtype=torch.float32)[:, None] / 16.0
    idx = torch.from_numpy(digits_split(split))
    labels = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))[idx]
    return ImageDataset("digits", split, _finish(x, img_size)[idx].contiguous(), labels,
                        tuple(str(i) for i in range(10)), "scikit-learn load_digits")


def _finish(x: torch.Tensor, img_size: int | None) -> torch.Tensor:
    """[N, C, H, W] in [0, 1] -> resized (if asked) and mapped to [-1, 1]."""
    if img_size is not None and x.shape[-2:] != (img_size, img_size):
        shrink = img_size < max(x.shape[-2:])
        x = F.interpolate(x, size=(img_size, img_size), mode="bilinear", align_corners=False,
                          antialias=shrink)
    return x.clamp(0, 1) * 2 - 1


def _data_root(name: str, data_dir: str | os.PathLike | None) -> Path:
    if data_dir is None:
        raise DatasetError(f"{name}: needs --data-dir ({_HINT[name]}); nothing is downloaded")
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{name}: data directory {root} does not exist or is not a directory")
    return root
