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
        self.record = False  # keep every population's spikes at every global step in .history
        self.history: dict[str, torch.Tensor] = {}
        # Members of a fused conv group deliver together only when their latencies (delay, and
        # the relay step of TSM projections) agree: split each group once here, not at every
        # global step.
        self.by_delay: dict[str, list[tuple[int, object]]] = {}
        for src, fused in self.fused.items():
            for f in fused:
                split: dict[int, list] = {}
                for m in f.members:
                    p = graph.projections[m[0]]
                    split.setdefault(p.delay + latency(p) - 1, []).append(m)
                self.by_delay.setdefault(src, []).extend(
                    (d, dataclasses.replace(f, members=ms)) for d, ms in split.items())

    def _call(self, x: torch.Tensor, t: torch.Tensor, counters: Counters | None
              ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Layer by layer, each over all global steps: every input of a population at step tau
        comes from an earlier population's step tau - 1 - delay, so running populations in
        topological order computes what a step-by-step loop over the whole network does; a
        source's spiking steps then go through each of its fused convs at once (one conv per
        delay group, not one per step)."""
        g = self.graph
        steps, batch, length, dev = g.config.snn_steps, x.shape[0], self.length, self.device
        pixels = pixel_current(g, x)
        events: dict[str, int] = {}
        spikes: dict[str, torch.Tensor] = {}
        self.history = {}
        drives: dict[str, torch.Tensor] = {}  # destination -> [length, B, C, H, W] integers
        for pop in g.populations:
            c, h, w = pop.shape
            # The host programs one bias per call; a per-step bias (TSM) is set per window step.
            bias = bias_mantissa(pop, per_call_bias(g, pop, t, pixels), counters
                                 ).to(dev).expand(steps, batch, c, h, w)
            drive = drives.pop(pop.name, None)
            zero = torch.zeros(batch, c, h, w, dtype=torch.int64, device=dev)
            state = LifState.zeros((batch, c, h, w), device=dev)
            hist = torch.zeros(length, batch, c, h, w, dtype=torch.bool, device=dev)
            for tau in range(length):
                if tau == pop.offset:  # LIFReset: time_step % length == offset + 1
                    lif_reset(state)
                k = min(max(tau - pop.offset, 0), steps - 1)
                hist[tau] = lif_step(state, zero if drive is None else drive[tau].to(torch.int64),
                                     bias[k], self.params[pop.name], counters=events,
                                     check=False)
            for delay, sub in self.by_delay.get(pop.name, ()):
                # source steps whose delivery (at when + 1 + delay) falls within the call
                live = hist[:length - 1 - delay].flatten(1).any(1).nonzero().flatten()
                if sub.weight.dim() == 5:  # TSM: the weight set of the source's window step
                    for when in live.tolist():
                        k = min(max(when - pop.offset, 0), steps - 1)
                        self._deliver(sub, hist[when:when + 1], k, live.new_tensor([when])
                                      + 1 + delay, drives, length, batch)
                elif len(live):
                    self._deliver(sub, hist[live], 0, live + 1 + delay, drives, length, batch)
            # every delivery is done: keep the window (and the whole call when recording)
            spikes[pop.name] = hist[pop.offset:pop.offset + steps].clone()
            if self.record:
                self.history[pop.name] = hist
        if counters is not None:
            for k, v in events.items():
                counters.events[f"{k} (any step)"] += v
            self._count(spikes, batch, counters)
        return self.decode(spikes, steps), spikes

    def _deliver(self, sub, spk: torch.Tensor, first_step: int, at: torch.Tensor,
                 drives: dict[str, torch.Tensor], length: int, batch: int) -> None:
        """Project source steps ``spk`` through ``sub`` and add each into its destinations'
        drives at the global steps ``at``."""
        part: dict[str, torch.Tensor] = {}
        self._send(sub, spk, part, batch, first_step)
        for dst, y in part.items():
            if dst not in drives:
                drives[dst] = y.new_zeros(length, *y.shape[1:])
            drives[dst].index_add_(0, at, y)
