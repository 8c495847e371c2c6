"""Cost model of the graded mapping (hardware_profiles/graded.py, sdm_neuro/energy/graded.py) on a
hand-made graded graph whose cores, memory and energy are worked out by hand below; the refusal
of chips without graded spikes or shared kernels; Loihi 2's new figures."""

import re

import pytest
import torch

from sdm_neuro import SpikingUNet, UNetConfig
from sdm_neuro.compiler.lower_graded import lower_graded
from sdm_neuro.energy.graded import GradedActivity, graded_counts, graded_energy
from sdm_neuro.errors import ConstraintError, ProfileError
from sdm_neuro.hardware_profiles.graded import graded_placement, graded_support
from sdm_neuro.hardware_profiles.profile import TAGS, get_profile, load_profile
from sdm_neuro.ir.graded import Connection, GradedGraph, Relay
from sdm_neuro.ir.graph import HostStages, Population
from sdm_neuro.simulators.integer import Counters
from sdm_test_support import GOOD_PROFILE

STEPS = 2
# A (4,6,6) pop --conv 3x3--> R1 (8,6,6) relay --identity, delay 3--> B (8,6,6) pop
# A --upsample--> U (4,12,12) relay --conv 3x3--> R2 (16,12,12) relay (the host's output)
SHAPES = {"A": (4, 6, 6), "R1": (8, 6, 6), "B": (8, 6, 6), "U": (4, 12, 12),
          "R2": (16, 12, 12)}


@pytest.fixture(scope="module")
def graph():
    cfg = UNetConfig(ch=4, ch_mult=(1,), num_res_blocks=1, img_ch=1, snn_steps=STEPS,
                     img_size=6)

    def zeros(c):
        return torch.zeros(STEPS, c, dtype=torch.float64)

    pops = tuple(Population(n, SHAPES[n], 1.0, zeros(SHAPES[n][0])) for n in ("A", "B"))
    relays = (Relay("R1", SHAPES["R1"], zeros(8)), Relay("U", SHAPES["U"], zeros(4), "upsample"),
              Relay("R2", SHAPES["R2"], zeros(16)))
    conns = (Connection("A", "R1", "conv", torch.ones(8, 4, 3, 3, dtype=torch.float64)),
             Connection("R1", "B", "identity", delay=3),
             Connection("A", "U", "upsample"),
             Connection("U", "R2", "conv", torch.ones(16, 4, 3, 3, dtype=torch.float64)))
    host = HostStages(torch.zeros(4, 1, 3, 3), (), {}, {}, zeros(16))
    return GradedGraph(cfg, pops, relays, conns, ("A", "R1", "B", "U", "R2"), "R2", host,
                       {"payload_bits": 24})


def _profile(tmp_path, limits: dict, energy: dict | None = None, name="chip"):
    def lines(d):
        return "\n".join(f'{k} = {{ value = {v}, tag = "datasheet", source = "test" }}'
                         for k, v in d.items())
    path = tmp_path / f"{name}.toml"
    path.write_text(f'name = "{name}"\ntitle = "t"\nkind = "neuromorphic"\nprocess = "p"\n'
                    f'description = "d"\n[limits]\n{lines(limits)}\n[energy]\n'
                    f'{lines(energy or {"synop_pj": 1.0})}\n')
    return load_profile(path)


GRADED = {"graded_payload_bits": 24, "shared_conv_kernels": 1}
# 100 neurons and 40 words a core, 8-bit conv weights, 16-bit explicit synapses (4 a word),
# 4 cores a chip, 4 neuron groups a core
LIMITS = {**GRADED, "neurons_per_core": 100, "synaptic_memory_words_per_core": 40,
          "weight_bits": 8, "explicit_synapse_bits": 16, "cores_per_chip": 4,
          "neuron_groups_per_core": 4}


