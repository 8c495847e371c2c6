"""Malformed input to evaluate is refused with the documented exit code and a message naming the
file and the expected form; a set of one sample gives the metrics that can be computed instead of
failing. (Through the CLI, and the dataset files behind it: tests/cli/test_evaluate.py,
tests/cli/test_train.py.)"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from sdm_neuro.errors import CheckpointError, UsageError
from sdm_neuro.evaluation import evaluate_sets, load_classifier
from sdm_neuro.evaluation.evaluate import read_samples
from sdm_test_support import GOOD_SAMPLES, npy




def raw_npy(path: Path, descr: str, shape: tuple, data: bytes) -> Path:
    """A .npy file (format 1.0) with this header, whatever the data: headers numpy would not
    write for the data that follows."""
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape!r}, }}"
    header = header.ljust(118) + "\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode()
                     + data)
    return path


def refused(path: Path, pattern: str) -> str:
    with pytest.raises(UsageError, match=pattern) as err:
        read_samples(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message


# --- evaluate --samples: the reader -------------------------------------------------------------

def test_good_samples_are_read_exactly(tmp_path):
    for name, arr in (("c.npy", GOOD_SAMPLES), ("f64.npy", GOOD_SAMPLES.astype(np.float64)),
                      ("be.npy", GOOD_SAMPLES.astype(">f4")),
                      ("fortran.npy", np.asfortranarray(GOOD_SAMPLES)),
                      ("rgb.npy", np.zeros((1, 3, 8, 8), np.float16))):
        x = read_samples(npy(tmp_path / name, arr))
        assert x.dtype == torch.float32 and tuple(x.shape) == arr.shape
        assert np.array_equal(x.numpy(), arr.astype(np.float32)), name
    # DDIM's unclamped last step overshoots [-1, 1] by a few hundredths: still images
    assert read_samples(npy(tmp_path / "ddim.npy", GOOD_SAMPLES * 1.05)).abs().max() > 1


@pytest.mark.parametrize("values,pattern", [
    (np.full((2, 1, 8, 8), 255.0, np.float32), r"range over \[255, 255\], expected images in "
                                               r"\[-1, 1\].*x / 127\.5 - 1"),
    (np.linspace(0, 255, 128, dtype=np.float64).reshape(2, 1, 8, 8), r"\[0, 255\], expected"),
    (np.full((1, 1, 4, 4), -1.2, np.float32), r"range over \[-1\.2, -1\.2\]"),
])
def test_out_of_range_values_are_refused(tmp_path, values, pattern):
    refused(npy(tmp_path / "s.npy", values), pattern)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_are_refused(tmp_path, bad):
    arr = GOOD_SAMPLES.copy()
    arr[1, 0, 3, 4] = bad
    refused(npy(tmp_path / "s.npy", arr), r"1 values are NaN or infinite \(first in image 1\)")


@pytest.mark.parametrize("arr,pattern", [
    (np.zeros((4, 16, 16), np.float32), r"expected float images \[N, C, H, W\].*float32 \[4, 16, "
                                        r"16\]"),
    (np.zeros((1, 1, 1, 16, 16), np.float32), r"float32 \[1, 1, 1, 16, 16\]"),
    (np.zeros((2, 2, 16, 16), np.float32), r"2 channel\(s\), 16x16; expected 1 or 3 channels"),
    (np.zeros((2, 1, 16, 8), np.float32), r"16x8; expected 1 or 3 channels and square"),
    (np.zeros((0, 1, 16, 16), np.float32), r"every size >= 1, got float32 \[0, 1, 16, 16\]"),
    (np.zeros((2, 1, 0, 0), np.float32), r"every size >= 1"),
    (np.zeros((2, 1, 8, 8), np.uint8), r"expected float images .* got uint8"),
    (np.zeros((2, 1, 8, 8), np.int64), r"expected float images .* got int64"),
    (np.zeros((2, 1, 8, 8), np.complex64), r"got complex64"),
    (np.zeros((2, 1, 8, 8), "U3"), r"got <U3"),
    (np.zeros((2, 1, 8, 8), [("a", "<f4")]), r"expected float images"),
])
def test_wrong_form_is_refused_before_reading_the_data(tmp_path, arr, pattern):
    refused(npy(tmp_path / "s.npy", arr), pattern)


class Marker:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_object_arrays_are_refused_and_nothing_is_unpickled(tmp_path):
    marker = tmp_path / "ran"
    arr = np.empty((1, 1, 1, 1), dtype=object)
    arr[0, 0, 0, 0] = Marker(marker)
    np.save(tmp_path / "obj.npy", arr, allow_pickle=True)
    refused(tmp_path / "obj.npy", r"expected float images .* got object")
    assert not marker.exists()


def test_header_is_checked_against_the_file_size_before_reading(tmp_path):
    # 3e12 bytes declared, 64 present: refused from the header, nothing allocated
    huge = raw_npy(tmp_path / "huge.npy", "<f4", (1000000, 3, 1000, 1000), b"\0" * 64)
    refused(huge, r"truncated: the header says float32 \[1000000, 3, 1000, 1000\] = "
                  r"12,000,000,000,000 bytes, the file has 64 after the header")
    good = GOOD_SAMPLES.tobytes()
    refused(raw_npy(tmp_path / "short.npy", "<f4", (2, 1, 16, 16), good[:-4]), r"truncated")
    refused(raw_npy(tmp_path / "long.npy", "<f4", (2, 1, 16, 16), good + b"\0" * 4),
            r"trailing data: .* 2,048 bytes, the file has 2,052")
    refused(raw_npy(tmp_path / "neg.npy", "<f4", (-2, 1, 16, 16), good), r"every size >= 1")


def test_not_npy_files_are_refused(tmp_path):
    np.savez(tmp_path / "s.npz", x=GOOD_SAMPLES)
    refused(tmp_path / "s.npz", r"not a \.npy array of float images")
    (tmp_path / "t.npy").write_bytes(b"\x93NU")
    refused(tmp_path / "t.npy", r"not a \.npy array")
    (tmp_path / "h.npy").write_bytes(b"\x93NUMPY\x01\x00\x10\x00{'descr': 1}   \n")
    refused(tmp_path / "h.npy", r"not a \.npy array")


def test_pipes_devices_and_directories_are_refused_without_opening(tmp_path):
    os.mkfifo(tmp_path / "pipe.npy")  # opening it would block: the guard refuses first
    refused(tmp_path / "pipe.npy", r"is a named pipe, not a \.npy array of float images")
    with pytest.raises(UsageError, match=r"/dev/zero: is a device"):
        read_samples("/dev/zero")
    refused(tmp_path, r"is a directory")
    with pytest.raises(UsageError, match=r"missing\.npy: no such file"):
        read_samples(tmp_path / "missing.npy")


# --- evaluate_sets --------------------------------------------------------------------------------

def test_evaluate_sets_computes_fid_where_it_can(tmp_path):
    """A one-image set gets None for FID/KID; a larger set beside it still gets numbers, and
    the KID subset size is not dragged down to 1 by the small set."""
    from sdm_neuro.assets import digits_classifier_path
    from sdm_neuro.data import load_dataset

    clf = load_classifier(digits_classifier_path())
    test = load_dataset("digits", split="test", img_size=16).images
    rep = evaluate_sets({"one": test[:1], "many": test[1:41]}, test[100:300], clf,
                        kid_subsets=3, kid_subset_size=30)
    one, many = rep.row("one"), rep.row("many")
    assert one.fid is None and one.kid is None and "this set has 1" in one.fid_kid_unavailable
    assert many.fid is not None and many.fid > 0 and many.kid is not None
    assert many.fid_kid_unavailable is None and rep.kid_subset_size == 30
    assert sum(one.class_counts) == 1 and sum(many.class_counts) == 40


# --- classifier files -----------------------------------------------------------------------------

def test_classifier_file_guard_and_config_limits(tmp_path):
    from sdm_neuro.assets import digits_classifier_path

    os.mkfifo(tmp_path / "pipe.pt")
    with pytest.raises(CheckpointError, match=r"pipe\.pt: is a named pipe"):
        load_classifier(tmp_path / "pipe.pt")
    obj = torch.load(digits_classifier_path(), weights_only=True)
    for key, value, pattern in (
            ("width", 4096, r"config width is 4096, expected an integer in \[1, 1024\]"),
            ("img_ch", 0, r"config img_ch is 0, expected an integer in \[1, 3\]"),
            ("num_classes", "10", r"config num_classes is '10'")):
        bad = {**obj, "config": {**obj["config"], key: value}}
        torch.save(bad, tmp_path / "bad.pt")
        with pytest.raises(CheckpointError, match=pattern) as err:
            load_classifier(tmp_path / "bad.pt")
        assert str(tmp_path / "bad.pt") in str(err.value)
    torch.save({**obj, "class_names": ["0", "1"]}, tmp_path / "names.pt")
    with pytest.raises(CheckpointError, match=r"names\.pt: 'class_names' must be a list of 10"):
        load_classifier(tmp_path / "names.pt")
