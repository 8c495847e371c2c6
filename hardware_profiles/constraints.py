"""Design-rule checks of a deployment graph against a hardware profile, and a core / chip count.

Each check states the population or projection, the quantity, the actual value and the limit
(as Rockpool's design-rule checks do). The mapping model is deliberately simple and stated in
every result: one population per set of cores (populations do not share cores), synapses
stored one per (source neuron, target neuron) pair at the weight precision (no convolutional
weight sharing is assumed, since none is documented for these chips), a core holds as many
neurons as both its neuron limit and its synaptic memory allow.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from sdm_neuro.ir.graph import HOST, DeployGraph, Projection, fan_out
from sdm_neuro.ir.feedforward import QuantizedSNN
from sdm_neuro.ir.graph import relayed

from .profile import Profile

NEEDED_WEIGHT_BITS = 8   # Lava's 8-bit weight mantissa (even integers in [-256, 254])
NEEDED_STATE_BITS = 24   # u and v of Lava's fixed-point LIF

MAPPING_MODEL = ("one population per set of cores; synapses stored per (source, target) pair "
                 "at the profile's weight precision; no convolutional weight sharing; TSM: one "
                 "synapse matrix per SNN step, relay populations and clock neurons counted")


@dataclass(frozen=True)
class Violation:
    where: str          # population, projection or "network"
    quantity: str
    actual: float
    limit: float

    def __str__(self) -> str:
        return f"{self.where}: {self.quantity} is {self.actual:,g}, limit {self.limit:,g}"


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


def _weights(p: Projection) -> torch.Tensor:
    w = p.weight_int if p.weight_int is not None else p.weight
    return w.abs().amax(0) if w.dim() == 5 else w.abs()  # TSM: a tap is used if any step uses it


def fan_in(p: Projection) -> int:
    """Largest number of distinct source neurons with a non-zero weight onto one target neuron
    (interior neuron). After a u x nearest upsample, the taps of one output phase that read the
    same source neuron fold into one synapse (for u = 2, k = 3: 2x2, see ``upsample_phases``)."""
    w = _weights(p) != 0
    u, k, pad = p.upsample, p.kernel, p.padding
    if u == 1:
        return int(w.flatten(1).sum(1).max())
    best = 0
    for a in range(u):
        for b in range(u):  # output phase (a, b): tap ky reads source offset (a + ky - pad) // u
            rows = {}
            for ky in range(k):
                for kx in range(k):
                    key = ((a + ky - pad) // u, (b + kx - pad) // u)
                    rows[key] = rows.get(key, torch.zeros_like(w[:, :, 0, 0])) | w[:, :, ky, kx]
            best = max(best, int(sum(m.to(torch.int64) for m in rows.values()).sum(1).max()))
    return best


def synapse_count(p: Projection, src_shape: tuple[int, int, int]) -> int:
    """Stored synapses: (source, target) pairs, exact at the borders (see ``fan_out``); target
    channels whose weights are all zero (skip padding of a composed projection) have none."""
    rows = (_weights(p).flatten(1) != 0).any(1)
    return int(fan_out(dataclasses.replace(p, weight=p.weight[rows]), src_shape).sum())


def check(graph: DeployGraph, profile: Profile) -> Placement:
    """All checks the profile's limits allow; a limit the profile does not give is not checked."""
    lim = {k: f.value for k, f in profile.limits.items()}
    shapes = {p.name: p.shape for p in graph.populations}
    violations = _precision(lim)
    bytes_per_syn = max(lim.get("weight_bits") or NEEDED_WEIGHT_BITS, 1) / 8

    # TSM: a relayed projection (per-step weights) stores one synapse matrix per SNN step and
    # runs through T relay populations of its source (2 synapses per relay neuron: source and
    # clock) plus one clock neuron per distinct gating step (counted as one population).
    steps = graph.config.snn_steps
    copies = {id(p): steps if relayed(p) else 1 for p in graph.projections}
    cores: dict[str, int] = {}
    extra_neurons = extra_layers = extra_syn = 0
    clock_steps: set[int] = set()
    for pop in graph.populations:
        ins = graph.inputs(pop.name)
        outs = [p for p in graph.projections if p.src == pop.name and p.dst != HOST]
        gated = [p for p in outs if relayed(p)]
        direct = sum((fan_out(p, pop.shape) for p in outs if not relayed(p)),
                     torch.zeros(pop.shape))
        _fan_checks(pop.name, sum(fan_in(p) for p in ins),
                    int((direct + (steps if gated else 0)).max()) if outs else 0,
                    lim, violations)
        if "synaptic_delay_steps_max" in lim:
            for p in ins:
                if p.delay > lim["synaptic_delay_steps_max"]:
                    violations.append(Violation(f"{p.src}->{p.dst}", "synaptic delay (steps)",
                                                p.delay, lim["synaptic_delay_steps_max"]))
        if "neurons_per_core" in lim:
            syn = sum(synapse_count(p, shapes[p.src]) * copies[id(p)] for p in ins)
            cores[pop.name] = _cores(pop.name, pop.neurons, syn * bytes_per_syn, lim, violations)
        if gated:
            name = f"{pop.name} (TSM relays)"
            _fan_checks(name, 2, int(sum(fan_out(p, pop.shape) for p in gated).max()), lim,
                        violations)
            extra_neurons += steps * pop.neurons
            extra_layers += steps
            extra_syn += steps * 2 * pop.neurons
            clock_steps.update(pop.offset + k for k in range(steps))
            if "neurons_per_core" in lim:
                cores[name] = steps * _cores(name, pop.neurons, 2 * pop.neurons * bytes_per_syn,
                                             lim, violations)
    if clock_steps:
        extra_neurons += len(clock_steps)
        extra_layers += 1
        extra_syn += len(clock_steps)
        if "neurons_per_core" in lim:
            cores["TSM clocks"] = _cores("TSM clocks", len(clock_steps), len(clock_steps), lim,
                                         violations)

    total_neurons = sum(p.neurons for p in graph.populations) + extra_neurons
    if "input_channels_max" in lim:
        stem = graph.populations[0]  # the host's pixel conv drives every stem neuron
        if stem.neurons > lim["input_channels_max"]:
            violations.append(Violation(stem.name, "input channels (host-driven neurons)",
                                        stem.neurons, lim["input_channels_max"]))
    if "kernel_memory_entries_per_layer" in lim:
        _check_layer_memories(graph, lim, violations)
    syn = extra_syn + sum(synapse_count(p, shapes[p.src]) * copies[id(p)]
                          for p in graph.projections if p.dst != HOST)
    kernel = max((p.kernel for p in graph.projections if p.dst != HOST), default=1)
    return _placement(profile, lim, cores, len(graph.populations) + extra_layers, total_neurons,
                      syn, kernel, violations)


