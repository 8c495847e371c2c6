"""Energy report: operation counts against brute force, the SDDPM paper's ANN figure, the CLI."""

import json

import pytest
import torch
from torch.nn import functional as F

from sdm_neuro import PAPER_CIFAR10, SpikingUNet, UNetConfig
from sdm_neuro.cli import main as cli
from sdm_neuro.deploy.pipeline import build_integer_graph, calibration_inputs
from sdm_neuro.energy.model import ann_baseline, convention
from sdm_neuro.energy.ops import model_ops
from sdm_neuro.simulators.integer import Counters, IntegerSimulator

SDDPM_ANN_MJ_PER_CALL = 29.23  # Cao et al. (SDDPM, WACV 2024): ANN energy per denoising call


def test_ann_baseline_of_the_sddpm_paper_configuration_matches_the_paper():
    torch.manual_seed(0)
    model = SpikingUNet(PAPER_CIFAR10).eval()
    ops = model_ops(model, torch.randn(1, 3, 32, 32), torch.tensor([500]))
    mj = ann_baseline(ops, 4.6) * 1e-9
    assert abs(mj / SDDPM_ANN_MJ_PER_CALL - 1) < 0.03, mj


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(1)
    cfg = UNetConfig(ch=4, ch_mult=(1, 2), num_res_blocks=1, img_ch=1, snn_steps=3, img_size=8)
    model = SpikingUNet(cfg).eval()
    for m in model.modules():  # bias the BNs so that every layer spikes a fair amount
        if isinstance(m, torch.nn.BatchNorm2d):
            m.bias.data.fill_(0.3)
    graph = build_integer_graph(model, calibration_inputs(torch.rand(8, 1, 8, 8) * 2 - 1,
                                                          batches=1, batch_size=4))
    return model, graph


def test_synaptic_ops_equal_a_brute_force_count(tiny):
    """Spikes x true fan-out, against a per-spike enumeration of the targets each one reaches
    (after an upsample, one synapse per distinct (source, target) pair)."""
    _, graph = tiny
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([10, 700])
    counters = Counters()
    _, spikes = IntegerSimulator(graph)(x, t, counters)
    assert sum(counters.synops.values()) > 0
    for p in graph.projections:
        if p.dst == "host":
            continue
        w = p.weight_int.abs().amax(0) if p.weight_int.dim() == 5 else p.weight_int.abs()
        rows = int(w.flatten(1).ne(0).any(1).sum())  # all-zero rows are no synapses
        _, h, wd = graph.population(p.src).shape
        k, pad, s, u = p.kernel, p.padding, p.stride, p.upsample
        ho, wo = (h * u + 2 * pad - k) // s + 1, (wd * u + 2 * pad - k) // s + 1
        want = 0
        for step, b, c, y, xx in spikes[p.src].nonzero().tolist():
            targets = set()
            for dy in range(u):
                for dx in range(u):
                    yy, xu = y * u + dy, xx * u + dx  # the (upsampled) input pixel
                    for oy in range(ho):
                        for ox in range(wo):
                            if 0 <= yy - (oy * s - pad) < k and 0 <= xu - (ox * s - pad) < k:
                                targets.add((oy, ox) if u > 1 else (oy, ox, yy, xu))
            want += rows * len(targets)
        assert counters.synops[f"{p.src}->{p.dst}"] == want, (p.src, p.dst)


def test_effective_ops_count_nonzero_inputs_times_taps():
    conv = torch.nn.Conv2d(2, 3, 3, padding=1)
    z = (torch.rand(1, 2, 5, 6) < 0.3).float()
    from sdm_neuro.energy.ops import _conv_effective

    want = 0
    for c, y, x in z[0].nonzero().tolist():
        want += 3 * sum(1 for oy in range(5) for ox in range(6)
                        if abs(oy - y) <= 1 and abs(ox - x) <= 1)
    assert float(_conv_effective(conv, z)[0]) == want


