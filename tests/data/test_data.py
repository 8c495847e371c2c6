"""Dataset loaders: tiny files in the real formats (IDX, CIFAR-10 pickles, the tarball), exact
pixels and labels, split selection, resizing, and a clean DatasetError for every malformed file,
including pickles that try to run code."""

from __future__ import annotations

import builtins
import dataclasses
import gzip
import io
import os
import pickle
import re
import struct
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from sdm_neuro.data import DATASETS, ImageDataset, load_dataset
from sdm_neuro.data.datasets import digits_split
from sdm_neuro.errors import DatasetError, UsageError

RNG = np.random.default_rng(1)
TRAIN_IMAGES = RNG.integers(0, 256, (5, 28, 28), dtype=np.uint8)
TRAIN_LABELS = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
TEST_IMAGES = RNG.integers(0, 256, (3, 28, 28), dtype=np.uint8)
TEST_LABELS = np.array([9, 2, 6], dtype=np.uint8)


def idx_bytes(arr: np.ndarray, *, dtype_code: int = 0x08, ndim: int | None = None) -> bytes:
    ndim = arr.ndim if ndim is None else ndim
    header = bytes([0, 0, dtype_code, ndim]) + np.array(arr.shape, dtype=">i4").tobytes()
    return header + arr.astype(np.uint8).tobytes()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def write_mnist(root: Path, *, gz: bool = False) -> Path:
    ext = ".gz" if gz else ""
    for prefix, images, labels in (("train", TRAIN_IMAGES, TRAIN_LABELS),
                                   ("t10k", TEST_IMAGES, TEST_LABELS)):
        write(root / f"{prefix}-images-idx3-ubyte{ext}", idx_bytes(images))
        write(root / f"{prefix}-labels-idx1-ubyte{ext}", idx_bytes(labels))
    return root


