"""The design rules: one small named function per limit of a hardware profile, as Rockpool's Xylo
design-rule checks are written. :data:`RULES` lists them in the order they report;
:func:`run_rules` runs them.

A rule reads counts, not the network: :mod:`.constraints` counts a deployment graph (or a
feed-forward SNN) into :class:`Site` records, one per group of neurons placed on its own cores
(a population, its TSM relays, the TSM clock neurons, a feed-forward layer), and one
:class:`Network` record of network-wide counts. A *site* rule takes one site, a *network* rule the
network; both take the profile's limits (``name -> value``) and return their
:class:`Violation` list, empty when the profile does not give the limit.

Order: a run of consecutive rules of one scope is one pass, and a site pass runs every rule of
the run on one site before the next site. So a report lists the precision rules, then site by
site its fan-in, input axons, fan-out, delays and synaptic memory, then the network's totals.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

from sdm_neuro.ir.fixed_point import STATE_BITS, WEIGHT_BITS

NEEDED_WEIGHT_BITS = WEIGHT_BITS   # Lava's 8-bit weight mantissa (even integers in [-256, 254])
NEEDED_STATE_BITS = STATE_BITS     # u and v of Lava's fixed-point LIF

Limits = dict[str, object]


@dataclass(frozen=True)
class Violation:
    where: str          # population, projection or "network"
    quantity: str
    actual: float
    limit: float

    def __str__(self) -> str:
        return f"{self.where}: {self.quantity} is {self.actual:,g}, limit {self.limit:,g}"


@dataclass(frozen=True)
class Site:
    """One group of neurons with its own cores, as the site rules see it. A count that is None
    is not checked (the TSM clock neurons have no fan-in or fan-out check)."""

    where: str
    neurons: int
    fan_in: int | None = None          # distinct source neurons onto one neuron, the largest
    fan_out: int | None = None         # targets of one neuron, the largest
    fan_out_where: str | None = None   # whose fan-out ``fan_out`` is, when not ``where`` (the
    #                                    synapses into a feed-forward layer fan out of the layer
    #                                    before it)
    delays: tuple[tuple[str, int], ...] = ()  # (projection "src->dst", synaptic delay) inputs
    synapse_bytes: float = 0.0         # memory of the synapses into these neurons
    copies: int = 1                    # identical copies placed (T relay populations)


@dataclass(frozen=True)
class Network:
    """Network-wide counts (TSM relay and clock neurons included) and the chip count."""

    layers: int                        # spiking layers (populations)
    neurons: int
    synapses: int                      # stored synapses on chip
    kernel: int                        # largest kernel side on chip (1 when none)
    chips: int | None                  # from the core, neuron and synapse counts (None: no chip
    #                                    limit in the profile)
    stem: tuple[str, int] | None = None  # the host-driven population and its neurons
    layer_memories: tuple[tuple[str, int, int], ...] | None = None  # (population, kernel
    #                                    entries, neuron entries) by sinabs' rule; None: not
    #                                    counted (feed-forward SNNs)


# -- network rules: precision --------------------------------------------------------------------
def weight_precision(net: Network, lim: Limits) -> list[Violation]:
    """The profile's weight precision (``weight_bits``) holds Lava's 8-bit weight mantissa."""
    if lim.get("weight_bits") is not None and lim["weight_bits"] < NEEDED_WEIGHT_BITS:
        return [Violation("network", "weight precision (bits)", NEEDED_WEIGHT_BITS,
                          lim["weight_bits"])]
    return []


def state_precision(net: Network, lim: Limits) -> list[Violation]:
    """The profile's neuron state precision (``state_bits``) holds Lava's 24-bit u and v."""
    if lim.get("state_bits") is not None and lim["state_bits"] < NEEDED_STATE_BITS:
        return [Violation("network", "neuron state precision (bits)", NEEDED_STATE_BITS,
                          lim["state_bits"])]
    return []


# -- site rules ----------------------------------------------------------------------------------
def fan_in_limit(site: Site, lim: Limits) -> list[Violation]:
    """No neuron receives from more distinct source neurons than ``fan_in_per_neuron_max``."""
    key = "fan_in_per_neuron_max"
    if site.fan_in is not None and key in lim and site.fan_in > lim[key]:
        return [Violation(site.where, "fan-in (source neurons per neuron)", site.fan_in,
                          lim[key])]
    return []


def input_axons_limit(site: Site, lim: Limits) -> list[Violation]:
    """One neuron's fan-in, a lower bound of a core's distinct input axons, is at most
    ``input_axons_per_core_max``."""
    key = "input_axons_per_core_max"
    if site.fan_in is not None and key in lim and site.fan_in > lim[key]:
        return [Violation(site.where,
                          "fan-in of one neuron (a lower bound of input axons per core)",
                          site.fan_in, lim[key])]
    return []


def fan_out_limit(site: Site, lim: Limits) -> list[Violation]:
    """No neuron drives more targets than ``fan_out_per_neuron_max``."""
    key = "fan_out_per_neuron_max"
    if site.fan_out is not None and key in lim and site.fan_out > lim[key]:
        return [Violation(site.fan_out_where or site.where, "fan-out (targets per neuron)",
                          site.fan_out, lim[key])]
    return []


def synaptic_delay_limit(site: Site, lim: Limits) -> list[Violation]:
    """Every incoming projection's synaptic delay is at most ``synaptic_delay_steps_max``."""
    key = "synaptic_delay_steps_max"
    if key not in lim:
        return []
    return [Violation(proj, "synaptic delay (steps)", delay, lim[key])
            for proj, delay in site.delays if delay > lim[key]]


