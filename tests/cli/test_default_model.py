"""The shipped default model: commands without a checkpoint use it; it loads on CPU."""

import json

import numpy as np

from sdm_neuro.assets import default_model_path
from sdm_neuro.checkpoint import read_checkpoint
from sdm_neuro.cli import main as cli


def test_default_model_is_small_and_fully_featured():
    path = default_model_path()
    assert path.stat().st_size < 4 * 2**20
    ck = read_checkpoint(path)
    cfg = ck.config
    assert cfg.snn_steps == 4 and cfg.img_size >= 16 and len(cfg.ch_mult) >= 2
    assert any(".shortcut." in k for k in ck.state_dict)  # shortcut convs are exercised
    assert ck.meta["dataset"] == "digits" and "sdm-neuro train" in ck.meta["command"]


def test_sample_without_checkpoint_uses_the_default_model(tmp_path, capsys):
    out = tmp_path / "s"
    assert cli(["sample", "--sampler", "ddim", "--steps", "3", "--num", "2", "--out", str(out),
                "--quiet"]) == 0
    assert np.load(out / "samples.npy").shape == (2, 1, 16, 16)
    assert json.loads((out / "sample.json").read_text())["checkpoint"].endswith(
        default_model_path().name)


def test_simulate_without_checkpoint(tmp_path, capsys):
    out = tmp_path / "sim"
    assert cli(["simulate", "--sampler", "ddim", "--steps", "2", "--num", "2", "--batch", "2",
                "--compare-every", "1", "--out", str(out), "--quiet"]) == 0
    rep = json.loads((out / "simulate.json").read_text())
    assert rep["steps"] == 2 and len(rep["comparison"]["eps_per_call"]) == 2
    assert rep["counters_per_call"]["synops_total"] > 0
    layers = rep["layers"]
    assert len(layers) == 19  # every spiking layer of the default model is reported
    for name, v in layers.items():
        # spike_agreement_with_float is the fraction of (neuron, SNN step, sample) entries where
        # the integer and the float model agree, silent entries included: two silent networks
        # would agree on all of them. So every layer must spike at a real rate, and disagree at
        # most half as often as two independent spike trains at that rate would (2 r (1 - r)).
        # Measured: rates 0.14-0.46, disagreement at most 0.34 of that chance level.
        r = v["spike_rate"]
        assert 0.05 <= r <= 0.8, (name, r)
        assert 1 - v["spike_agreement_with_float"] <= 0.5 * 2 * r * (1 - r), (name, v)
    assert {p.name for p in out.iterdir()} == {"samples.npy", "float_samples.npy", "samples.png",
                                               "float_samples.png", "graph.pt", "simulate.json"}