def expected(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, C, H, W] -> the documented scaling: /255, then [0, 1] -> [-1, 1]."""
    return torch.tensor(images, dtype=torch.float32) / 255.0 * 2 - 1


# --- MNIST / Fashion-MNIST -------------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True])
def test_mnist_exact_pixels_labels_and_splits(tmp_path, gz):
    write_mnist(tmp_path, gz=gz)
    train = load_dataset("mnist", data_dir=tmp_path)
    assert isinstance(train, ImageDataset) and (train.name, train.split) == ("mnist", "train")
    assert train.images.dtype == torch.float32 and train.labels.dtype == torch.int64
    assert train.images.shape == (5, 1, 28, 28) and len(train) == 5
    assert train.image_shape == (1, 28, 28) and train.num_classes == 10
    assert torch.equal(train.images, expected(TRAIN_IMAGES[:, None]))
    assert train.labels.tolist() == TRAIN_LABELS.tolist()
    assert train.class_names == tuple("0123456789")
    assert f"train-images-idx3-ubyte{'.gz' if gz else ''}" in train.source

    test = load_dataset("mnist", split="test", data_dir=str(tmp_path))
    assert test.images.shape == (3, 1, 28, 28) and test.labels.tolist() == [9, 2, 6]
    assert torch.equal(test.images, expected(TEST_IMAGES[:, None]))
    assert "t10k-labels-idx1-ubyte" in test.source


@pytest.mark.parametrize("sub", ["raw", "FashionMNIST/raw"])
def test_fashion_mnist_in_raw_and_torchvision_layout(tmp_path, sub):
    write_mnist(tmp_path / sub, gz=True)
    ds = load_dataset("fashion-mnist", split="test", data_dir=tmp_path)
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[-1] == "Ankle boot"
    assert ds.num_classes == 10 and torch.equal(ds.images, expected(TEST_IMAGES[:, None]))
    assert str(tmp_path / sub) in ds.source


def test_gzip_content_without_gz_suffix_is_read(tmp_path):
    """Browsers often gunzip on download but keep the name, or the reverse: go by content."""
    write_mnist(tmp_path)
    p = tmp_path / "train-images-idx3-ubyte"
    p.write_bytes(gzip.compress(p.read_bytes()))
    assert torch.equal(load_dataset("mnist", data_dir=tmp_path).images,
                       expected(TRAIN_IMAGES[:, None]))


@pytest.mark.parametrize("size", [14, 40])
def test_resize_bilinear_antialias_only_when_shrinking(tmp_path, size):
    write_mnist(tmp_path)
    ds = load_dataset("mnist", data_dir=tmp_path, img_size=size)
    x = torch.tensor(TRAIN_IMAGES[:, None], dtype=torch.float32) / 255.0
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                      antialias=size < 28)
    assert ds.images.shape == (5, 1, size, size) and ds.image_shape == (1, size, size)
    assert torch.equal(ds.images, x.clamp(0, 1) * 2 - 1)
    assert ds.images.min() >= -1 and ds.images.max() <= 1


def _mnist_case(root: Path, case: str) -> tuple[str, str]:
    """Damage one file of a good MNIST directory; return (file name, message regex)."""
    img, lbl = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"
    if case == "magic":
        write(root / img, b"\x12\x34" + idx_bytes(TRAIN_IMAGES)[2:])
        return img, r"not an IDX file \(magic 0x12340803, expected 0x00000803\)"
    if case == "dtype":
        write(root / img, idx_bytes(TRAIN_IMAGES, dtype_code=0x0D))
        return img, r"IDX data type 0x0d \(float32\), expected 0x08"
    if case == "ndim":
        write(root / lbl, idx_bytes(TRAIN_IMAGES))
        return lbl, r"3 dimension\(s\), expected 1"
    if case == "truncated":
        write(root / img, idx_bytes(TRAIN_IMAGES)[:-100])
        return img, r"truncated: header says 5x28x28 = 3920 bytes, file has 3820"
    if case == "trailing":
        write(root / img, idx_bytes(TRAIN_IMAGES) + b"\0")
        return img, r"trailing data: header says 5x28x28 = 3920 bytes, file has 3921"
    if case == "short":
        write(root / img, b"\0\0")
        return img, r"not an IDX file"
    if case == "count":
        write(root / lbl, idx_bytes(TRAIN_LABELS[:4]))
        return lbl, r"4 labels, expected 5"
    if case == "label":
        write(root / lbl, idx_bytes(np.array([3, 1, 10, 1, 5])))
        return lbl, r"label 10 out of range, expected 0\.\.9"
    if case == "size":
        write(root / img, idx_bytes(np.zeros((5, 32, 32), np.uint8)))
        return img, r"images are 32x32, expected 28x28"
    if case == "gzip":
        (root / img).unlink()
        write(root / f"{img}.gz", b"")
        (root / f"{img}.gz").write_bytes(gzip.compress(idx_bytes(TRAIN_IMAGES))[:-20])
        return f"{img}.gz", r"corrupt gzip data"
    if case == "missing":
        (root / lbl).unlink()
        return lbl, (rf"mnist: no {lbl}\[\.gz\] in {re.escape(str(root))}, .*MNIST/raw "
                     r"\(download the four IDX files .* --data-dir\)")
    raise ValueError(case)


@pytest.mark.parametrize("case", ["magic", "dtype", "ndim", "truncated", "trailing", "short",
                                  "count", "label", "size", "gzip", "missing"])
def test_malformed_idx_raises_dataset_error_naming_the_file(tmp_path, case):
    write_mnist(tmp_path)
    name, pattern = _mnist_case(tmp_path, case)
    with pytest.raises(DatasetError, match=pattern) as err:
        load_dataset("mnist", data_dir=tmp_path)
    assert name in str(err.value) and "\n" not in str(err.value)
    if case != "missing":
        assert str(err.value).startswith(f"{tmp_path / name}: ")


# --- digits ----------------------------------------------------------------------------------

def quickstart_digits(img_size: int) -> torch.Tensor:
    """examples/quickstart.py's formula, verbatim."""
    from sklearn.datasets import load_digits

    x = torch.tensor(load_digits().images, dtype=torch.float32)[:, None] / 16.0
    x = F.interpolate(x, size=(img_size, img_size), mode="bilinear", align_corners=False)
    return x.clamp(0, 1) * 2 - 1


