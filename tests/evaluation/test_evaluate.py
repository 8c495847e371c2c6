"""evaluate: the shipped classifier, recognisability, the floor/ceiling rows, the CLI."""

import gzip
import json
import math
import struct

import numpy as np
import pytest
import torch

from sdm_neuro.cli import main as cli
from sdm_neuro.data import load_dataset
from sdm_neuro.errors import CheckpointError
from sdm_neuro.evaluation import load_classifier, recognisability
from sdm_neuro.evaluation.quality import noise_images


def test_recognisability_by_hand():
    probs = np.array([[0.95, 0.05], [0.5, 0.5], [0.1, 0.9], [0.2, 0.8]])
    conf, err, ent, counts = recognisability(probs, 0.9)
    assert conf == 0.5 and math.isclose(err, math.sqrt(0.25 / 4))
    assert counts == (2, 2) and math.isclose(ent, math.log(2))


def test_shipped_classifier_separates_digits_from_noise():
    from sdm_neuro.assets import digits_classifier_path

    clf = load_classifier(digits_classifier_path())
    test = load_dataset("digits", split="test", img_size=16)
    _, probs = clf.run(test.images)
    assert (probs.argmax(1) == test.labels.numpy()).mean() >= 0.95
    assert (probs.max(1) >= 0.9).mean() >= 0.85
    _, noise = clf.run(noise_images(300, (1, 16, 16), seed=1))
    assert (noise.max(1) >= 0.9).mean() <= 0.05


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


def test_bad_classifier_files(tmp_path):
    with pytest.raises(CheckpointError,
                       match=r"none\.pt: no such file \(expected an sdm-neuro classifier"):
        load_classifier(tmp_path / "none.pt")
    torch.save({"net_model": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an sdm-neuro classifier"):
        load_classifier(tmp_path / "other.pt")
    from sdm_neuro.assets import digits_classifier_path

    obj = torch.load(digits_classifier_path(), weights_only=True)
    obj["config"]["width"] = 8
    torch.save(obj, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="bad.pt: classifier weights do not fit"):
        load_classifier(tmp_path / "bad.pt")


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
