"""The design rules (hardware_profiles/rules.py), each alone on hand-made counts: one case that
breaks the rule and one that does not, the expected violations written out by hand; and the rule
list itself (every rule listed once, named, documented, in report order)."""

import inspect

import pytest

from sdm_neuro.hardware_profiles import rules as R
from sdm_neuro.hardware_profiles.profile import SCHEMA
from sdm_neuro.hardware_profiles.rules import RULES, Network, Site, Violation, run_rules

NET = Network(layers=3, neurons=300, synapses=5000, kernel=3, chips=2, stem=("stem", 48),
              layer_memories=(("a", 0, 192), ("b", 384, 320), ("c", 640, 80)))
SITE = Site("pop", neurons=10, fan_in=9, fan_out=27, delays=(("x->pop", 3), ("y->pop", 6)),
            synapse_bytes=400.0)


def test_weight_precision():
    assert R.weight_precision(NET, {"weight_bits": 8}) == []
    assert R.weight_precision(NET, {}) == []
    assert R.weight_precision(NET, {"weight_bits": 4}) == [
        Violation("network", "weight precision (bits)", 8, 4)]


def test_state_precision():
    assert R.state_precision(NET, {"state_bits": 24}) == []
    assert R.state_precision(NET, {"state_bits": 16}) == [
        Violation("network", "neuron state precision (bits)", 24, 16)]


def test_fan_in_limit():
    assert R.fan_in_limit(SITE, {"fan_in_per_neuron_max": 9}) == []
    assert R.fan_in_limit(SITE, {"fan_in_per_neuron_max": 8}) == [
        Violation("pop", "fan-in (source neurons per neuron)", 9, 8)]
    assert R.fan_in_limit(Site("clocks", 3), {"fan_in_per_neuron_max": 0}) == []  # not counted


def test_input_axons_limit():
    assert R.input_axons_limit(SITE, {"input_axons_per_core_max": 9}) == []
    assert R.input_axons_limit(SITE, {"input_axons_per_core_max": 5}) == [
        Violation("pop", "fan-in of one neuron (a lower bound of input axons per core)", 9, 5)]


def test_fan_out_limit():
    assert R.fan_out_limit(SITE, {"fan_out_per_neuron_max": 27}) == []
    assert R.fan_out_limit(SITE, {"fan_out_per_neuron_max": 26}) == [
        Violation("pop", "fan-out (targets per neuron)", 27, 26)]
    # a feed-forward layer's synapses give the fan-out of the layer before it
    layer = Site("l1", 10, fan_in=4, fan_out=12, fan_out_where="l0")
    assert R.fan_out_limit(layer, {"fan_out_per_neuron_max": 11}) == [
        Violation("l0", "fan-out (targets per neuron)", 12, 11)]


def test_synaptic_delay_limit():
    assert R.synaptic_delay_limit(SITE, {"synaptic_delay_steps_max": 6}) == []
    assert R.synaptic_delay_limit(SITE, {"synaptic_delay_steps_max": 2}) == [
        Violation("x->pop", "synaptic delay (steps)", 3, 2),
        Violation("y->pop", "synaptic delay (steps)", 6, 2)]


def test_synaptic_memory_limit():
    # 400 bytes over 10 neurons: 40 bytes per neuron
    lim = {"neurons_per_core": 100}
    assert R.synaptic_memory_limit(SITE, {**lim, "synaptic_memory_per_core_bytes": 40}) == []
    assert R.synaptic_memory_limit(SITE, {**lim, "synaptic_memory_per_core_bytes": 39}) == [
        Violation("pop", "synaptic memory of one neuron (bytes)", 40.0, 39)]
    # checked with the core count only
    assert R.synaptic_memory_limit(SITE, {"synaptic_memory_per_core_bytes": 39}) == []


def test_input_channels_limit():
    assert R.input_channels_limit(NET, {"input_channels_max": 48}) == []
    assert R.input_channels_limit(NET, {"input_channels_max": 47}) == [
        Violation("stem", "input channels (host-driven neurons)", 48, 47)]
    no_stem = Network(3, 300, 5000, 3, 2)
    assert R.input_channels_limit(no_stem, {"input_channels_max": 1}) == []


