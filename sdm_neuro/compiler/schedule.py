"""The schedule pass: Loihi 2 timing for a quantized graph.

Every Dense/Conv process delivers its input one time step after the spikes, and a relayed (TSM)
projection one more (:func:`~sdm_neuro.ir.graph.latency`), so a population P runs its window from
``offset(P)``, its longest path from the stem, and each projection j -> P gets the synaptic delay
``offset(P) - offset(j) - latency`` that lines every path into P up (see
:mod:`sdm_neuro.simulators.timed` for why the windows then compute what the ideal mode does).
"""

from __future__ import annotations

import dataclasses

from ..errors import ConfigError
from ..ir.fixed_point import MAX_DELAY
from ..ir.graph import HOST, DeployGraph, latency


def schedule(graph: DeployGraph) -> DeployGraph:
    """Offsets (longest path from the stem) and balancing delays for every projection."""
    offset: dict[str, int] = {}
    for pop in graph.populations:  # topological order
        ins = [offset[p.src] + latency(p) for p in graph.inputs(pop.name)]
        offset[pop.name] = max(ins, default=0)
    projs = []
    for p in graph.projections:
        if p.dst == HOST:
            projs.append(p)
            continue
        delay = offset[p.dst] - offset[p.src] - latency(p)
        if not 0 <= delay <= MAX_DELAY:
            raise ConfigError(f"projection {p.src} -> {p.dst}: needs a synaptic delay of {delay} "
                              f"steps; Lava's DelayDense allows 0..{MAX_DELAY}.")
        projs.append(dataclasses.replace(p, delay=delay))
    pops = tuple(dataclasses.replace(p, offset=offset[p.name]) for p in graph.populations)
    return graph.replace(populations=pops, projections=tuple(projs))
