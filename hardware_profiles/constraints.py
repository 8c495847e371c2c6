"""Design-rule checks of a deployment graph against a hardware profile, and a core / chip count.

Each check states the population or projection, the quantity, the actual value and the limit
(as Rockpool's design-rule checks do). The rules themselves are small named functions in
:mod:`.rules` (``RULES``); this module counts what they read (fan-in, fan-out, synapses and
their memory per population, the network's totals; the counts themselves are
:mod:`sdm_neuro.ir.connectivity`'s), places the network on cores and chips, and runs them.

The mapping model is deliberately simple and stated in every result: one population per set of
cores (populations do not share cores), synapses stored one per (source neuron, target neuron)
pair at the weight precision (no convolutional weight sharing is assumed, since none is
documented for these chips), a core holds as many neurons as both its neuron limit and its
synaptic memory allow.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from sdm_neuro.ir.connectivity import fan_in, fan_out, layer_connectivity, stored_synapses
from sdm_neuro.ir.feedforward import QuantizedSNN
from sdm_neuro.ir.graph import HOST, DeployGraph, relayed

from .profile import Profile
from .rules import (NEEDED_STATE_BITS, NEEDED_WEIGHT_BITS, RULES, Network, Site, Violation,
                    run_rules)

__all__ = ["MAPPING_MODEL", "NEEDED_STATE_BITS", "NEEDED_WEIGHT_BITS", "RULES", "Placement",
           "GraphCounts", "Violation", "check", "check_feedforward", "chip_count", "graph_counts",
           "site_cores"]

MAPPING_MODEL = ("one population per set of cores; synapses stored per (source, target) pair "
                 "at the profile's weight precision; no convolutional weight sharing; TSM: one "
                 "synapse matrix per SNN step, relay populations and clock neurons counted")

# Limits a profile may give that no rule checks, with why.
UNCHECKED = {"fan_out_edges_per_core_max": "needs a placement of neurons on cores (not modelled)"}


@dataclass(frozen=True)
class Placement:
    profile: str
    cores: dict[str, int]            # population -> cores (empty when the profile has no core)
    total_cores: int | None
    chips: int | None
    violations: tuple[Violation, ...]
    unchecked: tuple[str, ...]       # limits the profile has that no check uses, with why

    @property
    def fits(self) -> bool:
        return not self.violations

    def to_dict(self) -> dict:
        return {"profile": self.profile, "fits": self.fits, "total_cores": self.total_cores,
                "chips": self.chips, "cores_per_population": self.cores,
                "violations": [{"where": v.where, "quantity": v.quantity, "actual": v.actual,
                                "limit": v.limit, "message": str(v)} for v in self.violations],
                "unchecked": list(self.unchecked), "mapping_model": MAPPING_MODEL}


def _limits(profile: Profile) -> dict:
    return {k: f.value for k, f in profile.limits.items()}


def _bytes_per_synapse(lim: dict) -> float:
    return max(lim.get("weight_bits") or NEEDED_WEIGHT_BITS, 1) / 8


def site_cores(site: Site, lim: dict) -> int:
    """Cores of one site (all its copies): its neurons, and its incoming synapses' memory."""
    n_cores = math.ceil(site.neurons / lim["neurons_per_core"])
    if "synaptic_memory_per_core_bytes" in lim:
        n_cores = max(n_cores, math.ceil(site.synapse_bytes
                                         / lim["synaptic_memory_per_core_bytes"]))
    return site.copies * n_cores


def chip_count(total_cores: int | None, neurons: int, synapses: int, lim: dict) -> int | None:
    """Chips: by cores when the profile gives cores per chip, else by neurons per chip; at
    least what its neurons and synapses per chip need. None when the profile gives no chip
    size."""
    chips = None
    if total_cores is not None and "cores_per_chip" in lim:
        chips = math.ceil(total_cores / lim["cores_per_chip"])
    elif "neurons_per_chip" in lim:
        chips = math.ceil(neurons / lim["neurons_per_chip"])
    if chips is not None and "neurons_per_chip" in lim:
        chips = max(chips, math.ceil(neurons / lim["neurons_per_chip"]))
    if chips is not None and "synapses_per_chip" in lim:
        chips = max(chips, math.ceil(synapses / lim["synapses_per_chip"]))
    return chips


def _placement(profile: Profile, lim: dict, sites: list[Site], layers: int, neurons: int,
               synapses: int, kernel: int, **network) -> Placement:
    """Cores and chips of the counted network, and every rule's violations."""
    cores = {s.where: site_cores(s, lim) for s in sites} if "neurons_per_core" in lim else {}
    total = sum(cores.values()) if cores else None
    net = Network(layers, neurons, synapses, kernel, chip_count(total, neurons, synapses, lim),
                  **network)
    unchecked = tuple(f"{key}: {why}" for key, why in UNCHECKED.items() if key in lim)
    return Placement(profile.name, cores, total, net.chips, tuple(run_rules(sites, net, lim)),
                     unchecked)


def layer_memories(graph: DeployGraph) -> tuple[tuple[str, int, int], ...]:
    """(population, kernel memory entries, neuron memory entries) of each population by sinabs'
    rule for one DYNAP-CNN layer: kernel = c * 2^(ceil(log2(k*k)) + ceil(log2 f)) summed over its
    inputs, neuron = f * 2^(ceil(log2 f_y) + ceil(log2 f_x))."""
    def log2up(n: int) -> int:
        return math.ceil(math.log2(n)) if n > 1 else 0

    needs = []
    for pop in graph.populations:
        c_out, h, w = pop.shape
        kern = sum(p.weight.shape[1] * 2 ** (log2up(p.kernel * p.kernel) + log2up(c_out))
                   for p in graph.inputs(pop.name))
        neur = c_out * 2 ** (log2up(h) + log2up(w))
        needs.append((pop.name, kern, neur))
    return tuple(needs)


