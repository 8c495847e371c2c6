"""Loihi 2 through Lava: a quantized deployment graph as Lava processes, run in Lava's
bit-accurate CPU simulation (``Loihi2SimCfg(select_tag='fixed_pt')``).

One denoising call is one Lava network per sample:

* every population is a ``LIFReset`` (du, dv, vth, bias_exp per process; the per-call bias -
  constant part, time embedding, pixel conv - as per-neuron ``bias_mant``) whose reset falls at
  the start of its window (``simulators/timed.py`` proves why the windows line up);
* every projection is a ``Sparse`` (or ``DelaySparse`` for the balancing delays) holding the
  explicit synapse matrix: the conv, its stride and a nearest upsample unrolled into one weight
  per (source, target) pair. Folded upsample taps can leave the 8-bit range; such a matrix is
  split into parts that each fit, and Lava sums the parts at the neuron's input. Each part
  shifts its own sum by ``weight_exp``: exact for a left shift, and for a right shift (a floor)
  because all parts but one hold multiples of ``2**-weight_exp`` (:func:`weight_parts`);
* every population's spikes are read through a sink ``RingBuffer``;
* TSM (SDM's per-step weights): a projection whose weights differ per SNN step runs from its
  source S through time-gated relays, one ``LIF`` per window step k of S, each passing S's
  spikes only at S's step k, into one connection per k holding that step's weights. A relay
  neuron (du = dv = 4095, vth 2, so v is 128 per input and fires on two) needs both its source
  neuron's spike and a clock spike; the clock of global step tau is a single neuron with bias
  64 per step and vth = tau that fires once, at tau, then inhibits itself for good. The relay
  adds one step, which ``simulators/timed.py`` schedules. The per-step bias of TSM populations
  is set by the host before each step (``bias_mant.set``; the run goes one step at a time).

Lava runs in a child process with a hard timeout: an error inside a Lava process can deadlock
the run instead of raising.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..compiler.schedule import schedule
from ..errors import ExportError
from ..ir.graph import HOST, DeployGraph, Projection, call_length, relayed
from ..ir.host import per_call_bias, pixel_current
from ..simulators.integer import IntegerSimulator, bias_mantissa
from .lava_process import run_child

WEIGHT_MIN, WEIGHT_MAX = -256, 254  # Lava's MIXED sign mode: 8-bit mantissa, even values


def check_lava_deployable(graph: DeployGraph) -> None:
    if not graph.quantized:
        raise ExportError("the graph is not quantized; quantize it before building Lava processes.")


def connection_matrix(proj: Projection, src_shape: tuple[int, int, int],
                      dst_shape: tuple[int, int, int], step: int = 0
                      ) -> scipy.sparse.csr_matrix:  # noqa: F821
    """The synapses of ``proj`` (at SNN step ``step`` for TSM) as an int64 ``[N_dst, N_src]``
    CSR matrix over C-order flattened (C, H, W) populations: each conv tap placed explicitly,
    the upsampled positions mapped back to their source neuron, taps that meet the same
    (source, target) pair summed."""
    from scipy.sparse import coo_matrix

    w = proj.weight_int.to(torch.int64)
    w = (w[step] if w.dim() == 5 else w).numpy()
    c_out, c_in, k, _ = w.shape
    cs, hs, ws = src_shape
    cd, hd, wd = dst_shape
    if c_in != cs or c_out != cd:
        raise ExportError(f"projection {proj.src} -> {proj.dst}: weight {tuple(w.shape)} does not "
                          f"fit source {src_shape} / target {dst_shape}.")
    u, s, pad = proj.upsample, proj.stride, proj.padding

    def axis(n_out: int, n_src: int):  # (output index, tap, source index) along one axis
        o, kk = np.meshgrid(np.arange(n_out), np.arange(k), indexing="ij")
        pos = o * s + kk - pad  # position on the (upsampled) input map
        ok = (pos >= 0) & (pos < n_src * u)
        return o[ok], kk[ok], pos[ok] // u

    yo, ky, ys = axis(hd, hs)
    xo, kx, xs = axis(wd, ws)
    co, ci = np.meshgrid(np.arange(c_out), np.arange(c_in), indexing="ij")
    co, ci = co.ravel(), ci.ravel()
    vals = w[co[:, None, None], ci[:, None, None], ky[None, :, None], kx[None, None, :]]
    rows = (co[:, None, None] * hd + yo[None, :, None]) * wd + xo[None, None, :]
    cols = (ci[:, None, None] * hs + ys[None, :, None]) * ws + xs[None, None, :]
    keep = vals != 0
    m = coo_matrix((vals[keep], (rows[keep], cols[keep])), shape=(cd * hd * wd, cs * hs * ws))
    m = m.tocsr()  # sums the folded taps
    m.eliminate_zeros()
    return m


def weight_parts(m, weight_exp: int = 0, where: str = "a projection") -> list:
    """Split an integer matrix into matrices whose entries fit one Lava synapse (even values in
    [-256, 254]) and whose Lava outputs sum to the whole matrix's, ``(m @ s) << weight_exp``:
    usually one part; folded upsample taps may need more.

    Each part is its own connection process and shifts its own sum. A left shift distributes
    over the sum, so any split is exact for ``weight_exp >= 0``. A negative exponent floors each
    part's sum, and floors do not add up; they do when all parts but one have entries that are
    multiples of ``2**-weight_exp`` (their sums then shift exactly): those take the multiples,
    one more part the remainders ``m mod 2**-weight_exp``, which are even and fit."""
    if m.nnz and (m.data % 2).any():
        raise ExportError(f"{where}: a synaptic weight is odd; Lava's mixed-sign weights are "
                          "even.")
    if not m.nnz or (m.data.min() >= WEIGHT_MIN and m.data.max() <= WEIGHT_MAX):
        return [m.copy()] if m.nnz else []
    parts, rest, hi = [], m.copy(), WEIGHT_MAX
    if weight_exp < 0:
        unit = 2 ** -weight_exp
        hi = -WEIGHT_MIN - unit  # the largest multiple of unit below 256
        rem = m.copy()
        rem.data = np.mod(rem.data, unit)
        rem.eliminate_zeros()
        rest = m - rem
        rest.eliminate_zeros()
        if unit > -WEIGHT_MIN or (hi <= 0 and rest.nnz and rest.data.max() > 0):
            raise ExportError(f"{where}: weight_exp {weight_exp}: the matrix needs more than one Lava "
                              f"synapse per weight, and its parts would have to be multiples of "
                              f"{unit} in [-256, 254], which they cannot be exactly.")
        parts = [rem] if rem.nnz else []
    while rest.nnz:  # every step takes the largest part that fits (multiples of unit if < 0)
        part = rest.copy()
        part.data = np.clip(part.data, WEIGHT_MIN, hi)
        parts.append(part)
        rest = rest - part
        rest.eliminate_zeros()
    return parts


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
                  "num_weight_bits": 8, "sign_mode": SignMode.MIXED}
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
            c = LIF(shape=(1,), du=4095, dv=0, vth=tau, bias_mant=np.array([1]), bias_exp=6,
                    name=f"clock:{tau}")
            connect(c, sparse(csr_matrix(np.array([[-256]])), weight_exp=7), c)  # never again
            clocks[tau] = c
        return clocks[tau]

    def relay(src: str, k: int):
        """``src``'s spikes of its window step k, one step later."""
        if (src, k) not in relays:
            pop = graph.population(src)
            r = LIF(shape=(pop.neurons,), du=4095, dv=4095, vth=2, name=f"relay:{src}:{k}")
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
    steps = graph.config.snn_steps
    batch = next(iter(bias.values())).shape[1]
    runs = []
    with tempfile.TemporaryDirectory(prefix="sdm-neuro-lava-") as tmp:
        gpath = graph.save(Path(tmp) / "graph.pt")
        for b in range(batch):
            inp, out = Path(tmp) / f"bias{b}.npz", Path(tmp) / f"spikes{b}.npz"
            np.savez(inp, **{k: np.asarray(v[:, b]).reshape(steps, -1).astype(np.int32)
                             for k, v in bias.items()})
            run_child([sys.executable, "-m", "sdm_neuro.export.lava_worker", str(gpath),
                       str(inp), str(out)], timeout_s)
            with np.load(out) as z:
                runs.append({k: z[k] for k in z.files})
    spikes = {}
    for pop in graph.populations:
        window = np.stack([r[pop.name][pop.offset:pop.offset + steps] for r in runs], axis=1)
        spikes[pop.name] = torch.from_numpy(window).reshape(steps, len(runs), *pop.shape)
    return spikes


def lava_call(graph: DeployGraph, x: torch.Tensor, t: torch.Tensor, *, timeout_s: float = 600
              ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One denoising call in Lava: eps and every population's spikes in its window
    ``[T, B, C, H, W]``, as :class:`~sdm_neuro.simulators.timed.TimedSimulator` returns them."""
    check_lava_deployable(graph)
    if not any(p.offset for p in graph.populations):
        graph = schedule(graph)
    spikes = lava_spikes(graph, bias_mantissas(graph, x, t), timeout_s=timeout_s)
    eps = IntegerSimulator(graph).decode(spikes, graph.config.snn_steps)
    return eps, spikes
