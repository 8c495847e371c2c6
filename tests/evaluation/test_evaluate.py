"""evaluate: the shipped classifier, recognisability, classifier files. (The evaluate command,
its floor/ceiling rows: tests/cli/test_evaluate.py.)"""

import math

import numpy as np
import pytest
import torch

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
