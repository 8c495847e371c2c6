"""Design-rule checks (hardware_profiles/constraints.py) on a hand-made graph whose numbers are
worked out by hand below: synaptic delays, synaptic memory per core, the layer count and Speck's
per-layer kernel / neuron memories (sinabs' rule). Each has a passing and a violating case."""

import pytest
import torch

from sdm_neuro import UNetConfig
from sdm_neuro.ir.graph import DeployGraph, HostStages, Population, Projection
from sdm_neuro.hardware_profiles.constraints import check
from sdm_neuro.hardware_profiles.profile import load_profile

# A (3, 6, 5) -> B (5, 6, 5): 3x3, stride 1, padding 1, delay 3
# B (5, 6, 5) -> C (5, 3, 3): 3x3, stride 2, padding 1, delay 5
# C -> host decoder (not on chip). Odd sizes, so that a floor for a ceil shows.
SHAPES = {"A": (3, 6, 5), "B": (5, 6, 5), "C": (5, 3, 3)}


@pytest.fixture(scope="module")
def graph():
    cfg = UNetConfig(ch=4, ch_mult=(1,), num_res_blocks=1, img_ch=1, snn_steps=2, img_size=6)
    pops = tuple(Population(n, s, 1.0, torch.zeros(2, s[0], dtype=torch.float64))
                 for n, s in SHAPES.items())

    def ones(*shape):  # every tap is a synapse
        return torch.ones(*shape, dtype=torch.float64)

    projs = (Projection("A", "B", ones(5, 3, 3, 3), delay=3),
             Projection("B", "C", ones(5, 5, 3, 3), stride=2, delay=5),
             Projection("C", "host", ones(4, 5, 3, 3)))
    host = HostStages(torch.zeros(3, 1, 3, 3), (), {}, {}, torch.zeros(2, 4))
    return DeployGraph(cfg, pops, projs, host)


def _profile(tmp_path, limits: dict) -> object:
    lines = "\n".join(f'{k} = {{ value = {v}, tag = "datasheet", source = "test" }}'
                      for k, v in limits.items())
    path = tmp_path / "chip.toml"
    path.write_text(f'name = "chip"\ntitle = "t"\nkind = "neuromorphic"\nprocess = "p"\n'
                    f'description = "d"\n[limits]\n{lines}\n[energy]\n'
                    'synop_pj = { value = 1.0, tag = "estimated", source = "test" }\n')
    return load_profile(path)


def _violations(placement) -> list[tuple]:
    return [(v.where, v.quantity, v.actual, v.limit) for v in placement.violations]


def test_synaptic_delays(tmp_path, graph):
    ok = check(graph, _profile(tmp_path, {"synaptic_delay_steps_max": 5}))
    assert ok.fits and not ok.violations
    bad = check(graph, _profile(tmp_path, {"synaptic_delay_steps_max": 4}))
    assert _violations(bad) == [("B->C", "synaptic delay (steps)", 5, 4)]
    assert str(bad.violations[0]) == "B->C: synaptic delay (steps) is 5, limit 4"


# Synapses (source, target pairs; every weight is non-zero), by hand:
#   A->B: per axis, the taps that land inside: rows 2+3+3+3+3+2 = 16, columns 2+3+3+3+2 = 13,
#         x C_in 3 x C_out 5 = 16 * 13 * 15 = 3,120 synapses
#   B->C: stride 2 -> output rows take input rows {0,1}, {1,2,3}, {3,4,5}: 2+3+3 = 8;
#         columns {0,1}, {1,2,3}, {3,4}: 2+3+2 = 7; x 5 x 5 = 1,400 synapses
# At 16-bit weights: B stores 6,240 bytes (41.6 per neuron, 150 neurons), C 2,800 bytes
# (62.2 per neuron, 45 neurons).
def test_synaptic_memory_per_core(tmp_path, graph):
    limits = {"neurons_per_core": 200, "weight_bits": 16}
    ok = check(graph, _profile(tmp_path, {**limits, "synaptic_memory_per_core_bytes": 4096}))
    assert ok.fits
    # A: 90 neurons, no synapses: 1 core; B: 150 neurons fit one core, 6,240 bytes need 2;
    # C: 45 neurons and 2,800 bytes: 1
    assert ok.cores == {"A": 1, "B": 2, "C": 1} and ok.total_cores == 4
    bad = check(graph, _profile(tmp_path, {**limits, "synaptic_memory_per_core_bytes": 50}))
    assert _violations(bad) == [("C", "synaptic memory of one neuron (bytes)",
                                 pytest.approx(2800 / 45), 50)]
    assert bad.cores == {"A": 1, "B": 125, "C": 56}  # ceil(6240 / 50), ceil(2800 / 50)


def test_layer_count(tmp_path, graph):
    assert check(graph, _profile(tmp_path, {"layers_max": 3})).fits
    bad = check(graph, _profile(tmp_path, {"layers_max": 2}))
    assert _violations(bad) == [("network", "spiking layers", 3, 2)]


# sinabs' memory rule for one DYNAP-CNN layer (c input channels, f features, k x k kernel,
# f_y x f_x output map): kernel = c * 2^(ceil(log2(k*k)) + ceil(log2 f)),
# neuron = f * 2^(ceil(log2 f_y) + ceil(log2 f_x)). By hand:
#   A: no input, kernel 0;             neuron 3 * 2^(3 + 3) = 192   (6 x 5 map)
#   B: kernel 3 * 2^(4 + 3) = 384;     neuron 5 * 2^(3 + 3) = 320
#   C: kernel 5 * 2^(4 + 3) = 640;     neuron 5 * 2^(2 + 2) = 80    (3 x 3 map)
# The largest needs take the largest layers: kernels 640, 384, 0 and neurons 320, 192, 80.
def test_speck_per_layer_memories(tmp_path, graph):
    def placement(kernel, neuron):
        return check(graph, _profile(tmp_path, {"kernel_memory_entries_per_layer": kernel,
                                                "neuron_memory_entries_per_layer": neuron}))

    assert placement([384, 640, 1], [80, 320, 192]).fits  # exactly enough, in any order
    bad = placement([383, 639, 1], [79, 319, 191])
    assert sorted(_violations(bad)) == sorted([
        ("C", "kernel memory (entries)", 640, 639), ("B", "kernel memory (entries)", 384, 383),
        ("B", "neuron memory (entries)", 320, 319), ("A", "neuron memory (entries)", 192, 191),
        ("C", "neuron memory (entries)", 80, 79)])


def test_the_shipped_speck_profile_applies_the_rule(graph):
    from sdm_neuro.hardware_profiles.profile import get_profile

    speck = get_profile("speck")
    assert speck.limits["kernel_memory_entries_per_layer"].value == (
        16384, 16384, 16384, 32768, 32768, 65536, 65536, 16384, 16384)
    # far below every layer's memories; only Lava's 24-bit state exceeds Speck's 16 bits
    assert _violations(check(graph, speck)) == [
        ("network", "neuron state precision (bits)", 24, 16)]


def test_a_network_without_on_chip_projections(tmp_path, graph):
    """One population read by the host only: no kernel on chip, nothing to violate (this
    was a ValueError, max() of nothing)."""
    alone = graph.replace(populations=graph.populations[:1],
                          projections=(Projection("A", "host", torch.ones(4, 3, 3, 3)),))
    placement = check(alone, _profile(tmp_path, {"kernel_size_max": 1, "layers_max": 1}))
    assert placement.fits
