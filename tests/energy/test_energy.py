"""Energy report: operation counts against brute force, the SDDPM paper's ANN figure, the CLI."""


import pytest
import torch
from torch.nn import functional as F

from sdm_neuro import PAPER_CIFAR10, SpikingUNet, UNetConfig
from sdm_neuro.compiler.pipeline import build_integer_graph, calibration_inputs
from sdm_neuro.energy.model import ann_baseline, convention_energy
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
def tiny(tiny_config_ch4_t3):
    torch.manual_seed(1)
    cfg = tiny_config_ch4_t3
    model = SpikingUNet(cfg).eval()
    for m in model.modules():  # bias the BNs so that every layer spikes a fair amount
        if isinstance(m, torch.nn.BatchNorm2d):
            m.bias.data.fill_(0.3)
    graph = build_integer_graph(model, calibration_inputs(torch.rand(8, 1, 8, 8) * 2 - 1,
                                                          count=4, batch_size=4))
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


@pytest.mark.parametrize("k, stride, pad", [(3, 1, 1), (3, 2, 1), (1, 2, 0), (1, 1, 0)])
def test_effective_ops_count_nonzero_inputs_times_taps(k, stride, pad):
    conv = torch.nn.Conv2d(2, 3, k, stride=stride, padding=pad)
    z = (torch.rand(2, 2, 5, 6) < 0.3).float()
    from sdm_neuro.energy.ops import _conv_effective

    out = conv(z)
    ho, wo = out.shape[2:]
    for row in range(2):
        want = 0  # (output position, tap) pairs each non-zero input feeds, times 3 channels
        for c, y, x in z[row].nonzero().tolist():
            want += 3 * sum(1 for oy in range(ho) for ox in range(wo)
                            if 0 <= y - (oy * stride - pad) < k
                            and 0 <= x - (ox * stride - pad) < k)
        assert float(_conv_effective(conv, z, out)[row]) == want


def test_convention_counts_spike_layers_as_acs_and_others_as_macs(tiny):
    model, _ = tiny
    ops = model_ops(model, torch.randn(2, 1, 8, 8), torch.tensor([3, 3]))
    by_name = {o.name: o for o in ops}
    assert not by_name["conv"].spiking_input            # the pixel conv
    assert by_name["conv_identity"].spiking_input       # after the stem neuron
    assert not by_name["time_embedding.timembedding.1"].spiking_input
    assert any(o.name.endswith("shortcut") and not o.spiking_input for o in ops)
    # figures other than 1 (a missing multiplication shows) and apart (a swap shows)
    e = convention_energy(ops, ac_pj=0.7, mac_pj=13.0)
    sops = sum(o.effective for o in ops if o.spiking_input)
    macs = sum(o.dense for o in ops if not o.spiking_input)
    assert sops > 0 and macs > 0
    assert e.components == pytest.approx({"synaptic (AC)": 0.7 * sops,
                                          "real-valued input (MAC)": 13.0 * macs})
    # the pixel conv runs at every SNN step, as the papers count it
    assert by_name["conv"].rows == model.config.snn_steps


def test_pixel_conv_effective_equals_dense_for_real_input(tiny):
    model, _ = tiny
    ops = {o.name: o for o in model_ops(model, torch.randn(2, 1, 8, 8) + 5, torch.tensor([1, 1]))}
    # no zero pixels: effective MACs are all taps that land inside the image
    ones = F.conv2d(torch.ones(1, 1, 8, 8), torch.ones(4, 1, 3, 3), padding=1).sum()
    assert ops["conv"].effective == pytest.approx(float(ones) * model.config.snn_steps)


# -- the fuller model's terms, by hand ----------------------------------------------------------

def _profile(tmp_path, kind: str, energy: dict, power: dict | None = None,
             limits: dict | None = None):
    from sdm_neuro.hardware_profiles.profile import load_profile

    def section(name: str, figures: dict | None) -> str:
        return f"[{name}]\n" + "".join(
            f'{k} = {{ value = {v}, tag = "estimated", source = "test" }}\n'
            for k, v in (figures or {}).items())

    path = tmp_path / f"{kind}.toml"
    path.write_text(f'name = "{kind}"\ntitle = "t"\nkind = "{kind}"\nprocess = "p"\n'
                    f'description = "d"\n' + section("limits", limits) +
                    section("energy", energy) + section("power", power))
    return load_profile(path)


