"""Threshold maps: files with globs, schedules, and the errors that name what is wrong."""

import json

import pytest

from sdm_neuro import SpikingUNet, UsageError
from sdm_neuro.models.thresholds import ThresholdMap, apply_threshold_map, parse_threshold_map


@pytest.fixture
def model(tiny_config):
    return SpikingUNet(tiny_config)


def test_file_globs_apply_in_order(tmp_path, model):
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"downblocks.*": 0.99, "downblocks.0.neuron2": 1.01,
                                "neuron": 0.5}))
    got = apply_threshold_map(model, parse_threshold_map(str(path)))
    assert got["neuron"] == 0.5 and got["downblocks.0.neuron1"] == 0.99
    assert got["downblocks.0.neuron2"] == 1.01  # the later entry wins
    assert all(v == 1.0 for k, v in got.items() if k.startswith(("upblocks", "middle")))
    assert {n: m.threshold for n, m in model.neurons()} == got


def test_schedules(model):
    names = [n for n, _ in model.neurons()]
    halves = parse_threshold_map("halves:0.998,1.002").resolve(names)
    assert all(v == (1.002 if n.startswith("upblocks.") else 0.998) for n, v in halves.items())
    depth = parse_threshold_map("depth:0.9,1.1").resolve(names)
    assert depth[names[0]] == 0.9 and depth[names[-1]] == pytest.approx(1.1)
    values = [depth[n] for n in names]
    assert values == sorted(values) and len(set(values)) == len(names)
    assert ThresholdMap("x", schedule=("halves", 1.0, 2.0)).to_dict() == {
        "schedule": "halves", "values": [1.0, 2.0]}


@pytest.mark.parametrize("content, message", [
    ('{"upblocks.9.*": 1.0}', "pattern 'upblocks.9.\\*' matches no spiking layer"),
    ('{"neuron": 0}', "'neuron': a threshold must be a finite number > 0"),
    ('{"neuron": "1"}', "a threshold must be a finite number > 0"),
    ('[1.0]', "non-empty JSON object"),
    ('{}', "non-empty JSON object"),
    ('{"neuron": 1.0', "not a readable JSON threshold map"),
])
def test_bad_files_are_refused_by_name(tmp_path, model, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(UsageError, match=message) as e:
        apply_threshold_map(model, parse_threshold_map(str(path)))
    assert str(path) in str(e.value)


@pytest.mark.parametrize("text, message", [
    ("halves:1.0", "expected halves:A,B"), ("depth:1,x", "expected depth:A,B"),
    ("depth:1,-1", "finite number > 0"), ("nofile.json", "no such file"),
])
def test_bad_schedules_are_refused(text, message):
    with pytest.raises(UsageError, match=message):
        parse_threshold_map(text)


def test_set_thresholds_refuses_a_layer_the_model_lacks(model):
    with pytest.raises(UsageError, match="no spiking layer named upblocks.9.neuron"):
        model.set_thresholds({"neuron": 0.9, "upblocks.9.neuron": 1.0})
    model.set_thresholds({"neuron": 0.9})
    assert model.thresholds()["neuron"] == 0.9
