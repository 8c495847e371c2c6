"""Dataset loaders: digits (bundled with scikit-learn), MNIST, Fashion-MNIST and CIFAR-10 (from
files on disk; nothing is downloaded), as float32 images in [-1, 1]."""

from __future__ import annotations

from .datasets import DATASETS, ImageDataset, load_dataset

__all__ = ["DATASETS", "ImageDataset", "load_dataset"]