def test_convention_counts_spike_layers_as_acs_and_others_as_macs(tiny):
    model, _ = tiny
    ops = model_ops(model, torch.randn(2, 1, 8, 8), torch.tensor([3, 3]))
    by_name = {o.name: o for o in ops}
    assert not by_name["conv"].spiking_input            # the pixel conv
    assert by_name["conv_identity"].spiking_input       # after the stem neuron
    assert not by_name["time_embedding.timembedding.1"].spiking_input
    assert any(o.name.endswith("shortcut") and not o.spiking_input for o in ops)
    e = convention(ops, ac_pj=1.0, mac_pj=10.0)
    sops = sum(o.effective for o in ops if o.spiking_input)
    macs = sum(o.dense for o in ops if not o.spiking_input)
    assert e.components == {"synaptic (AC)": sops, "real-valued input (MAC)": 10.0 * macs}
    # the pixel conv runs at every SNN step, as the papers count it
    assert by_name["conv"].rows == model.config.snn_steps


def test_energy_report_on_the_default_model(tmp_path, capsys):
    out = tmp_path / "energy"
    assert cli(["energy-report", "--calls", "2", "--batch", "2", "--out", str(out),
                "--quiet"]) == 0
    rep = json.loads((out / "energy.json").read_text())
    for png in ("energy_per_layer.png", "firing_rate.png", "energy_per_image.png"):
        assert (out / png).stat().st_size > 1000
    assert {"loihi2", "loihi1", "spinnaker2", "truenorth", "speck", "xylo", "generic45nm_fp32",
            "generic45nm_int8"} <= set(rep["profiles"])
    assert rep["calls_per_image"] == 1000 and len(rep["by_t"]) == 2
    loihi2 = rep["profiles"]["loihi2"]
    assert loihi2["derived_figures"]["synop_pj"]
    assert any("not a published figure" in n for n in loihi2["energy"]["notes"])
    assert rep["profiles"]["truenorth"]["constraints"]["fits"] is False
    syn = rep["totals_per_call"]["synaptic_ops"]
    assert loihi2["energy"]["per_call_pj"]["synaptic ops"] == pytest.approx(syn * 23.6)
    nb = rep["neurobench"]
    assert 0 < nb["activation_sparsity"] < 1 and nb["effective_synaptic_operations"]["ACs"] > 0
    text = capsys.readouterr().out
    assert "loihi2" in text and "ANN baseline" in text


def test_energy_report_from_simulate_stats(tmp_path, capsys):
    sim = tmp_path / "sim"
    assert cli(["simulate", "--sampler", "ddim", "--steps", "2", "--num", "2", "--batch", "2",
                "--out", str(sim), "--quiet"]) == 0
    out = tmp_path / "energy"
    assert cli(["energy-report", "--stats", str(sim / "simulate.json"), "--calls", "1",
                "--profile", "loihi2", "--out", str(out),
                "--quiet"]) == 0
    rep = json.loads((out / "energy.json").read_text())
    stats = json.loads((sim / "simulate.json").read_text())
    assert rep["totals_per_call"]["synaptic_ops"] == pytest.approx(
        stats["counters_per_call"]["synops_total"] / 2)
    assert "simulate" in rep["activity_source"] and list(rep["profiles"]) == ["loihi2"]
    assert (rep["sampler"], rep["steps"], rep["calls_per_image"]) == ("ddim", 2, 2)


def test_bad_stats_file_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "s.json"
    bad.write_text("{}")
    out = tmp_path / "e"
    assert cli(["energy-report", "--stats", str(bad), "--profile", "loihi2", "--calls", "1",
                "--out", str(out), "--quiet"]) == 2
    assert str(bad) in capsys.readouterr().err and not out.exists()


def test_pixel_conv_effective_equals_dense_for_real_input(tiny):
    model, _ = tiny
    ops = {o.name: o for o in model_ops(model, torch.randn(2, 1, 8, 8) + 5, torch.tensor([1, 1]))}
    # no zero pixels: effective MACs are all taps that land inside the image
    ones = F.conv2d(torch.ones(1, 1, 8, 8), torch.ones(4, 1, 3, 3), padding=1).sum()
    assert ops["conv"].effective == pytest.approx(float(ones) * model.config.snn_steps)