@dataclass(frozen=True)
class GraphCounts:
    """What :func:`check` counts in a graph whatever the profile: computed once when several
    profiles are checked (the counts of the paper configuration take seconds)."""

    sites: tuple[tuple[Site, int | None], ...]  # each site with its synapses (None: the site
    #                                             gives its synapse_bytes itself)
    layers: int
    neurons: int
    synapses: int
    kernel: int
    stem: tuple[str, int]
    layer_memories: tuple


def graph_counts(graph: DeployGraph) -> GraphCounts:
    shapes = {p.name: p.shape for p in graph.populations}
    # TSM: a relayed projection (per-step weights) stores one synapse matrix per SNN step and
    # runs through T relay populations of its source (2 synapses per relay neuron: source and
    # clock) plus one clock neuron per distinct gating step (counted as one population).
    steps = graph.config.snn_steps
    on_chip = [p for p in graph.projections if p.dst != HOST]
    stored = {id(p): stored_synapses(p, shapes[p.src]) * (steps if relayed(p) else 1)
              for p in on_chip}
    sites: list[tuple[Site, int | None]] = []
    extra_neurons = extra_layers = extra_syn = 0
    clock_steps: set[int] = set()
    for pop in graph.populations:
        ins = graph.inputs(pop.name)
        outs = [p for p in graph.projections if p.src == pop.name and p.dst != HOST]
        gated = [p for p in outs if relayed(p)]
        direct = sum((fan_out(p, pop.shape) for p in outs if not relayed(p)),
                     torch.zeros(pop.shape))
        sites.append((Site(pop.name, pop.neurons, fan_in=sum(fan_in(p) for p in ins),
                           fan_out=int((direct + (steps if gated else 0)).max()) if outs else 0,
                           delays=tuple((f"{p.src}->{p.dst}", p.delay) for p in ins)),
                      sum(stored[id(p)] for p in ins)))
        if gated:
            sites.append((Site(f"{pop.name} (TSM relays)", pop.neurons, fan_in=2,
                               fan_out=int(sum(fan_out(p, pop.shape) for p in gated).max()),
                               copies=steps), 2 * pop.neurons))
            extra_neurons += steps * pop.neurons
            extra_layers += steps
            extra_syn += steps * 2 * pop.neurons
            clock_steps.update(pop.offset + k for k in range(steps))
    if clock_steps:
        extra_neurons += len(clock_steps)
        extra_layers += 1
        extra_syn += len(clock_steps)
        sites.append((Site("TSM clocks", len(clock_steps), synapse_bytes=len(clock_steps)),
                      None))
    stem = graph.populations[0]  # the host's pixel conv drives every stem neuron
    return GraphCounts(tuple(sites), len(graph.populations) + extra_layers,
                       sum(p.neurons for p in graph.populations) + extra_neurons,
                       extra_syn + sum(stored[id(p)] for p in on_chip),
                       max((p.kernel for p in on_chip), default=1), (stem.name, stem.neurons),
                       layer_memories(graph))


def check(graph: DeployGraph, profile: Profile, counts: GraphCounts | None = None
          ) -> Placement:
    """All checks the profile's limits allow; a limit the profile does not give is not checked.
    ``counts``: :func:`graph_counts` of ``graph``, when the caller checks several profiles."""
    lim = _limits(profile)
    bytes_per_syn = _bytes_per_synapse(lim)
    counts = counts or graph_counts(graph)
    sites = [site if syn is None else dataclasses.replace(site, synapse_bytes=syn * bytes_per_syn)
             for site, syn in counts.sites]
    return _placement(profile, lim, sites, counts.layers, counts.neurons, counts.synapses,
                      counts.kernel, stem=counts.stem, layer_memories=counts.layer_memories)


def check_feedforward(qnet: QuantizedSNN, profile: Profile) -> Placement:
    """The same checks for a feed-forward SNN (``sdm_neuro.sequential``). Fan-in, fan-out and
    synapse counts are exact (:func:`~sdm_neuro.ir.connectivity.layer_connectivity`). A
    host-driven first layer (current input) has no synapses on chip."""
    lim = _limits(profile)
    bytes_per_syn = _bytes_per_synapse(lim)
    sites: list[Site] = []
    syn_total = 0
    for i, ql in enumerate(qnet.layers):
        s, name = ql.layer.synapse, ql.layer.name
        fin = fout = syn = 0
        if i > 0 or qnet.spike_input:
            fin, fout, syn = layer_connectivity(s.kind, ql.weight_int, s.in_shape, s.stride,
                                                s.padding)
        syn_total += syn
        # this layer's synapses are the previous layer's fan-out
        sites.append(Site(name, math.prod(ql.layer.shape), fan_in=fin,
                          fan_out=fout if i > 0 else None,
                          fan_out_where=qnet.layers[i - 1].layer.name if i > 0 else None,
                          synapse_bytes=syn * bytes_per_syn))
    kernel = max((ql.layer.synapse.weight.shape[-1] for ql in qnet.layers
                  if ql.layer.synapse.kind == "conv"), default=1)
    total_neurons = sum(math.prod(ql.layer.shape) for ql in qnet.layers)
    return _placement(profile, lim, sites, len(qnet.layers), total_neurons, syn_total, kernel)