@pytest.fixture
def hand():
    """An activity with distinct counts, and a graph of T_snn = 3 (only its step count is
    used by the model)."""
    from sdm_neuro.ir.graph import DeployGraph, HostStages, Population
    from sdm_neuro.energy.activity import Activity

    cfg = UNetConfig(ch=4, ch_mult=(1,), num_res_blocks=1, img_ch=1, snn_steps=3, img_size=4)
    pops = (Population("a", (2, 2, 2), 1.0, torch.zeros(3, 2)),
            Population("b", (3, 2, 2), 1.0, torch.zeros(3, 3)))
    graph = DeployGraph(cfg, pops, (), HostStages(torch.zeros(2, 1, 3, 3), (), {}, {},
                                                  torch.zeros(3, 2)))
    act = Activity(spikes={"a": 3.0, "b": 5.0}, synops={"a->b": 7.0, "b->host": 4.0},
                   neuron_updates=11.0, host_macs=13.0, by_t=(), source="by hand")
    return act, graph


def test_fuller_model_baseline_terms_by_hand(tmp_path, hand):
    from sdm_neuro.energy.model import profile_energy

    act, graph = hand
    prof = _profile(tmp_path, "baseline",
                    {"synop_pj": 2.3, "neuron_update_active_pj": 0.7, "spike_message_pj": 1.9,
                     "spike_hop_pj": 0.3, "memory_read_64bit_pj": 17.0,
                     "memory_write_64bit_pj": 19.0, "host_mac_pj": 3.1},
                    power={"static_power_mw": 0.37, "time_step_us": 29.0},
                    limits={"weight_bits": 16, "state_bits": 32})
    e = profile_energy(prof, act, graph)
    # synops 7 + 4 = 11, spikes 3 + 5 = 8, neuron updates 11, host MACs 13
    assert e.components == pytest.approx({
        "synaptic ops": 11 * 2.3,
        "neuron updates": 11 * 0.7,
        "spike messages": 8 * (1.9 + 0.3),
        # Lemaire et al.: a 16-bit weight read per synop, a 32-bit state read + write per update
        "memory": 11 * (16 / 64) * 17.0 + 11 * (32 / 64) * (17.0 + 19.0),
        "host": 13 * 3.1,
        # 0.37 mW for 3 steps of 29 us: 0.37e-3 W x 87e-6 s = 3.219e-8 J
        "static": 32190.0,
    }, rel=1e-12)
    assert e.total_pj == pytest.approx(25.3 + 7.7 + 17.6 + 244.75 + 40.3 + 32190.0, rel=1e-12)


def test_fuller_model_fallbacks_by_hand(tmp_path, hand):
    from sdm_neuro.energy.model import CONVENTION_MAC_PJ, profile_energy

    act, graph = hand
    # baseline without bit widths, write figure or host figure: 8-bit weights, 24-bit state,
    # write = read, host at the 45 nm MAC (4.6 pJ); neuron updates as accumulates; no static
    # term without a step time
    prof = _profile(tmp_path, "baseline", {"synop_pj": 2.3, "ac_pj": 0.45,
                                           "memory_read_64bit_pj": 17.0},
                    power={"static_power_mw": 0.37})
    e = profile_energy(prof, act, graph)
    assert CONVENTION_MAC_PJ == 4.6
    assert e.components == pytest.approx({
        "synaptic ops": 11 * 2.3, "neuron updates": 11 * 0.45,
        "memory": 11 * (8 / 64) * 17.0 + 11 * (24 / 64) * (2 * 17.0), "host": 13 * 4.6},
        rel=1e-12)
    assert any("static power not included" in n for n in e.notes)
    # a neuromorphic profile's synaptic figure includes its memory: no memory term
    neuro = _profile(tmp_path, "neuromorphic", {"synop_pj": 2.3, "memory_read_64bit_pj": 17.0,
                                                "spike_message_pj": 1.9})
    e = profile_energy(neuro, act, graph)
    assert e.components == pytest.approx({"synaptic ops": 11 * 2.3, "spike messages": 8 * 1.9,
                                          "host": 13 * 4.6}, rel=1e-12)


def test_population_energy_by_hand(tmp_path, hand):
    from sdm_neuro.energy.model import population_energy

    act, graph = hand
    prof = _profile(tmp_path, "neuromorphic", {"synop_pj": 2.3, "neuron_update_active_pj": 0.7,
                                               "spike_message_pj": 1.9, "spike_hop_pj": 0.3})
    per = population_energy(prof, act, graph)
    # b receives the 7 synops from a; a neuron updates every step (T = 3)
    assert per.keys() == {"a", "b"}
    assert per["a"] == pytest.approx({"synaptic ops": 0.0, "neuron updates": 8 * 3 * 0.7,
                                      "spike messages": 3 * 2.2}, rel=1e-12)
    assert per["b"] == pytest.approx({"synaptic ops": 7 * 2.3, "neuron updates": 12 * 3 * 0.7,
                                      "spike messages": 5 * 2.2}, rel=1e-12)