def _precision(lim: dict) -> list[Violation]:
    violations = []
    for key, needed, what in (("weight_bits", NEEDED_WEIGHT_BITS, "weight precision (bits)"),
                              ("state_bits", NEEDED_STATE_BITS,
                               "neuron state precision (bits)")):
        if lim.get(key) is not None and lim[key] < needed:
            violations.append(Violation("network", what, needed, lim[key]))
    return violations


def _fan_checks(where: str, fin: int, fout: int, lim: dict, violations: list[Violation]) -> None:
    for key, what in (("fan_in_per_neuron_max", "fan-in (source neurons per neuron)"),
                      ("input_axons_per_core_max",
                       "fan-in of one neuron (a lower bound of input axons per core)")):
        if key in lim and fin > lim[key]:
            violations.append(Violation(where, what, fin, lim[key]))
    if "fan_out_per_neuron_max" in lim and fout > lim["fan_out_per_neuron_max"]:
        violations.append(Violation(where, "fan-out (targets per neuron)", fout,
                                    lim["fan_out_per_neuron_max"]))


def _cores(where: str, neurons: int, syn_bytes: float, lim: dict,
           violations: list[Violation]) -> int:
    """Cores of one population: its neurons, and its incoming synapses' memory."""
    n_cores = math.ceil(neurons / lim["neurons_per_core"])
    if "synaptic_memory_per_core_bytes" in lim:
        per_neuron = syn_bytes / neurons
        if per_neuron > lim["synaptic_memory_per_core_bytes"]:
            violations.append(Violation(where, "synaptic memory of one neuron (bytes)",
                                        per_neuron, lim["synaptic_memory_per_core_bytes"]))
        n_cores = max(n_cores, math.ceil(syn_bytes / lim["synaptic_memory_per_core_bytes"]))
    return n_cores


