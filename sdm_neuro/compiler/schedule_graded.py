"""The schedule pass of the graded mapping: Loihi 2 timing for a quantized graded graph.

Every connection (Conv, Sparse) delivers one step after its source sends, relays and IF layers
add none, so a node runs its window from ``offset`` = its longest path from the stem, counted in
connections. Each connection j -> P needs the delay ``offset(P) - offset(j) - 1`` to line up with
P's other inputs. Only a ``DelaySparse`` has delays (0..:data:`MAX_DELAY`); a Conv has none, so a
conv that needs a delay reads a delayed copy of its source instead: a relay of kind ``"delay"``
fed by an identity with the delay (one copy per source and arrival time, shared by every conv
that needs it; in the U-Net these are the 1x1 shortcuts, which must wait for the block's two
spiking layers, and the decoder's skips). A delay beyond the limit is a chain of such copies.
"""

from __future__ import annotations

import dataclasses

import torch

from ..ir.fixed_point import MAX_DELAY
from ..ir.graded import Connection, GradedGraph, Relay


def schedule_graded(graph: GradedGraph) -> GradedGraph:
    """Offsets and delays for every node and connection, with delay relays where needed."""
    offset: dict[str, int] = {}
    for name in graph.order:
        offset[name] = max((offset[c.src] + 1 for c in graph.inputs(name)), default=0)
    relays = list(graph.relays)
    order = list(graph.order)
    conns: list[Connection] = []
    copies: dict[tuple[str, int], str] = {}  # (source, offset of the copy) -> copy

    def copy_of(src: str, at: int) -> str:
        """A relay holding ``src``'s output at offset ``at`` (chained within MAX_DELAY)."""
        if offset[src] == at:
            return src
        if (src, at) in copies:
            return copies[(src, at)]
        prev = copy_of(src, max(at - MAX_DELAY - 1, offset[src])) if (
            at - offset[src] - 1 > MAX_DELAY) else src
        node = graph.node(src)
        if isinstance(node, Relay):  # the same payloads, so the same scale and constant
            bias, scale = node.bias, node.scale
        else:  # a population's spikes as 0/1 payloads
            bias = torch.zeros(graph.config.snn_steps, node.shape[0], dtype=torch.float64)
            scale = 1.0
        name = f"{src}@{at}"
        relays.append(Relay(name, node.shape, bias, kind="delay", scale=scale, offset=at))
        order.insert(order.index(prev) + 1, name)  # before every reader of the source
        conns.append(Connection(prev, name, "identity", weight_exp=0,
                                delay=at - offset[prev] - 1))
        offset[name] = at
        copies[(src, at)] = name
        return name

    # Convs first: the copies they need are then there for identities to share (a skip's
    # 1x1 conv and the skip's identity into the block's neuron1 read one copy).
    placed: dict[int, Connection] = {}
    for first in (True, False):
        for i, c in enumerate(graph.connections):
            if (c.kind == "conv") != first:
                continue
            need = offset[c.dst] - offset[c.src] - 1
            at = offset[c.dst] - 1
            if need == 0:
                placed[i] = c
            elif c.kind == "conv" or need > MAX_DELAY or (c.src, at) in copies:
                # A conv has no delay; a long identity waits in copies: read a copy that
                # arrives just in time (a conv reading a population's spikes gets a 0/1 copy).
                placed[i] = dataclasses.replace(c, src=copy_of(c.src, at))
            else:
                placed[i] = dataclasses.replace(c, delay=need)
    conns += [placed[i] for i in range(len(graph.connections))]
    pops = tuple(dataclasses.replace(p, offset=offset[p.name]) for p in graph.populations)
    relays = tuple(dataclasses.replace(r, offset=offset[r.name]) for r in relays)
    return graph.replace(populations=pops, relays=relays, connections=tuple(conns),
                         order=tuple(order))
