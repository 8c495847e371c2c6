"""Loihi 2 through Lava: a quantized deployment graph as Lava processes, run in Lava's
bit-accurate CPU simulation (``Loihi2SimCfg(select_tag='fixed_pt')``).

One denoising call is one Lava network per sample:

* every population is a ``LIFReset`` (du, dv, vth, bias_exp per process; the per-call bias -
  constant part, time embedding, pixel conv - as per-neuron ``bias_mant``) whose reset falls at
  the start of its window (``simulators/timed.py`` proves why the windows line up);
* every projection is a ``Sparse`` (or ``DelaySparse`` for the balancing delays) holding the
  explicit synapse matrix of :mod:`.lava_synapses` (the conv unrolled into one weight per
  (source, target) pair, split into parts that each fit one 8-bit synapse);
* every population's spikes are read through a sink ``RingBuffer``;
* TSM (SDM's per-step weights): a projection whose weights differ per SNN step runs from its
  source S through time-gated relays, one ``LIF`` per window step k of S, each passing S's
  spikes only at S's step k, into one connection per k holding that step's weights. A relay
  neuron (du = dv = 4095, vth 2, so v is 128 per input and fires on two) needs both its source
  neuron's spike and a clock spike; the clock of global step tau is a single neuron with bias
  64 per step and vth = tau that fires once, at tau, then inhibits itself for good. The relay
  adds one step, which the schedule pass (``sdm_neuro.compiler.schedule``) accounts for. The
  per-step bias of TSM populations is set by the host before each step (``bias_mant.set``; the
  run goes one step at a time).

Lava runs in a child process with a hard timeout: an error inside a Lava process can deadlock
the run instead of raising.
"""

from __future__ import annotations


import numpy as np
import torch

from ..compiler.schedule import schedule
from ..errors import ExportError
from ..ir.fixed_point import (DECAY_MAX, NO_LEAK_DV, NO_SYNAPTIC_MEMORY_DU, VTH_SHIFT,
                              WEIGHT_BITS, WEIGHT_EXP_MAX, WEIGHT_MIN)
from ..ir.graph import HOST, DeployGraph, call_length, is_scheduled, relayed
from ..ir.host import per_call_bias, pixel_current
from ..simulators.integer import IntegerSimulator, bias_mantissa
from .lava_process import run_windows
from .lava_synapses import connection_matrix, weight_parts

# The TSM clock and relay neurons (build_network). Both have no synaptic memory (u forgets every
# step). A relay's v forgets too: dv = DECAY_MAX keeps (v * 1) >> 12 of it, 0 for any v the
# relay reaches (at most 256). A clock's v integrates (dv = NO_LEAK_DV) a bias of one threshold
# unit per step (bias_mant 1 at bias_exp VTH_SHIFT); once it fires it inhibits itself with the
# strongest input one synapse sends, WEIGHT_MIN << WEIGHT_EXP_MAX.
RELAY_DU, RELAY_DV = NO_SYNAPTIC_MEMORY_DU, DECAY_MAX
CLOCK_DU, CLOCK_DV, CLOCK_BIAS_EXP = NO_SYNAPTIC_MEMORY_DU, NO_LEAK_DV, VTH_SHIFT
CLOCK_INHIBIT_WEIGHT, CLOCK_INHIBIT_EXP = WEIGHT_MIN, WEIGHT_EXP_MAX


def check_lava_deployable(graph: DeployGraph) -> None:
    if not graph.quantized:
        raise ExportError("the graph is not quantized; quantize it before building Lava processes.")


def bias_mantissas(graph: DeployGraph, x: torch.Tensor, t: torch.Tensor) -> dict[str, np.ndarray]:
    """Per population: the ``bias_mant`` of every neuron at each window step for a batch,
    ``[T_snn, B, C, H, W]`` int32 (all steps equal unless TSM)."""
    pixels = pixel_current(graph, x)
    steps, batch = graph.config.snn_steps, x.shape[0]
    return {pop.name: bias_mantissa(pop, per_call_bias(graph, pop, t, pixels), None)
            .expand(steps, batch, *pop.shape).numpy().astype(np.int32)
            for pop in graph.populations}