# By hand. A kernel of C_in = 4, 3x3 at 8 bits: 4*9 = 36 rows of ceil(c*8/64) words: 36 words
# for c <= 8 output channels on a core, 72 beyond (over the 40 a core has). A node splits into
# g = ceil(C/c) channel groups x s spatial tiles of p <= 100 // c pixels; the fewest g*s wins
# (first c on a tie); the s tiles are even, ceil(H*W/s) pixels on the fullest core:
#   A  (144 neurons, no synapses): c=2, p=36: g=2, s=1 -> 2 cores (c=4: p=25, g=1, s=2 -> 2)
#   R1 (288, conv 36 words): c=8, p=12: g=1, s=3 -> 3 (c=2: g=4; c=4,5: g=2, s=2 -> 4);
#      3 copies of the 36-word kernel = 108 words
#   B  (288, one 16-bit synapse each: 4 a word): c=8, p=12 -> 3 cores, 24 words on the fullest
#      (96 neurons), 288/4 = 72 words in all
#   U  (576, one synapse each): c=2, p=50: g=2, s=ceil(144/50)=3 -> 6 (c=1: p=100, g=4, s=2 ->
#      8; c=4: p=25, g=1, s=6 -> 6, later); tiles of 48 pixels: 96 neurons and 24 words on the
#      fullest core; 576/4 = 144 words
#   R2 (2304, conv 36 words): c=2, p=50: g=8, s=3 -> 24 (c=4: g=4, s=6 -> 24; c=8: g=2,
#      s=12 -> 24, later); 96 neurons a core; 8 groups x 3 tiles x 36 = 864 words
# total 2+3+3+6+24 = 38 cores -> ceil(38/4) = 10 chips; 0+108+72+144+864 = 1,188 words.
# Memory alone (neurons unlimited): A 1, R1 1, B 2 (c=4: 36 pixels x 4 = 144 synapses = 36
# words), U 4 (c=1: 144 synapses), R2 2 (c=8).
# Stored synapses: R1 3 tiles x 8*4*9 = 864 kernel weights, B 288 and U 576 explicit, R2 3 tiles
# x 16*4*9 = 1,728: 3,456.
WANT = {"A": (2, 2, 1, 72, 0, 0), "R1": (3, 1, 3, 96, 36, 108), "B": (3, 1, 3, 96, 0, 72),
        "U": (6, 2, 3, 96, 0, 144), "R2": (24, 8, 3, 96, 36, 864)}
NEURON_BOUND = {"A": 2, "R1": 3, "B": 3, "U": 6, "R2": 24}
MEMORY_BOUND = {"A": 1, "R1": 1, "B": 2, "U": 4, "R2": 2}


def test_cores_memory_and_chips_by_hand(tmp_path, graph):
    pl = graded_placement(graph, _profile(tmp_path, LIMITS))
    got = {n.name: (n.cores, n.groups, n.tiles, n.core_neurons, n.kernel_words, n.words)
           for n in pl.nodes}
    assert got == WANT
    assert {n.name: n.neuron_bound for n in pl.nodes} == NEURON_BOUND
    assert {n.name: n.memory_bound for n in pl.nodes} == MEMORY_BOUND
    assert {n.name: n.explicit_words for n in pl.nodes} == {"A": 0, "R1": 0, "B": 24, "U": 24,
                                                            "R2": 0}
    assert pl.total_cores == 38 and pl.chips == 10 and pl.memory_words == 1188
    assert {n.name: n.synapses for n in pl.nodes} == {"A": 0, "R1": 864, "B": 288, "U": 576,
                                                      "R2": 1728}
    assert pl.fits and pl.to_dict()["memory_bytes"] == 1188 * 8


# Co-location by hand: R1's and R2's 27 cores keep 4 free neurons, 4 free words, 3 free groups.
# U (576, the largest kernel-free node) puts 4 neurons (1 word) on each: 108; the other 468 take
# 5 cores of their own (100 x 4 + 68; the last keeps 32 neurons, 40 - 17 = 23 words). B: 32
# there (8 words), then 100 + 100 + 56 in 3 new cores (the last keeps 44). A (no synapses): 44
# there, 100 in 1 new core. 27 + 5 + 3 + 1 = 36 cores -> 9 chips.
def test_colocation_by_hand(tmp_path, graph):
    pl = graded_placement(graph, _profile(tmp_path, LIMITS))
    assert (pl.colocated_cores, pl.colocated_chips) == (36, 9)
    alone = graded_placement(graph, _profile(tmp_path, {k: v for k, v in LIMITS.items()
                                                        if k != "neuron_groups_per_core"}))
    assert alone.total_cores == 38 and alone.colocated_cores is None


def test_violations(tmp_path, graph):
    bad = graded_placement(graph, _profile(tmp_path, {
        **LIMITS, "synaptic_delay_steps_max": 2, "graded_payload_bits": 16,
        "synaptic_memory_words_per_core": 30}))
    got = [(v.where, v.quantity, v.actual, v.limit) for v in bad.violations]
    assert got == [("R1->B", "synaptic delay (steps)", 3, 2),
                   ("network", "graded payload (bits)", 24, 16),
                   # one output channel's 36-word kernel slice is over 30 words
                   ("R1", "synaptic memory of one output channel (words)", 36, 30),
                   ("R2", "synaptic memory of one output channel (words)", 36, 30)]
    assert bad.cores["R1"] is None and bad.colocated_cores is None
    ok = graded_placement(graph, _profile(tmp_path, {**LIMITS, "synaptic_delay_steps_max": 3,
                                                     "chips_per_system_max": 10}))
    assert ok.fits
    assert [str(v) for v in graded_placement(graph, _profile(
        tmp_path, {**LIMITS, "chips_per_system_max": 9})).violations] == [
        "network: chips is 10, limit 9"]


@pytest.mark.parametrize("name", ["loihi1", "truenorth", "spinnaker2", "speck"])
def test_chips_without_graded_spikes_are_refused(graph, name):
    profile = get_profile(name)
    why = (f"profile {name} cannot run the graded mapping: no graded spikes "
           "(graded_payload_bits absent)")
    assert graded_support(profile) == why
    with pytest.raises(ConstraintError, match=re.escape(why)):
        graded_placement(graph, profile)
    with pytest.raises(ConstraintError, match=re.escape(why)):
        graded_energy(profile, GradedActivity({}, {}, {}, 0, 0), graph)


