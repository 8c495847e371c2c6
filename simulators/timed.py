"""Hardware-timed simulation: what Lava runs.

Every Dense/Conv process delivers its input one time step after the spikes (Lava's
``PyDenseModelBitAcc``), so populations at different depths run shifted. A population P runs its
T_snn-step window from global step ``offset(P)`` = its longest path from the stem; a projection
j -> P gets a synaptic delay of ``offset(P) - offset(j) - 1`` steps (at most
:data:`sdm_neuro.ir.fixed_point.MAX_DELAY`, 62), so every path into P lines up. Each population
is a ``LIFReset`` whose reset (interval = the call length) falls at its window start: whatever
its constant bias did before (spurious spikes included) is erased, and any spike sent outside
its window arrives outside the receiver's window too (a spike at step tau < offset(P) reaches
P' at tau + offset(P') - offset(P) < offset(P')). So within every window the arithmetic is
exactly the ideal mode's, and the host reads each population's spikes from its window. State is
reset between denoising calls.

TSM (SDM): a projection whose weights differ per SNN step (:func:`sdm_neuro.ir.graph.relayed`) reaches its target
through time-gated relay populations, one per source window step, which add a step of latency:
such a projection counts 2 steps in the offsets, and its delay is ``offset(P) - offset(j) - 2``
(:func:`sdm_neuro.compiler.schedule.schedule` computes offsets and delays,
``sdm_neuro.export.lava_runtime`` builds the relays; the relays pass only spikes from inside the
source's window, which by the argument above are the only ones that reach a window anyway).
"""

from __future__ import annotations

import dataclasses

import torch

from ..ir.graph import DeployGraph, call_length, is_scheduled, latency
from ..ir.host import per_call_bias, pixel_current
from ..errors import ConfigError
from .integer import Counters, IntegerSimulator, bias_mantissa
from .lif import LifState, lif_reset, lif_step

class TimedSimulator(IntegerSimulator):
    """Global-time simulation of a scheduled graph; returns what the ideal mode returns."""

    def __init__(self, graph: DeployGraph, device: str | torch.device | None = None) -> None:
        if not is_scheduled(graph):
            raise ConfigError("TimedSimulator: the graph has no schedule (offsets, delays); "
                              "run sdm_neuro.compiler.schedule.schedule on it first.")
        super().__init__(graph, device)
        self.length = call_length(graph)
        # Members of a fused conv group deliver together only when their latencies (delay, and
        # the relay step of TSM projections) agree: split each group once here, not at every
        # global step.
        self.by_delay: list[tuple[str, int, object]] = []
        for src, fused in self.fused.items():
            for f in fused:
                split: dict[int, list] = {}
                for m in f.members:
                    p = graph.projections[m[0]]
                    split.setdefault(p.delay + latency(p) - 1, []).append(m)
                self.by_delay += [(src, d, dataclasses.replace(f, members=ms))
                                  for d, ms in split.items()]

    def _call(self, x: torch.Tensor, t: torch.Tensor, counters: Counters | None
              ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        g = self.graph
        steps, batch, length, dev = g.config.snn_steps, x.shape[0], self.length, self.device
        pixels = pixel_current(g, x)
        state, bias, history = {}, {}, {}
        for pop in g.populations:
            c, h, w = pop.shape
            state[pop.name] = LifState.zeros((batch, c, h, w), device=dev)
            # The host programs one bias per call; a per-step bias (TSM) is set per window step.
            bias[pop.name] = bias_mantissa(pop, per_call_bias(g, pop, t, pixels), counters
                                           ).to(dev).expand(steps, batch, c, h, w)
            history[pop.name] = torch.zeros(length, batch, c, h, w, dtype=torch.bool,
                                            device=dev)
        events: dict[str, int] = {}
        offsets = {p.name: p.offset for p in g.populations}
        for tau in range(length):
            a_in: dict[str, torch.Tensor] = {}
            for src, delay, sub in self.by_delay:
                when = tau - 1 - delay  # the source step these synapses deliver now
                if when < 0 or not history[src][when].any():
                    continue
                k = min(max(when - offsets[src], 0), steps - 1)  # TSM weight step
                self._send(sub, history[src][when:when + 1], a_in, batch, k)
            for pop in g.populations:
                c, h, w = pop.shape
                st = state[pop.name]
                if tau == pop.offset:  # LIFReset: time_step % length == offset + 1
                    lif_reset(st)
                drive = a_in.get(pop.name)
                drive = (drive[0].to(torch.int64) if drive is not None
                         else torch.zeros(batch, c, h, w, dtype=torch.int64, device=dev))
                k = min(max(tau - pop.offset, 0), steps - 1)
                history[pop.name][tau] = lif_step(st, drive, bias[pop.name][k],
                                                  self.params[pop.name], counters=events,
                                                  check=False)
        spikes = {p.name: history[p.name][p.offset:p.offset + steps] for p in g.populations}
        if counters is not None:
            for k, v in events.items():
                counters.events[f"{k} (any step)"] += v
            self._count(spikes, batch, counters)
        return self.decode(spikes, steps), spikes