def test_digits_fixed_split_matches_quickstart():
    perm = np.random.default_rng(0).permutation(1797)
    train_idx, test_idx = digits_split("train"), digits_split("test")
    assert np.array_equal(train_idx, perm[:1497]) and np.array_equal(test_idx, perm[1497:])
    assert not set(train_idx) & set(test_idx) and set(train_idx) | set(test_idx) == set(range(1797))

    full = quickstart_digits(16)
    train = load_dataset("digits", img_size=16, data_dir="/ignored")
    test = load_dataset("digits", split="test", img_size=16)
    assert len(train) == 1497 and len(test) == 300 and test.image_shape == (1, 16, 16)
    assert torch.equal(train.images, full[perm[:1497]])
    assert torch.equal(test.images, full[perm[1497:]])
    assert train.source == "scikit-learn load_digits" and train.num_classes == 10

    native = load_dataset("digits", split="test")
    assert native.image_shape == (1, 8, 8)
    assert torch.equal(native.images, quickstart_digits(8)[perm[1497:]])
    from sklearn.datasets import load_digits
    assert native.labels.tolist() == load_digits().target[perm[1497:]].tolist()


# --- CIFAR-10 --------------------------------------------------------------------------------

META_NAMES = [b"plane", b"car", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship",
              b"truck"]


