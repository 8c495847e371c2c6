"""Cores, chips and synaptic memory of the graded mapping (:class:`~sdm_neuro.ir.graded.GradedGraph`)
on a hardware profile, and its design-rule violations.

The model (stated in every result as :data:`GRADED_MODEL`; the facts are section 5 of
``shared/reference/lava-graded-and-conv.md``, Intel's compiler logs):

* every node (an IF layer or a relay: relays are neurons too) gets its own cores, split into
  ``g`` groups of ``c = ceil(C / g)`` output channels and, per group, ``s`` spatial tiles of at
  most ``p`` pixels; a core holds ``c * p`` neurons, at most ``neurons_per_core_practical``
  (else ``neurons_per_core``);
* a conv's kernel is stored once per core for the core's output channels:
  ``C_in * k * k * ceil(c * b / 64)`` 64-bit words, ``b`` the profile's ``weight_bits``,
  whatever the tile's spatial size (so spatial tiles copy it, channel groups split it);
* identities and upsample fan-outs are explicit synapses, one per target neuron, each
  ``explicit_synapse_bits`` wide (else ``weight_bits``);
* a core's words (its kernel slices plus its explicit synapses) are at most
  ``synaptic_memory_words_per_core`` (else ``synaptic_memory_per_core_bytes / 8``);
* a node takes the fewest cores ``g * s`` over all channel groupings; that is at least
  ``max(neuron-bound, memory-bound)`` and usually equal. Chips: ``cores_per_chip`` (and the
  chip's neuron and synapse totals, as for the composed mapping).
* co-location (a second figure, when the profile gives ``neuron_groups_per_core``): a core holds
  several neuron groups, so the neurons of kernel-free nodes (no conv input: IF layers reading
  identities, upsample relays, the stem) may fill the spare neurons, words and groups of other
  nodes' cores (first fit, one group per node per core), then cores of their own. Wide
  low-resolution convs are bound by kernel memory and leave most of a core's neurons free.

A profile without graded spikes or shared kernels cannot run the mapping at all:
:func:`graded_support` says why, :func:`graded_placement` raises a :class:`ConstraintError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from sdm_neuro.errors import ConstraintError
from sdm_neuro.ir.connectivity import fan_in, fan_out
from sdm_neuro.ir.graded import Connection, GradedGraph
from sdm_neuro.ir.graph import Projection

from .constraints import chip_count
from .profile import Profile
from .rules import NEEDED_WEIGHT_BITS, RULES, Network, Site, Violation, run_rules

WORD_BITS = 64                  # Loihi's synaptic memory word (the SynMem unit of Intel's logs)
NEEDED_PAYLOAD_BITS = 24        # Lava's graded path: Conv wraps at 24 bits, GradedVec precision 24

GRADED_MODEL = ("graded mapping: one set of cores per IF layer or relay, split by output-channel "
                "groups and spatial tiles; a conv kernel stored once per core for the core's "
                "output channels (C_in*k*k*ceil(c*b/64) words); identities and upsample "
                "fan-outs one explicit synapse per target neuron; fewest cores meeting both the "
                "neuron and the synaptic-memory bound; colocated_cores: kernel-free nodes' "
                "neurons also fill other cores' spare neurons, words and neuron groups")

# The composed rules that hold for this mapping too (they read counts defined the same way).
# Not here: input_axons_limit (it bounds axons by fan-in, but a shared-kernel conv input takes
# 1-2 axon entries per core) and synaptic_memory_limit (bytes per neuron of explicit synapses;
# replaced by kernel_slice_limit).
GRADED_RULES = tuple(r for r in RULES if r.name in (
    "weight_precision", "state_precision", "fan_in_limit", "fan_out_limit",
    "synaptic_delay_limit", "input_channels_limit", "layers_limit", "neurons_limit",
    "kernel_size_limit", "chips_limit"))

# Limits a profile may give that no graded check reads, with why.
UNCHECKED = {
    "input_axons_per_core_max": "axon entries per core are not modelled (a conv input takes 1-2, "
                                "an identity one per source neuron, at most a core's neurons)",
    "fan_out_edges_per_core_max": "needs a placement of neurons on cores (not modelled)",
    "kernel_memory_entries_per_layer": "a layer-mapped chip's memory (Speck), not this mapping's",
    "neuron_memory_entries_per_layer": "a layer-mapped chip's memory (Speck), not this mapping's",
}


def graded_support(profile: Profile) -> str | None:
    """Why ``profile`` cannot run the graded mapping, or None when it can."""
    lim = profile.limits
    if "graded_payload_bits" not in lim:
        return (f"profile {profile.name} cannot run the graded mapping: no graded spikes "
                "(graded_payload_bits absent)")
    if "shared_conv_kernels" not in lim:
        return (f"profile {profile.name} cannot run the graded mapping: no shared conv kernels "
                "(shared_conv_kernels absent)")
    return None


@dataclass(frozen=True)
class NodeCost:
    """One node's placement: ``groups`` channel groups x ``tiles`` spatial tiles = ``cores``."""

    name: str
    neurons: int
    cores: int | None            # None: does not fit even one output channel per core
    neuron_bound: int            # cores its neurons alone need
    memory_bound: int | None     # cores its synaptic memory alone needs (None: never fits)
    groups: int | None
    tiles: int | None
    core_neurons: int            # neurons on its fullest core
    kernel_words: int            # kernel-slice words on one core of this placement
    explicit_words: int          # explicit-synapse words on its fullest core
    words: int                   # synaptic memory of the node, all cores
    synapses: int                # stored: kernel weights on every core, explicit synapses
    explicit: int                # explicit synapses per neuron (the fullest neuron)
    kernel_free: bool            # no conv input: its neurons may share other nodes' cores

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class GradedPlacement:
    profile: str
    nodes: tuple[NodeCost, ...]
    total_cores: int | None      # every node on cores of its own
    chips: int | None
    colocated_cores: int | None  # kernel-free nodes sharing cores (None: no neuron groups)
    colocated_chips: int | None
    memory_words: int            # synaptic memory of the whole network (64-bit words)
    violations: tuple[Violation, ...]
    unchecked: tuple[str, ...]

    @property
    def fits(self) -> bool:
        return not self.violations

    @property
    def cores(self) -> dict[str, int | None]:
        return {n.name: n.cores for n in self.nodes}

    def to_dict(self) -> dict:
        return {"profile": self.profile, "mapping": "graded", "fits": self.fits,
                "total_cores": self.total_cores, "chips": self.chips,
                "colocated_cores": self.colocated_cores, "colocated_chips": self.colocated_chips,
                "memory_words": self.memory_words, "memory_bytes": self.memory_words * 8,
                "nodes": [n.to_dict() for n in self.nodes],
                "violations": [{"where": v.where, "quantity": v.quantity, "actual": v.actual,
                                "limit": v.limit, "message": str(v)} for v in self.violations],
                "unchecked": list(self.unchecked), "mapping_model": GRADED_MODEL}