def build_network(graph: DeployGraph, bias: dict[str, np.ndarray]):
    """Lava processes for one call of one sample of a scheduled graph (``bias``: ``[T_snn, N]``
    per population); returns (a process to run, sinks, LIFs)."""
    from lava.proc.io.sink import RingBuffer
    from lava.proc.lif.process import LIF, LIFReset
    from lava.proc.sparse.process import DelaySparse, Sparse
    from lava.utils.weightutils import SignMode
    from scipy.sparse import csr_matrix, identity

    length = call_length(graph)
    lifs, sinks, clocks, relays = {}, {}, {}, {}

    def sparse(weights, weight_exp=0, delay=0):
        common = {"weights": weights.astype(np.int32), "weight_exp": weight_exp,
                  "num_weight_bits": WEIGHT_BITS, "sign_mode": SignMode.MIXED}
        if not delay:
            return Sparse(**common)
        delays = weights.astype(np.int64)  # Lava checks dtype == int
        delays.data[:] = delay
        return DelaySparse(delays=delays, **common)

    def connect(src, conn, dst) -> None:
        src.s_out.connect(conn.s_in)
        conn.a_out.connect(dst.a_in)

    def clock(tau: int):
        """One neuron that spikes at global step tau only (v = 64 (tau + 1) > 64 vth first)."""
        if tau not in clocks:
            c = LIF(shape=(1,), du=CLOCK_DU, dv=CLOCK_DV, vth=tau, bias_mant=np.array([1]),
                    bias_exp=CLOCK_BIAS_EXP, name=f"clock:{tau}")
            connect(c, sparse(csr_matrix(np.array([[CLOCK_INHIBIT_WEIGHT]])),
                              weight_exp=CLOCK_INHIBIT_EXP), c)  # never again
            clocks[tau] = c
        return clocks[tau]

    def relay(src: str, k: int):
        """``src``'s spikes of its window step k, one step later."""
        if (src, k) not in relays:
            pop = graph.population(src)
            r = LIF(shape=(pop.neurons,), du=RELAY_DU, dv=RELAY_DV, vth=2,
                    name=f"relay:{src}:{k}")
            connect(lifs[src], sparse(identity(pop.neurons, dtype=np.int64, format="csr") * 2), r)
            connect(clock(pop.offset + k), sparse(csr_matrix(np.full((pop.neurons, 1), 2))), r)
            relays[src, k] = r
        return relays[src, k]

    for pop in graph.populations:
        p = pop.lif
        lifs[pop.name] = LIFReset(shape=(pop.neurons,), du=p.du, dv=p.dv, vth=p.vth,
                                  bias_mant=bias[pop.name][0], bias_exp=p.bias_exp,
                                  reset_interval=length, reset_offset=(pop.offset + 1) % length,
                                  name=pop.name)
        sinks[pop.name] = RingBuffer(shape=(pop.neurons,), buffer=length)
        lifs[pop.name].s_out.connect(sinks[pop.name].a_in)
    for proj in graph.projections:
        if proj.dst == HOST:
            continue
        src, dst = graph.population(proj.src), graph.population(proj.dst)
        steps = range(graph.config.snn_steps) if relayed(proj) else (None,)
        for k in steps:
            m = connection_matrix(proj, src.shape, dst.shape, step=k or 0)
            origin = lifs[proj.src] if k is None else relay(proj.src, k)
            for part in weight_parts(m, proj.weight_exp, f"{proj.src} -> {proj.dst}"):
                connect(origin, sparse(part, proj.weight_exp, proj.delay), lifs[proj.dst])
    return next(iter(lifs.values())), sinks, lifs


def run_network(graph: DeployGraph, bias: dict[str, np.ndarray],
                timings: dict[str, float] | None = None) -> dict[str, np.ndarray]:
    """Run one call in Lava (in this process); every population's spikes ``[length, N]``.
    ``timings`` receives the seconds spent building the processes and running them. A bias
    that changes across window steps (TSM) is set before each step, running one step at a time."""
    import time

    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg

    from .lava_compat import import_lava

    import_lava()
    length, steps = call_length(graph), graph.config.snn_steps
    t0 = time.perf_counter()
    proc, sinks, lifs = build_network(graph, bias)
    t1 = time.perf_counter()
    cfg = Loihi2SimCfg(select_tag="fixed_pt")
    varying = [p for p in graph.populations if not (bias[p.name] == bias[p.name][:1]).all()]
    try:
        if not varying:
            proc.run(condition=RunSteps(num_steps=length), run_cfg=cfg)
        for tau in range(length if varying else 0):
            for pop in varying:  # the bias of window step k(tau), as TimedSimulator uses it
                k, prev = (min(max(tau - d - pop.offset, 0), steps - 1) for d in (0, 1))
                if tau and k != prev:
                    lifs[pop.name].bias_mant.set(bias[pop.name][k])
            proc.run(condition=RunSteps(num_steps=1), run_cfg=cfg)
        spikes = {name: np.asarray(s.data.get()).T.astype(bool) for name, s in sinks.items()}
    finally:
        proc.stop()
    if timings is not None:
        timings.update(build_s=t1 - t0, run_s=time.perf_counter() - t1)
    return spikes


def lava_spikes(graph: DeployGraph, bias: dict[str, np.ndarray], *, timeout_s: float = 600
                ) -> dict[str, torch.Tensor]:
    """Every population's spikes ``[T, B, C, H, W]`` in its window, for a scheduled graph and the
    bias mantissas of a batch (``[T_snn, B, C, H, W]`` per population, as
    :func:`~sdm_neuro.simulators.integer.bias_mantissa` gives them). Each sample is one Lava run
    in a child process killed after ``timeout_s``."""
    check_lava_deployable(graph)
    return run_windows(graph, bias, timeout_s, "sdm-neuro-lava-")


def lava_call(graph: DeployGraph, x: torch.Tensor, t: torch.Tensor, *, timeout_s: float = 600
              ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One denoising call in Lava: eps and every population's spikes in its window
    ``[T, B, C, H, W]``, as :class:`~sdm_neuro.simulators.timed.TimedSimulator` returns them."""
    check_lava_deployable(graph)
    if not is_scheduled(graph):
        graph = schedule(graph)
    spikes = lava_spikes(graph, bias_mantissas(graph, x, t), timeout_s=timeout_s)
    eps = IntegerSimulator(graph).decode(spikes, graph.config.snn_steps)
    return eps, spikes