def _placement(profile: Profile, lim: dict, cores: dict[str, int], layers: int,
               total_neurons: int, synapses: int, kernel: int,
               violations: list[Violation]) -> Placement:
    """The network-wide checks and the chip count, shared by U-Nets and sequential SNNs."""
    if "layers_max" in lim and layers > lim["layers_max"]:
        violations.append(Violation("network", "spiking layers", layers, lim["layers_max"]))
    if "hidden_neurons_max" in lim and total_neurons > lim["hidden_neurons_max"]:
        violations.append(Violation("network", "neurons", total_neurons, lim["hidden_neurons_max"]))
    if "kernel_size_max" in lim and kernel > lim["kernel_size_max"]:
        violations.append(Violation("network", "kernel size", kernel, lim["kernel_size_max"]))
    total = sum(cores.values()) if cores else None
    chips = None
    if total is not None and "cores_per_chip" in lim:
        chips = math.ceil(total / lim["cores_per_chip"])
    elif "neurons_per_chip" in lim:
        chips = math.ceil(total_neurons / lim["neurons_per_chip"])
    if chips is not None and "neurons_per_chip" in lim:
        chips = max(chips, math.ceil(total_neurons / lim["neurons_per_chip"]))
    if chips is not None and "synapses_per_chip" in lim:
        chips = max(chips, math.ceil(synapses / lim["synapses_per_chip"]))
    if chips is not None and "chips_per_system_max" in lim and chips > lim["chips_per_system_max"]:
        violations.append(Violation("network", "chips", chips, lim["chips_per_system_max"]))
    unchecked = tuple(f"{key}: needs a placement of neurons on cores (not modelled)"
                      for key in ("fan_out_edges_per_core_max",) if key in lim)
    return Placement(profile.name, cores, total, chips, tuple(violations), unchecked)


def check_feedforward(qnet: QuantizedSNN, profile: Profile) -> Placement:
    """The same checks for a feed-forward SNN (``sdm_neuro.sequential``). Fan-in, fan-out and
    synapse counts are exact: the nonzero weight pattern applied to an all-ones input counts each
    target's synapses, and its gradient each source's. A host-driven first layer (current input)
    has no synapses on chip."""
    lim = {k: f.value for k, f in profile.limits.items()}
    violations = _precision(lim)
    bytes_per_syn = max(lim.get("weight_bits") or NEEDED_WEIGHT_BITS, 1) / 8
    cores: dict[str, int] = {}
    syn_total = 0
    for i, ql in enumerate(qnet.layers):
        s, name = ql.layer.synapse, ql.layer.name
        fin = fout = syn = 0
        if i > 0 or qnet.spike_input:
            src = torch.ones(1, *s.in_shape, dtype=torch.float64, requires_grad=True)
            mask = (ql.weight_int != 0).double()
            per_target = (src.flatten(1) @ mask.T if s.kind == "affine" else
                          torch.nn.functional.conv2d(src, mask, None, s.stride, s.padding))
            (per_source,) = torch.autograd.grad(per_target.sum(), src)
            fin, syn = int(per_target.max()), int(per_target.sum())
            fout = int(per_source.max())
        syn_total += syn
        _fan_checks(name, fin, 0, lim, violations)
        if i > 0:  # this layer's synapses are the previous layer's fan-out
            _fan_checks(qnet.layers[i - 1].layer.name, 0, fout, lim, violations)
        if "neurons_per_core" in lim:
            cores[name] = _cores(name, math.prod(ql.layer.shape), syn * bytes_per_syn, lim,
                                 violations)
    kernel = max((ql.layer.synapse.weight.shape[-1] for ql in qnet.layers
                  if ql.layer.synapse.kind == "conv"), default=1)
    total_neurons = sum(math.prod(ql.layer.shape) for ql in qnet.layers)
    return _placement(profile, lim, cores, len(qnet.layers), total_neurons, syn_total, kernel,
                      violations)


def _check_layer_memories(graph: DeployGraph, lim: dict, violations: list[Violation]) -> None:
    """Speck / DYNAP-CNN: each layer's kernel and neuron memory (sinabs' rule) must fit one of the
    chip's layers; the largest needs take the largest layers."""
    def log2up(n: int) -> int:
        return math.ceil(math.log2(n)) if n > 1 else 0

    needs = []
    for pop in graph.populations:
        c_out, h, w = pop.shape
        kern = sum(p.weight.shape[1] * 2 ** (log2up(p.kernel * p.kernel) + log2up(c_out))
                   for p in graph.inputs(pop.name))
        neur = c_out * 2 ** (log2up(h) + log2up(w))
        needs.append((pop.name, kern, neur))
    kcap = sorted(lim["kernel_memory_entries_per_layer"], reverse=True)
    ncap = sorted(lim.get("neuron_memory_entries_per_layer", (math.inf,) * len(kcap)),
                  reverse=True)
    for i, (name, kern, _) in enumerate(sorted(needs, key=lambda n: -n[1])[:len(kcap)]):
        if kern > kcap[i]:
            violations.append(Violation(name, "kernel memory (entries)", kern, kcap[i]))
    for i, (name, _, neur) in enumerate(sorted(needs, key=lambda n: -n[2])[:len(ncap)]):
        if neur > ncap[i]:
            violations.append(Violation(name, "neuron memory (entries)", neur, ncap[i]))