def synaptic_memory_limit(site: Site, lim: Limits) -> list[Violation]:
    """One neuron's incoming synapses fit one core's ``synaptic_memory_per_core_bytes`` (a site
    is spread over cores by neurons; checked with the core count, i.e. when the profile also
    gives ``neurons_per_core``)."""
    key = "synaptic_memory_per_core_bytes"
    if "neurons_per_core" not in lim or key not in lim:
        return []
    per_neuron = site.synapse_bytes / site.neurons
    if per_neuron > lim[key]:
        return [Violation(site.where, "synaptic memory of one neuron (bytes)", per_neuron,
                          lim[key])]
    return []


# -- network rules: totals -----------------------------------------------------------------------
def input_channels_limit(net: Network, lim: Limits) -> list[Violation]:
    """The host drives every stem neuron (the pixel conv): at most ``input_channels_max``."""
    key = "input_channels_max"
    if net.stem is not None and key in lim and net.stem[1] > lim[key]:
        return [Violation(net.stem[0], "input channels (host-driven neurons)", net.stem[1],
                          lim[key])]
    return []


def _memory_fits(needs: Sequence[tuple[str, int]], caps: Sequence[int], quantity: str
                 ) -> list[Violation]:
    """The largest needs take the largest layers, one each."""
    caps = sorted(caps, reverse=True)
    return [Violation(name, quantity, need, caps[i])
            for i, (name, need) in enumerate(sorted(needs, key=lambda n: -n[1])[:len(caps)])
            if need > caps[i]]


def kernel_memory_limit(net: Network, lim: Limits) -> list[Violation]:
    """Speck / DYNAP-CNN: each layer's kernel memory (sinabs' rule) fits one of the chip's
    ``kernel_memory_entries_per_layer``, the largest needs in the largest layers."""
    key = "kernel_memory_entries_per_layer"
    if net.layer_memories is None or key not in lim:
        return []
    return _memory_fits([(n, k) for n, k, _ in net.layer_memories], lim[key],
                        "kernel memory (entries)")


def neuron_memory_limit(net: Network, lim: Limits) -> list[Violation]:
    """Speck / DYNAP-CNN: each layer's neuron memory (sinabs' rule) fits one of the chip's
    ``neuron_memory_entries_per_layer``, the largest needs in the largest layers (checked with
    the kernel memories: only a profile with ``kernel_memory_entries_per_layer``)."""
    key = "neuron_memory_entries_per_layer"
    if net.layer_memories is None or key not in lim \
            or "kernel_memory_entries_per_layer" not in lim:
        return []
    return _memory_fits([(n, m) for n, _, m in net.layer_memories], lim[key],
                        "neuron memory (entries)")