def cifar_batch(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {b"batch_label": b"batch", b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"labels": rng.integers(0, 10, n).tolist(), b"filenames": [b"x.png"] * n}


def write_pickle(path: Path, obj: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)
    return path


class Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 ``str`` opcodes (SHORT_BINSTRING/BINSTRING), as the real CIFAR-10
    batches have them; Python 3 would write ``_codecs.encode(..., 'latin1')`` calls instead."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj: bytes) -> None:
        n = len(obj)
        self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj if n < 256
                   else pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def write_py2_pickle(path: Path, obj: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    data = buf.getvalue().replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    assert b"_codecs" not in data and b"numpy.core.multiarray" in data
    path.write_bytes(data)
    return path


def write_cifar(root: Path) -> dict[str, dict]:
    batches = {f"data_batch_{i}": cifar_batch(1 + i % 3, i) for i in range(1, 6)}
    batches["test_batch"] = cifar_batch(4, 99)
    for name, batch in batches.items():
        # data_batch_2 in the real files' Python 2 format, the others as Python 3 writes them
        (write_py2_pickle if name == "data_batch_2" else write_pickle)(root / name, batch)
    write_pickle(root / "batches.meta", {b"label_names": META_NAMES, b"num_vis": 3072})
    return batches


def check_cifar(ds: ImageDataset, batches: list[dict]) -> None:
    data = np.concatenate([b[b"data"] for b in batches])
    assert ds.images.shape == (len(data), 3, 32, 32) and ds.image_shape == (3, 32, 32)
    assert torch.equal(ds.images, expected(data.reshape(-1, 3, 32, 32)))
    # Row layout: R plane, then G, then B; each 32x32 row-major.
    assert ds.images[0, 1, 2, 5] == expected(data[0, 1024 + 2 * 32 + 5])
    assert ds.labels.tolist() == [y for b in batches for y in b[b"labels"]]


@pytest.mark.parametrize("sub", ["", "cifar-10-batches-py"])
def test_cifar10_batches_splits_and_meta(tmp_path, sub):
    batches = write_cifar(tmp_path / sub)
    with warnings.catch_warnings():  # numpy.core (Python 2 era name) is mapped, not imported
        warnings.simplefilter("error")
        train = load_dataset("cifar10", data_dir=tmp_path)
    check_cifar(train, [batches[f"data_batch_{i}"] for i in range(1, 6)])
    assert train.class_names[:2] == ("plane", "car") and train.num_classes == 10
    test = load_dataset("cifar10", split="test", data_dir=tmp_path)
    check_cifar(test, [batches["test_batch"]])
    assert str(tmp_path / sub / "test_batch") in test.source
    assert load_dataset("cifar10", split="test", data_dir=tmp_path, img_size=8).images.shape == (
        4, 3, 8, 8)


def test_cifar10_without_meta_uses_standard_names(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "batches.meta").unlink()
    ds = load_dataset("cifar10", split="test", data_dir=tmp_path)
    assert ds.class_names[0] == "airplane" and ds.class_names[-1] == "truck"


def test_cifar10_read_from_tarball_in_place(tmp_path):
    src = tmp_path / "src"
    batches = write_cifar(src / "cifar-10-batches-py")
    data = tmp_path / "data"
    data.mkdir()
    with tarfile.open(data / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    test = load_dataset("cifar10", split="test", data_dir=data)
    check_cifar(test, [batches["test_batch"]])
    assert test.class_names[0] == "plane" and "cifar-10-python.tar.gz[" in test.source
    assert list(data.iterdir()) == [data / "cifar-10-python.tar.gz"]  # nothing extracted


class RunsShell:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path):
    write_cifar(tmp_path)
    marker = tmp_path / "pwned"
    write_pickle(tmp_path / "test_batch", {b"data": RunsShell(marker), b"labels": []})
    with pytest.raises(DatasetError, match=r"test_batch: refusing to unpickle global "
                                           r"(posix|os|nt)\.system"):
        load_dataset("cifar10", split="test", data_dir=tmp_path)
    assert not marker.exists()

    write_pickle(tmp_path / "batches.meta", builtins.eval)
    with pytest.raises(DatasetError, match=r"batches\.meta: refusing to unpickle global "
                                           r"(__builtin__|builtins)\.eval"):
        load_dataset("cifar10", split="train", data_dir=tmp_path)


def test_codecs_encode_is_limited_to_latin1(tmp_path):
    """Protocol-2 pickles from Python 3 rebuild bytes with _codecs.encode(s, 'latin1'); no other
    codec is reachable through it."""
    write_cifar(tmp_path)
    (tmp_path / "test_batch").write_bytes(b"c_codecs\nencode\n(Vabc\nVzlib_codec\ntR.")
    with pytest.raises(DatasetError, match=r"test_batch: not a readable CIFAR-10 pickle .*zlib"):
        load_dataset("cifar10", split="test", data_dir=tmp_path)


def _cifar_case(root: Path, case: str) -> tuple[str, str]:
    good = cifar_batch(4, 99)
    if case == "shape":
        write_pickle(root / "test_batch", {**good, b"data": good[b"data"][:, :3000]})
        return "test_batch", r"uint8 array of shape \(4, 3000\), expected .*\(N, 3072\)"
    if case == "dtype":
        write_pickle(root / "test_batch", {**good, b"data": good[b"data"].astype(np.float32)})
        return "test_batch", r"float32 array .* expected a uint8 array"
    if case == "label":
        write_pickle(root / "test_batch", {**good, b"labels": [0, 1, 10, 2]})
        return "test_batch", r"label 10 out of range"
    if case == "count":
        write_pickle(root / "test_batch", {**good, b"labels": [0, 1]})
        return "test_batch", r"expected 4 integers"
    if case == "not-dict":
        write_pickle(root / "test_batch", [good])
        return "test_batch", r"holds a list, expected a CIFAR-10 batch dict"
    if case == "no-key":
        write_pickle(root / "test_batch", {b"data": good[b"data"]})
        return "test_batch", r"no 'labels' entry"
    if case == "truncated":
        (root / "test_batch").write_bytes((root / "test_batch").read_bytes()[:500])
        return "test_batch", r"not a readable CIFAR-10 pickle"
    if case == "empty":
        # protocol 4: protocol 2 rebuilds empty bytes with builtins.bytes, which is refused
        (root / "test_batch").write_bytes(pickle.dumps(
            {**good, b"data": good[b"data"][:0], b"labels": []}, protocol=4))
        return "test_batch", r"'data' holds 0 images"
    if case == "meta":
        write_pickle(root / "batches.meta", {b"label_names": META_NAMES[:3]})
        return "batches.meta", r"'label_names', a list of 10 strings"
    if case == "missing":
        (root / "test_batch").unlink()
        return "test_batch", (rf"cifar10: no test_batch in {re.escape(str(root))}, "
                              r".*cifar-10-batches-py and no .*cifar-10-python\.tar\.gz")
    raise ValueError(case)


@pytest.mark.parametrize("case", ["shape", "dtype", "label", "count", "not-dict", "no-key",
                                  "truncated", "empty", "meta", "missing"])
def test_malformed_cifar_raises_dataset_error_naming_the_file(tmp_path, case):
    write_cifar(tmp_path)
    name, pattern = _cifar_case(tmp_path, case)
    with pytest.raises(DatasetError, match=pattern) as err:
        load_dataset("cifar10", split="test", data_dir=tmp_path)
    assert name in str(err.value)
    if case != "missing":
        assert str(err.value).startswith(f"{tmp_path / name}: ")


def test_bad_tarball_is_a_dataset_error(tmp_path):
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(gzip.compress(b"not a tar"))
    with pytest.raises(DatasetError, match=r"cifar-10-python\.tar\.gz: cannot read"):
        load_dataset("cifar10", data_dir=tmp_path)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz"):
        pass
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(buf.getvalue())
    with pytest.raises(DatasetError, match=r"tar\.gz: no member cifar-10-batches-py/data_batch_1"):
        load_dataset("cifar10", data_dir=tmp_path)


# --- arguments and the dataclass -------------------------------------------------------------

def test_bad_arguments(tmp_path):
    assert DATASETS == ("digits", "mnist", "fashion-mnist", "cifar10")
    with pytest.raises(UsageError, match="unknown dataset 'svhn'; choose one of digits, mnist, "
                                         "fashion-mnist, cifar10"):
        load_dataset("svhn")
    with pytest.raises(UsageError, match="unknown split 'val'; choose one of train, test"):
        load_dataset("digits", split="val")
    with pytest.raises(UsageError, match="img_size must be a positive integer"):
        load_dataset("digits", img_size=0)
    for name in ("mnist", "fashion-mnist", "cifar10"):
        with pytest.raises(DatasetError, match=rf"{name}: needs --data-dir"):
            load_dataset(name)
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset("mnist", data_dir=tmp_path / "nope")


def test_image_dataset_is_frozen_and_checked():
    ds = ImageDataset("digits", "train", torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.long),
                      ("a", "b", "c"), "test")
    assert (len(ds), ds.num_classes, ds.image_shape) == (2, 3, (1, 4, 4))
    assert "n=2" in repr(ds)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.name = "mnist"  # type: ignore[misc]
    with pytest.raises(ValueError, match="labels must be int64"):
        ImageDataset("digits", "train", torch.zeros(2, 1, 4, 4), torch.zeros(3, dtype=torch.long),
                     (), "test")


# --- files that are not regular files, declared sizes beyond the dataset's, gzip bombs ---------

def test_pipes_and_devices_among_idx_files_are_refused_by_name(tmp_path):
    write_mnist(tmp_path)
    img = tmp_path / "train-images-idx3-ubyte"
    img.unlink()
    os.mkfifo(img)  # reading it would block forever: refused before it is opened
    with pytest.raises(DatasetError, match=rf"^{re.escape(str(img))}: is a named pipe, not an "
                                           r"IDX file"):
        load_dataset("mnist", data_dir=tmp_path)
    img.unlink()
    write(img, idx_bytes(TRAIN_IMAGES))
    lbl = tmp_path / "train-labels-idx1-ubyte"
    lbl.unlink()
    (tmp_path / "train-labels-idx1-ubyte.gz").symlink_to("/dev/zero")  # would never end
    with pytest.raises(DatasetError, match=r"train-labels-idx1-ubyte\.gz: is a device, not an "
                                           r"IDX file"):
        load_dataset("mnist", data_dir=tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    lbl.mkdir()
    with pytest.raises(DatasetError, match=r"train-labels-idx1-ubyte: is a directory"):
        load_dataset("mnist", data_dir=tmp_path)


def test_pipes_and_devices_among_cifar_files_are_refused_by_name(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "test_batch").unlink()
    os.mkfifo(tmp_path / "test_batch")
    with pytest.raises(DatasetError, match=r"test_batch: is a named pipe, not a CIFAR-10 "
                                           r"test_batch file"):
        load_dataset("cifar10", split="test", data_dir=tmp_path)
    empty = tmp_path / "tarball-only"
    empty.mkdir()
    (empty / "cifar-10-python.tar.gz").symlink_to("/dev/zero")
    with pytest.raises(DatasetError, match=r"cifar-10-python\.tar\.gz: is a device, not the "
                                           r"CIFAR-10 python version archive"):
        load_dataset("cifar10", data_dir=empty)


def _idx_header(*dims: int) -> bytes:
    return bytes([0, 0, 8, len(dims)]) + np.array(dims, ">u4").tobytes()


@pytest.mark.parametrize("split,name,dims,pattern", [
    ("train", "train-images-idx3-ubyte", (60_001, 28, 28),
     r"header declares 60,001 images, more than the 60,000 of the train split"),
    ("test", "t10k-images-idx3-ubyte", (10_001, 28, 28),
     r"header declares 10,001 images, more than the 10,000 of the test split"),
    ("train", "train-images-idx3-ubyte", (0, 28, 28), r"header declares 0 images; expected 1"),
    ("train", "train-images-idx3-ubyte", (5, 65536, 65536), r"images are 65536x65536, expected "
                                                            r"28x28"),
    ("train", "train-images-idx3-ubyte", (2**32 - 1, 28, 28), r"declares 4,294,967,295 images"),
    ("train", "train-labels-idx1-ubyte", (60_001,), r"declares 60,001 labels, more than"),
])
def test_idx_header_sizes_are_checked_before_the_payload(tmp_path, split, name, dims, pattern):
    write_mnist(tmp_path)
    write(tmp_path / name, _idx_header(*dims) + b"\0" * 64)  # the payload is never needed
    with pytest.raises(DatasetError, match=pattern) as err:
        load_dataset("mnist", split=split, data_dir=tmp_path)
    assert str(err.value).startswith(f"{tmp_path / name}: ")


def test_idx_files_larger_than_any_mnist_file_are_refused_unread(tmp_path):
    write_mnist(tmp_path)
    lbl = tmp_path / "train-labels-idx1-ubyte"
    with open(lbl, "r+b") as f:
        f.truncate(1 << 20)  # sparse: a 1 MiB label file (the real one has 60,008 bytes)
    with pytest.raises(DatasetError, match=r"1,048,576 bytes, more than the .* bytes an IDX "
                                           r"file may have"):
        load_dataset("mnist", data_dir=tmp_path)


def _zeros_gzip_member(n_bytes: int) -> bytes:
    import zlib

    c = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: a gzip member
    block = bytes(1 << 20)
    return b"".join(c.compress(block) for _ in range(n_bytes >> 20)) + c.flush()


def test_gzip_bomb_is_not_decompressed_beyond_the_declared_size(tmp_path):
    """A 3.9 kB IDX payload followed by 1 GiB of gzipped zeros (a 1 MB file): the reader stops
    one byte past the declared payload, so memory stays far below the bomb's size."""
    import tracemalloc

    write_mnist(tmp_path)
    bomb = gzip.compress(idx_bytes(TRAIN_IMAGES)) + _zeros_gzip_member(64 << 20) * 16
    (tmp_path / "train-images-idx3-ubyte").unlink()
    write_path = tmp_path / "train-images-idx3-ubyte.gz"
    write_path.write_bytes(bomb)
    assert len(bomb) < 2 << 20
    tracemalloc.start()
    try:
        with pytest.raises(DatasetError, match=r"trailing data: header says 5x28x28 = 3920 "
                                               r"bytes, the decompressed data goes on"):
            load_dataset("mnist", data_dir=tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, peak


def _tar_gz_with_header(path: Path, entries: list[tuple[str, int]]) -> Path:
    """A tar.gz holding only member headers that declare these sizes (no data follows)."""
    blob = b""
    for name, size in entries:
        info = tarfile.TarInfo(name)
        info.size = size
        blob += info.tobuf(format=tarfile.GNU_FORMAT)
    path.write_bytes(gzip.compress(blob + bytes(1024)))
    return path


@pytest.mark.parametrize("entries,pattern", [
    ([("cifar-10-batches-py/test_batch", 100 << 20)],
     r"member cifar-10-batches-py/test_batch declares 104,857,600 bytes, more than the "
     r"67,108,864 a CIFAR-10 test_batch may have"),
    ([("cifar-10-batches-py/batches.meta", 2 << 20)], r"batches\.meta declares 2,097,152 bytes"),
    ([("cifar-10-batches-py/junk.bin", 600 << 20)],
     r"members declare more than 536,870,912 bytes in all \(at cifar-10-batches-py/junk\.bin\)"),
    ([(f"f{i}", 0) for i in range(1001)], r"more than 1000 members"),
])
def test_cifar_tarball_member_sizes_are_bounded_before_decompressing(tmp_path, entries,
                                                                       pattern):
    tar = _tar_gz_with_header(tmp_path / "cifar-10-python.tar.gz", entries)
    with pytest.raises(DatasetError, match=pattern) as err:
        load_dataset("cifar10", split="test", data_dir=tmp_path)
    assert str(err.value).startswith(f"{tar}: ")


def test_oversized_cifar_batch_is_refused_unread(tmp_path):
    write_cifar(tmp_path)
    with open(tmp_path / "test_batch", "r+b") as f:
        f.truncate(65 << 20)  # sparse
    with pytest.raises(DatasetError, match=r"test_batch: 68,157,440 bytes, more than the "
                                           r"67,108,864 bytes a CIFAR-10 test_batch file may"):
        load_dataset("cifar10", split="test", data_dir=tmp_path)