def test_kernel_memory_limit():
    # needs 640, 384, 0 take the largest layers first: 640 <= 640, 384 <= 400, 0 <= 1
    assert R.kernel_memory_limit(NET, {"kernel_memory_entries_per_layer": (400, 1, 640)}) == []
    assert R.kernel_memory_limit(NET, {"kernel_memory_entries_per_layer": (639, 383)}) == [
        Violation("c", "kernel memory (entries)", 640, 639),
        Violation("b", "kernel memory (entries)", 384, 383)]


def test_neuron_memory_limit():
    kern = {"kernel_memory_entries_per_layer": (10**6,) * 3}
    assert R.neuron_memory_limit(NET, {**kern, "neuron_memory_entries_per_layer":
                                       (80, 320, 192)}) == []
    # needs 320 (b), 192 (a), 80 (c) against layers 500, 191, 80: only a's breaks its layer
    assert R.neuron_memory_limit(NET, {**kern, "neuron_memory_entries_per_layer":
                                       (80, 500, 191)}) == [
        Violation("a", "neuron memory (entries)", 192, 191)]
    # checked with the kernel memories only
    assert R.neuron_memory_limit(NET, {"neuron_memory_entries_per_layer": (1, 1, 1)}) == []


def test_layers_limit():
    assert R.layers_limit(NET, {"layers_max": 3}) == []
    assert R.layers_limit(NET, {"layers_max": 2}) == [
        Violation("network", "spiking layers", 3, 2)]


def test_neurons_limit():
    assert R.neurons_limit(NET, {"hidden_neurons_max": 300}) == []
    assert R.neurons_limit(NET, {"hidden_neurons_max": 299}) == [
        Violation("network", "neurons", 300, 299)]


def test_kernel_size_limit():
    assert R.kernel_size_limit(NET, {"kernel_size_max": 3}) == []
    assert R.kernel_size_limit(NET, {"kernel_size_max": 1}) == [
        Violation("network", "kernel size", 3, 1)]


def test_chips_limit():
    assert R.chips_limit(NET, {"chips_per_system_max": 2}) == []
    assert R.chips_limit(NET, {"chips_per_system_max": 1}) == [
        Violation("network", "chips", 2, 1)]
    assert R.chips_limit(Network(3, 300, 5000, 3, None), {"chips_per_system_max": 1}) == []


RULE_NAMES = ("weight_precision", "state_precision", "fan_in_limit", "input_axons_limit",
              "fan_out_limit", "synaptic_delay_limit", "synaptic_memory_limit",
              "input_channels_limit", "kernel_memory_limit", "neuron_memory_limit",
              "layers_limit", "neurons_limit", "kernel_size_limit", "chips_limit")


def test_rules_lists_every_rule_once_named_and_documented():
    assert tuple(r.name for r in RULES) == RULE_NAMES
    assert len(set(RULE_NAMES)) == len(RULE_NAMES)
    # every rule function of the module is listed: a public function (subject, lim)
    found = {name for name, f in inspect.getmembers(R, inspect.isfunction)
             if f.__module__ == R.__name__ and not name.startswith("_")
             and list(inspect.signature(f).parameters) in (["site", "lim"], ["net", "lim"])}
    assert found == set(RULE_NAMES)
    for r in RULES:
        assert r.check is getattr(R, r.name)
        assert r.doc and r.scope in ("site", "network"), r.name
        assert list(inspect.signature(r.check).parameters)[0] == (
            "site" if r.scope == "site" else "net"), r.name
        assert set(r.limits) <= set(SCHEMA["limits"]), r.name
        for key in r.limits:
            assert key in r.check.__doc__, (r.name, key)


def test_run_rules_reports_site_by_site_between_the_network_rules():
    lim = {"weight_bits": 4, "fan_in_per_neuron_max": 1, "fan_out_per_neuron_max": 1,
           "layers_max": 1}
    sites = [Site("p", 1, fan_in=2, fan_out=3), Site("q", 1, fan_in=4, fan_out=5)]
    got = [str(v) for v in run_rules(sites, Network(2, 2, 0, 1, None), lim)]
    assert got == ["network: weight precision (bits) is 8, limit 4",
                   "p: fan-in (source neurons per neuron) is 2, limit 1",
                   "p: fan-out (targets per neuron) is 3, limit 1",
                   "q: fan-in (source neurons per neuron) is 4, limit 1",
                   "q: fan-out (targets per neuron) is 5, limit 1",
                   "network: spiking layers is 2, limit 1"]


@pytest.mark.parametrize("lim", [{}, {"neurons_per_core": 1}])
def test_no_limit_no_violation(lim):
    assert run_rules([SITE], NET, lim) == []