def test_graded_spikes_without_shared_kernels_are_refused(tmp_path, graph):
    profile = _profile(tmp_path, {"graded_payload_bits": 24})
    with pytest.raises(ConstraintError, match=re.escape(
            "profile chip cannot run the graded mapping: no shared conv kernels "
            "(shared_conv_kernels absent)")):
        graded_placement(graph, profile)


def test_loihi2_flags_parse_with_sources():
    lim = get_profile("loihi2").limits
    want = {"graded_payload_bits": 24, "shared_conv_kernels": 1,
            "neurons_per_core_practical": 4096, "neuron_groups_per_core": 8,
            "synaptic_memory_words_per_core": 12000, "explicit_synapse_bits": 21}
    assert {k: lim[k].value for k in want} == want
    assert all(lim[k].tag in TAGS and lim[k].source.strip() for k in want)
    energy = get_profile("loihi2").energy
    assert energy["graded_message_pj"].value == 2 * energy["spike_message_pj"].value
    assert "2 x spike_message_pj" in energy["graded_message_pj"].derivation
    assert graded_support(get_profile("loihi2")) is None


def test_flag_values_are_checked(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(GOOD_PROFILE.replace("[energy]", 'shared_conv_kernels = { value = 0, tag = '
                                         '"datasheet", source = "m" }\n[energy]'))
    with pytest.raises(ProfileError, match="limits.shared_conv_kernels: value must be a "
                                           "positive integer"):
        load_profile(path)


# Energy by hand, per image per call (the counters summed 2 images): spikes A 5, B 3; payloads
# R1 10, R2 15 (graded), U 4 (an upsample relay: 0/1, so binary messages); synops A->R1 50,
# A->U 20, U->R2 32 (binary sources), R1->B 10 (graded); neuron updates 2 steps x 3,600
# neurons = 7,200; host MACs 500.
#   binary synops 102 x 2 pJ = 204; graded 10 x 2 = 20; spike messages (5+3+4) x 1 = 12;
#   graded messages 25 x 3 = 75; neuron updates 7,200 x 0.5 = 3,600; host 500 x 0.25 = 125.
def test_energy_by_hand(tmp_path, graph):
    c = Counters()
    c.spikes.update({"A": 10, "B": 6})
    c.payloads.update({"R1": 20, "U": 8, "R2": 30})
    c.synops.update({"A->R1": 100, "A->U": 40, "U->R2": 64, "R1->B": 20})
    c.neuron_updates, c.host_macs = 2 * STEPS * 3600, 1000
    act = GradedActivity.from_counters(c, image_calls=2)
    assert graded_counts(act, graph) == {
        "binary spike messages": 12, "graded messages": 25, "graded payload bits": 25 * 24,
        "binary synaptic ops": 102, "graded synaptic ops": 10, "neuron updates": 7200,
        "host MACs": 500}
    prof = _profile(tmp_path, GRADED, {"synop_pj": 2.0, "spike_message_pj": 1.0,
                                       "graded_message_pj": 3.0,
                                       "neuron_update_active_pj": 0.5, "host_mac_pj": 0.25})
    e = graded_energy(prof, act, graph)
    assert e.components == {"synaptic ops (binary)": 204, "synaptic ops (graded)": 20,
                            "spike messages": 12, "graded messages": 75,
                            "neuron updates": 3600, "host": 125}
    assert e.total_pj == 4036
    # Loihi 2: derived figures are stated; no neuron-update figure
    e2 = graded_energy(get_profile("loihi2"), act, graph)
    assert e2.components["graded messages"] == pytest.approx(25 * 3.4)
    assert any(n.startswith("graded_message_pj = 3.4 pJ is not a published figure")
               for n in e2.notes)
    assert "neuron updates" not in e2.components


def test_energy_refuses_foreign_nodes(graph):
    from sdm_neuro.errors import UsageError

    with pytest.raises(UsageError, match="nodes this graded graph does not have"):
        graded_counts(GradedActivity({"Z": 1}, {}, {}, 0, 0), graph)


def test_a_lowered_unet_fits_one_loihi2_chip():
    torch.manual_seed(0)
    cfg = UNetConfig(ch=8, ch_mult=(1, 2), num_res_blocks=1, img_ch=1, snn_steps=2,
                     img_size=8)
    with torch.no_grad():
        graph = lower_graded(SpikingUNet(cfg).eval())
    pl = graded_placement(graph, get_profile("loihi2"))
    assert pl.fits and pl.chips == 1
    # every node's own cores hold its neurons at 4,096 a core
    assert all(n.cores >= -(-n.neurons // 4096) for n in pl.nodes)
    assert pl.colocated_cores <= pl.total_cores