def layers_limit(net: Network, lim: Limits) -> list[Violation]:
    """At most ``layers_max`` spiking layers (a layer-mapped chip: one layer per core)."""
    if "layers_max" in lim and net.layers > lim["layers_max"]:
        return [Violation("network", "spiking layers", net.layers, lim["layers_max"])]
    return []


def neurons_limit(net: Network, lim: Limits) -> list[Violation]:
    """At most ``hidden_neurons_max`` neurons in all."""
    if "hidden_neurons_max" in lim and net.neurons > lim["hidden_neurons_max"]:
        return [Violation("network", "neurons", net.neurons, lim["hidden_neurons_max"])]
    return []


def kernel_size_limit(net: Network, lim: Limits) -> list[Violation]:
    """No on-chip conv kernel is wider than ``kernel_size_max``."""
    if "kernel_size_max" in lim and net.kernel > lim["kernel_size_max"]:
        return [Violation("network", "kernel size", net.kernel, lim["kernel_size_max"])]
    return []


def chips_limit(net: Network, lim: Limits) -> list[Violation]:
    """The chips the network needs are at most ``chips_per_system_max``."""
    key = "chips_per_system_max"
    if net.chips is not None and key in lim and net.chips > lim[key]:
        return [Violation("network", "chips", net.chips, lim[key])]
    return []


class Rule(NamedTuple):
    """One design rule: its name, what it checks (a site or the network), the profile limits
    it reads and the function."""

    name: str
    scope: Literal["site", "network"]
    limits: tuple[str, ...]
    check: Callable[..., list[Violation]]

    @property
    def doc(self) -> str:
        return " ".join((self.check.__doc__ or "").split())


#: Every design rule, in the order a report lists its violations.
RULES: tuple[Rule, ...] = (
    Rule("weight_precision", "network", ("weight_bits",), weight_precision),
    Rule("state_precision", "network", ("state_bits",), state_precision),
    Rule("fan_in_limit", "site", ("fan_in_per_neuron_max",), fan_in_limit),
    Rule("input_axons_limit", "site", ("input_axons_per_core_max",), input_axons_limit),
    Rule("fan_out_limit", "site", ("fan_out_per_neuron_max",), fan_out_limit),
    Rule("synaptic_delay_limit", "site", ("synaptic_delay_steps_max",), synaptic_delay_limit),
    Rule("synaptic_memory_limit", "site", ("synaptic_memory_per_core_bytes",
                                           "neurons_per_core"), synaptic_memory_limit),
    Rule("input_channels_limit", "network", ("input_channels_max",), input_channels_limit),
    Rule("kernel_memory_limit", "network", ("kernel_memory_entries_per_layer",),
         kernel_memory_limit),
    Rule("neuron_memory_limit", "network", ("neuron_memory_entries_per_layer",
                                            "kernel_memory_entries_per_layer"),
         neuron_memory_limit),
    Rule("layers_limit", "network", ("layers_max",), layers_limit),
    Rule("neurons_limit", "network", ("hidden_neurons_max",), neurons_limit),
    Rule("kernel_size_limit", "network", ("kernel_size_max",), kernel_size_limit),
    Rule("chips_limit", "network", ("chips_per_system_max",), chips_limit),
)


def run_rules(sites: Sequence[Site], net: Network, lim: Limits,
              rules: Sequence[Rule] = RULES) -> list[Violation]:
    """Every rule's violations, in report order (see the module docstring)."""
    out: list[Violation] = []
    for scope, run in itertools.groupby(rules, key=lambda r: r.scope):
        run = list(run)
        for subject in (sites if scope == "site" else (net,)):
            for rule in run:
                out += rule.check(subject, lim)
    return out