@dataclass(frozen=True)
class _Limits:
    """The figures the placement reads, with the model's fallbacks applied."""

    neurons: int | None          # per core
    words: int | None            # per core
    weight_bits: int
    explicit_per_word: int       # explicit synapses per 64-bit word
    groups: int | None           # neuron groups per core

    @classmethod
    def of(cls, lim: dict) -> _Limits:
        neurons = lim.get("neurons_per_core_practical", lim.get("neurons_per_core"))
        words = lim.get("synaptic_memory_words_per_core")
        if words is None and "synaptic_memory_per_core_bytes" in lim:
            words = lim["synaptic_memory_per_core_bytes"] * 8 // WORD_BITS
        b = lim.get("weight_bits") or NEEDED_WEIGHT_BITS
        per_word = max(WORD_BITS // lim.get("explicit_synapse_bits", b), 1)
        return cls(neurons, words, b, per_word, lim.get("neuron_groups_per_core"))


def kernel_words(convs: list[Connection], channels: int, weight_bits: int) -> int:
    """Words one core stores for the kernels of ``convs`` over ``channels`` output channels:
    per conv ``C_in * k * k`` rows of ``ceil(channels * b / 64)`` words."""
    row = math.ceil(channels * weight_bits / WORD_BITS)
    return sum(c.weight.shape[1] * c.kernel ** 2 * row for c in convs)


def explicit_per_neuron(graph: GradedGraph, name: str) -> int:
    """Explicit synapses onto the fullest neuron of ``name``: an identity gives one to each
    neuron of its channel range, an upsample fan-out one to every target."""
    node = graph.node(name)
    per_channel = torch.zeros(node.shape[0], dtype=torch.int64)
    for c in graph.inputs(name):
        if c.kind == "identity":
            per_channel[c.dst_channel:c.dst_channel + graph.node(c.src).shape[0]] += 1
        elif c.kind == "upsample":
            per_channel += 1
    return int(per_channel.max())


def _split(channels: int, pixels: int, kern, explicit: int, per_word: int,
           neurons_max: float, words_max: float) -> tuple[int, int, int, int] | None:
    """(cores, groups, tiles, channels per core) of the fewest cores, or None if not even one
    channel per core fits. ``kern(c)`` is the kernel words of ``c`` channels; a bound may be
    ``math.inf``."""
    best = None
    for c in range(1, channels + 1):
        free = words_max - kern(c)
        if free < 0 or c > neurons_max:
            break  # both only grow with c
        p = pixels if neurons_max == math.inf else min(pixels, int(neurons_max // c))
        if explicit and free != math.inf:
            p = min(p, int(free * per_word // (c * explicit)))
        if p < 1:
            continue
        g, s = math.ceil(channels / c), math.ceil(pixels / p)
        if best is None or g * s < best[0]:
            best = (g * s, g, s, c)
    return best


def node_cost(graph: GradedGraph, name: str, lim: _Limits) -> NodeCost:
    node = graph.node(name)
    channels, h, w = node.shape
    convs = [c for c in graph.inputs(name) if c.kind == "conv"]
    explicit = explicit_per_neuron(graph, name)

    def kern(c: int) -> int:
        return kernel_words(convs, c, lim.weight_bits)

    def explicit_words(neurons: int) -> int:
        return math.ceil(neurons * explicit / lim.explicit_per_word)

    neurons_max = lim.neurons or math.inf
    words_max = lim.words if lim.words is not None else math.inf
    neuron_bound = math.ceil(node.neurons / neurons_max) if lim.neurons else 1
    mem = _split(channels, h * w, kern, explicit, lim.explicit_per_word, math.inf, words_max)
    both = _split(channels, h * w, kern, explicit, lim.explicit_per_word, neurons_max,
                  words_max)
    if both is None:
        return NodeCost(name, node.neurons, None, neuron_bound, mem and mem[0], None, None, 1,
                        kern(1), explicit_words(1), 0, 0, explicit, not convs)
    cores, groups, tiles, c = both
    # every tile of a group stores the group's kernel slice; explicit synapses once per target
    total = tiles * sum(kern(min(c, channels - i * c)) for i in range(groups))
    weights = tiles * sum(cv.weight[0].numel() * min(c, channels - i * c) for cv in convs
                          for i in range(groups))
    fullest = c * math.ceil(h * w / tiles)
    return NodeCost(name, node.neurons, cores, neuron_bound, mem[0], groups, tiles, fullest,
                    kern(c), explicit_words(fullest), total + explicit_words(node.neurons),
                    weights + node.neurons * explicit, explicit, not convs)


def colocated_cores(costs: list[NodeCost], lim: _Limits) -> int | None:
    """Cores when kernel-free nodes share cores (module docstring); None without
    ``neuron_groups_per_core`` (or neurons per core), or when a node does not fit at all."""
    if not lim.groups or not lim.neurons or any(n.cores is None for n in costs):
        return None
    cap_n, cap_w = lim.neurons, lim.words if lim.words is not None else math.inf
    per_word = lim.explicit_per_word
    # [free neurons, free words, free groups] of every core; the fullest core stands for all
    # of a node's cores (conservative)
    spare = [[cap_n - n.core_neurons, cap_w - n.kernel_words - n.explicit_words,
              lim.groups - 1] for n in costs if not n.kernel_free for _ in range(n.cores)]
    def fit(n: NodeCost, left: int, neurons: int, words: float) -> int:
        """How many of ``n``'s ``left`` neurons a core with this room takes."""
        by_words = (int(words * per_word // n.explicit) if n.explicit and words != math.inf
                    else left)
        return min(left, neurons, by_words)

    for n in sorted((n for n in costs if n.kernel_free), key=lambda n: -n.neurons):
        left = n.neurons
        for slot in spare:
            k = fit(n, left, slot[0], slot[1]) if slot[2] > 0 else 0
            if k > 0:
                slot[0] -= k
                slot[1] -= math.ceil(k * n.explicit / per_word)
                slot[2] -= 1
                left -= k
            if not left:
                break
        while left:  # cores of its own, open to the nodes placed after it
            k = max(fit(n, left, cap_n, cap_w), 1)  # one neuron fits (node_cost placed it)
            spare.append([cap_n - k, cap_w - math.ceil(k * n.explicit / per_word),
                          lim.groups - 1])
            left -= k
    return len(spare)


# -- graded checks -------------------------------------------------------------------------------
def payload_width_limit(graph: GradedGraph, lim: dict) -> list[Violation]:
    """The graph's payloads (``meta["payload_bits"]``, Lava's 24 when unset) fit the profile's
    ``graded_payload_bits``."""
    need = graph.meta.get("payload_bits", NEEDED_PAYLOAD_BITS)
    if "graded_payload_bits" in lim and need > lim["graded_payload_bits"]:
        return [Violation("network", "graded payload (bits)", need, lim["graded_payload_bits"])]
    return []


def kernel_slice_limit(costs: list[NodeCost], lim: dict) -> list[Violation]:
    """Every node fits its cores: one output channel's kernel slice plus its explicit synapses
    are at most a core's ``synaptic_memory_words_per_core``."""
    words = _Limits.of(lim).words
    return [Violation(n.name, "synaptic memory of one output channel (words)",
                      n.kernel_words + n.explicit_words, words)
            for n in costs if n.cores is None and words is not None]


def _sites(graph: GradedGraph, lim: dict) -> list[Site]:
    """What the shared rules read, per node; fan-in / fan-out only when the profile limits them
    (the paper configuration's convs make them the slowest count)."""
    shapes = {n.name: n.shape for n in graph.nodes()}

    def proj(c: Connection) -> Projection:
        return Projection(c.src, c.dst, c.weight, stride=c.stride, weight_int=c.weight_int)

    sites = []
    for node in graph.nodes():
        ins, outs = graph.inputs(node.name), graph.outputs(node.name)
        fin = fout = None
        if "fan_in_per_neuron_max" in lim:
            fin = sum(fan_in(proj(c)) if c.kind == "conv" else 1 for c in ins)
        if "fan_out_per_neuron_max" in lim and outs:
            fout = int(sum((fan_out(proj(c), shapes[node.name]) if c.kind == "conv" else
                            4.0 if c.kind == "upsample" else 1.0) for c in outs).max())
        sites.append(Site(node.name, node.neurons, fan_in=fin, fan_out=fout,
                          delays=tuple((f"{c.src}->{c.dst}", c.delay) for c in ins)))
    return sites


def graded_placement(graph: GradedGraph, profile: Profile) -> GradedPlacement:
    """Cores, chips and memory of ``graph`` on ``profile`` and every violation (the shared rules
    of :data:`GRADED_RULES`, then :func:`payload_width_limit`, :func:`kernel_slice_limit`).
    A profile that cannot run the mapping is a :class:`ConstraintError`."""
    refusal = graded_support(profile)
    if refusal:
        raise ConstraintError(refusal)
    lim = {k: f.value for k, f in profile.limits.items()}
    glim = _Limits.of(lim)
    costs = [node_cost(graph, n.name, glim) for n in graph.nodes()]
    placed = "neurons_per_core" in lim or "neurons_per_core_practical" in lim
    total = sum(n.cores for n in costs if n.cores) if placed else None  # as the composed
    words = sum(n.words for n in costs)
    neurons = sum(n.neurons for n in costs)
    synapses = sum(n.synapses for n in costs)
    convs = [c for c in graph.connections if c.kind == "conv"]
    stem = graph.populations[0]  # the host's pixel conv drives every stem neuron
    net = Network(len(costs), neurons, synapses, max((c.kernel for c in convs), default=1),
                  chip_count(total, neurons, synapses, lim), stem=(stem.name, stem.neurons))
    shared = colocated_cores(costs, glim) if placed else None
    violations = (run_rules(_sites(graph, lim), net, lim, GRADED_RULES)
                  + payload_width_limit(graph, lim) + kernel_slice_limit(costs, lim))
    unchecked = tuple(f"{k}: {why}" for k, why in UNCHECKED.items() if k in lim)
    return GradedPlacement(profile.name, tuple(costs), total, net.chips, shared,
                           shared and chip_count(shared, neurons, synapses, lim), words,
                           tuple(violations), unchecked)


__all__ = ["GRADED_MODEL", "GRADED_RULES", "GradedPlacement", "NodeCost", "colocated_cores",
           "explicit_per_neuron", "graded_placement", "graded_support", "kernel_slice_limit",
           "kernel_words", "payload_width_limit"]
