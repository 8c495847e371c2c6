"""``sdm-neuro evaluate``: held-out digits scored as samples, a classifier trained for another
dataset, one sample (FID/KID not computable), and malformed requests refused with the documented
exit code, naming the file, leaving no output."""

import gzip
import json
import math
import struct

import numpy as np

from sdm_neuro.cli import main as cli
from sdm_neuro.data import load_dataset
from sdm_neuro.errors import CheckpointError, DatasetError, UsageError
from sdm_neuro.evaluation import load_classifier
from sdm_test_support import GOOD_SAMPLES, npy

# samples of the right form, as tests/evaluation/test_eval_malformed.py writes them



def test_evaluate_real_images_as_samples(tmp_path, capsys):
    """Held-out digits scored as if generated: recognisable, near the floor, far from noise."""
    real = load_dataset("digits", split="test", img_size=16).images[:200].numpy()
    np.save(tmp_path / "real.npy", real)
    out = tmp_path / "ev"
    assert cli(["evaluate", "--samples", str(tmp_path / "real.npy"), "--kid-subsets", "5",
                "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "NOT Inception" in text
    rep = json.loads((out / "report.json").read_text())
    rows = rep["rows"]
    assert set(rows) == {"samples", "held-out real (floor)", "noise (ceiling)"}
    s, noise = rows["samples"], rows["noise (ceiling)"]
    assert s["n"] == 200 and s["confident"] >= 0.85 and noise["confident"] <= 0.05
    assert s["fid"] < noise["fid"] / 10 and s["class_entropy"] > 0.9 * math.log(10)
    assert sum(s["class_counts"]) == 200
    assert (out / "samples.png").stat().st_size > 0 and (out / "classes.png").stat().st_size > 0


def _write_idx(path, arr):
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_evaluate_trains_a_classifier_for_other_datasets(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("t10k", 20)):
        labels = np.arange(n) % 10
        imgs = np.zeros((n, 28, 28), np.uint8)
        for i, k in enumerate(labels):  # one bright bar per class: learnable in a few epochs
            imgs[i, 2 + 2 * k: 4 + 2 * k, 4:24] = 255
        imgs = np.clip(imgs + rng.integers(0, 30, imgs.shape), 0, 255)
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", imgs)
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", labels)
    fake = load_dataset("mnist", split="test", data_dir=tmp_path).images[:10].numpy()
    np.save(tmp_path / "s.npy", fake)
    out = tmp_path / "ev"
    assert cli(["evaluate", "--samples", str(tmp_path / "s.npy"), "--dataset", "mnist",
                "--data-dir", str(tmp_path), "--kid-subsets", "2", "--out", str(out),
                "--quiet"]) == 0
    clf = load_classifier(out / "classifier.pt")
    assert clf.dataset == "mnist" and clf.config.img_size == 28
    assert json.loads((out / "report.json").read_text())["rows"]["samples"]["n"] == 10


def test_evaluate_errors_leave_no_output(tmp_path, capsys):
    np.save(tmp_path / "wrong.npy", np.zeros((4, 1, 8, 8), np.float32))
    code = cli(["evaluate", "--samples", str(tmp_path / "wrong.npy"), "--classifier",
                str(tmp_path / "missing.pt"), "--out", str(tmp_path / "o"), "--quiet"])
    assert code == CheckpointError.exit_code and "missing.pt" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    np.save(tmp_path / "ints.npy", np.zeros((4, 16, 16), np.int64))
    assert cli(["evaluate", "--samples", str(tmp_path / "ints.npy"), "--out",
                str(tmp_path / "o"), "--quiet"]) == 2
    assert "expected float images" in capsys.readouterr().err


def test_cli_refuses_samples_in_0_255_naming_the_file(tmp_path, capsys):
    """Needs cli._read_samples to use evaluation.evaluate.read_samples (see the report)."""
    path = npy(tmp_path / "pixels.npy", np.full((2, 1, 16, 16), 200.0, np.float32))
    rc = cli(["evaluate", "--samples", str(path), "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == UsageError.exit_code and str(path) in err and "[-1, 1]" in err
    assert "internal error" not in err and not (tmp_path / "o").exists()


def test_cli_refuses_bad_kid_options(tmp_path, capsys):
    path = npy(tmp_path / "s.npy", GOOD_SAMPLES)
    rc = cli(["evaluate", "--samples", str(path), "--kid-subset-size", "1", "--out",
              str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == UsageError.exit_code and "--kid-subset-size must be an integer >= 2" in err


def test_cli_evaluate_one_sample_reports_fid_kid_as_not_computable(tmp_path, capsys):
    out = tmp_path / "ev"
    rc = cli(["evaluate", "--num", "1", "--batch", "1", "--sampler", "ddim", "--steps", "2",
              "--kid-subsets", "2", "--out", str(out), "--quiet"])
    text, err = capsys.readouterr()
    assert rc == 0, err
    rows = json.loads((out / "report.json").read_text())["rows"]
    for name, row in rows.items():
        assert row["n"] == 1 and sum(row["class_counts"]) == 1, name
        assert row["fid"] is None and row["kid"] is None and row["kid_std"] is None, name
        assert "need at least 2 images" in row["fid_kid_unavailable"], name
        assert row["confident"] in (0.0, 1.0) and row["class_entropy"] == 0.0
    assert rows["noise (ceiling)"]["confident"] == 0.0  # recognisability is still computed
    assert "n/a" in text and "need at least 2 images" in text
    assert np.load(out / "samples.npy").shape == (1, 1, 16, 16)


def test_cli_evaluate_with_malformed_idx_exits_5(tmp_path, capsys):
    data = tmp_path / "mnist"
    data.mkdir()
    header = bytes([0, 0, 8, 3]) + np.array([3, 28, 28], ">u4").tobytes()
    (data / "train-images-idx3-ubyte").write_bytes(header + b"\0" * 100)  # truncated
    (data / "train-labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3]))
    samples = npy(tmp_path / "s.npy", np.zeros((2, 1, 28, 28), np.float32))
    rc = cli(["evaluate", "--samples", str(samples), "--dataset", "mnist", "--data-dir",
              str(data), "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == DatasetError.exit_code, err
    assert f"{data / 'train-images-idx3-ubyte'}: truncated: header says 3x28x28 = 2352" in err
    assert not (tmp_path / "o").exists()


def test_evaluate_integer_scores_simulates_integer_samples(tmp_path, capsys):
    """``evaluate --integer MAPPING`` samples with the integer simulator quantized as simulate
    does: the same samples as ``simulate`` from the same seed, with the mapping recorded."""
    common = ["--sampler", "ddim", "--steps", "2", "--num", "3", "--batch", "3",
              "--calibration-images", "4", "--quiet"]
    for mapping in ("composed", "graded"):
        ev, sim = tmp_path / f"ev_{mapping}", tmp_path / f"sim_{mapping}"
        assert cli(["evaluate", "--integer", mapping, "--kid-subsets", "2",
                    "--kid-subset-size", "2", "--out", str(ev), *common]) == 0
        assert cli(["simulate", "--mapping", mapping, "--out", str(sim), *common]) == 0
        assert np.array_equal(np.load(ev / "samples.npy"), np.load(sim / "samples.npy"))
        integer = json.loads((ev / "report.json").read_text())["integer"]
        assert integer == {"mapping": mapping, "mode": "ideal", "device": "cpu",
                           "calibration_images": 4}


def test_evaluate_integer_options_are_checked(tmp_path, capsys):
    out = tmp_path / "ev"
    assert cli(["evaluate", "--calibration-images", "4", "--out", str(out), "--quiet"]) == 2
    assert "--calibration-images is an option of the integer model: add --integer" in \
        capsys.readouterr().err
    assert cli(["evaluate", "--mode", "hardware", "--out", str(out), "--quiet"]) == 2
    assert "--mode is an option of the integer model: add --integer" in capsys.readouterr().err
    np.save(tmp_path / "s.npy", GOOD_SAMPLES)
    assert cli(["evaluate", "--integer", "graded", "--samples", str(tmp_path / "s.npy"),
                "--out", str(out), "--quiet"]) == 2
    assert "choose one" in capsys.readouterr().err
    assert not out.exists()
