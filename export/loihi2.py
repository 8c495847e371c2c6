"""Loihi 2 through Lava: a quantized deployment graph as Lava processes, run in Lava's
bit-accurate CPU simulation (``Loihi2SimCfg(select_tag='fixed_pt')``).

One denoising call is one Lava network per sample:

* every population is a ``LIFReset`` (du, dv, vth, bias_exp per process; the per-call bias -
  constant part, time embedding, pixel conv - as per-neuron ``bias_mant``) whose reset falls at
  the start of its window (``simulators/timed.py`` proves why the windows line up);
* every projection is a ``Sparse`` (or ``DelaySparse`` for the balancing delays) holding the
  explicit synapse matrix: the conv, its stride and a nearest upsample unrolled into one weight
  per (source, target) pair. Folded upsample taps can leave the 8-bit range; such a matrix is
  split into parts that each fit, and Lava sums the parts at the neuron's input, which is exact
  (the accumulation of one projection is an integer sum in any order);
* every population's spikes are read through a sink ``RingBuffer``.

Lava runs in a child process with a hard timeout: an error inside a Lava process can deadlock
the run instead of raising.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..deploy.graph import HOST, DeployGraph, Projection
from ..deploy.host import per_call_bias, pixel_current
from ..errors import ExportError
from ..simulators.integer import IntegerSimulator, bias_mantissa
from ..simulators.timed import call_length, schedule

WEIGHT_MIN, WEIGHT_MAX = -256, 254  # Lava's MIXED sign mode: 8-bit mantissa, even values


def check_lava_deployable(graph: DeployGraph) -> None:
    """Refuse what one fixed Lava network cannot hold, saying why: weights or inputs that change
    across SNN steps (TSM gains that are not all equal)."""
    if not graph.quantized:
        raise ExportError("the graph is not quantized; quantize it before building Lava processes.")
    tsm = [f"{p.src} -> {p.dst}" for p in graph.projections if p.dst != HOST
           and p.weight_int.dim() == 5 and not bool((p.weight_int == p.weight_int[:1]).all())]
    if tsm or len(set(graph.host.pixel_gain)) > 1:
        raise ExportError(
            "this is a TSM model (SDM's temporal-wise spiking mechanism): its weights change at "
            f"every SNN step ({', '.join(tsm[:3]) or 'the pixel input'}{', ...' if len(tsm) > 3 else ''}), "
            "which a fixed Lava connection cannot hold. The NIR export, the integer simulator "
            "and the energy report cover TSM models; the Loihi 2 target does not.")


def connection_matrix(proj: Projection, src_shape: tuple[int, int, int],
                      dst_shape: tuple[int, int, int]) -> scipy.sparse.csr_matrix:  # noqa: F821
    """The synapses of ``proj`` as an int64 ``[N_dst, N_src]`` CSR matrix over C-order flattened
    (C, H, W) populations: each conv tap placed explicitly, the upsampled positions mapped back
    to their source neuron, taps that meet the same (source, target) pair summed."""
    from scipy.sparse import coo_matrix

    w = proj.weight_int.to(torch.int64)
    w = (w[0] if w.dim() == 5 else w).numpy()  # TSM: equal per-step weights (checked above)
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


def weight_parts(m) -> list:
    """Split an integer matrix into matrices whose entries fit one Lava synapse (even values in
    [-256, 254]) and that sum to it: usually one part; folded upsample taps may need two."""
    parts, rest = [], m.copy()
    while rest.nnz:
        part = rest.copy()
        part.data = np.clip(part.data, WEIGHT_MIN, WEIGHT_MAX)
        if (part.data % 2).any():
            raise ExportError("a synaptic weight is odd: Lava's mixed-sign weights are even.")
        parts.append(part)
        rest = rest - part
        rest.eliminate_zeros()
    return parts


def bias_mantissas(graph: DeployGraph, x: torch.Tensor, t: torch.Tensor) -> list[dict[str, np.ndarray]]:
    """Per sample, per population: the int32 ``bias_mant`` of each neuron for this call."""
    pixels = pixel_current(graph, x)
    out: list[dict[str, np.ndarray]] = [{} for _ in range(x.shape[0])]
    for pop in graph.populations:
        mant = bias_mantissa(pop, per_call_bias(graph, pop, t, pixels), None)  # [T,B,C,H|1,W|1]
        if not bool((mant == mant[:1]).all()):
            raise ExportError(f"population {pop.name}: its bias changes across SNN steps (TSM); "
                              "a Lava LIF holds one bias per call.")
        full = mant[0].expand(x.shape[0], *pop.shape)
        for b in range(x.shape[0]):
            out[b][pop.name] = full[b].reshape(-1).numpy().astype(np.int32)
    return out


def build_network(graph: DeployGraph, bias: dict[str, np.ndarray]):
    """Lava processes for one call of a scheduled graph; returns (a process to run, sinks)."""
    from lava.proc.io.sink import RingBuffer
    from lava.proc.lif.process import LIFReset
    from lava.proc.sparse.process import DelaySparse, Sparse
    from lava.utils.weightutils import SignMode

    length = call_length(graph)
    lifs, sinks = {}, {}
    for pop in graph.populations:
        p = pop.lif
        lifs[pop.name] = LIFReset(shape=(pop.neurons,), du=p.du, dv=p.dv, vth=p.vth,
                                  bias_mant=bias[pop.name], bias_exp=p.bias_exp,
                                  reset_interval=length, reset_offset=(pop.offset + 1) % length,
                                  name=pop.name)
        sinks[pop.name] = RingBuffer(shape=(pop.neurons,), buffer=length)
        lifs[pop.name].s_out.connect(sinks[pop.name].a_in)
    for proj in graph.projections:
        if proj.dst == HOST:
            continue
        src, dst = graph.population(proj.src), graph.population(proj.dst)
        for part in weight_parts(connection_matrix(proj, src.shape, dst.shape)):
            common = {"weights": part.astype(np.int32), "weight_exp": proj.weight_exp,
                      "num_weight_bits": 8, "sign_mode": SignMode.MIXED}
            if proj.delay:
                delays = part.astype(np.int64)  # Lava checks dtype == int
                delays.data[:] = proj.delay
                conn = DelaySparse(delays=delays, **common)
            else:
                conn = Sparse(**common)
            lifs[proj.src].s_out.connect(conn.s_in)
            conn.a_out.connect(lifs[proj.dst].a_in)
    return next(iter(lifs.values())), sinks


def run_network(graph: DeployGraph, bias: dict[str, np.ndarray],
                timings: dict[str, float] | None = None) -> dict[str, np.ndarray]:
    """Run one call in Lava (in this process); every population's spikes ``[length, N]``.
    ``timings`` receives the seconds spent building the processes and running them."""
    import time

    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg

    from .lava_compat import import_lava

    import_lava()
    length = call_length(graph)
    t0 = time.perf_counter()
    proc, sinks = build_network(graph, bias)
    t1 = time.perf_counter()
    try:
        proc.run(condition=RunSteps(num_steps=length), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        spikes = {name: np.asarray(s.data.get()).T.astype(bool) for name, s in sinks.items()}
    finally:
        proc.stop()
    if timings is not None:
        timings.update(build_s=t1 - t0, run_s=time.perf_counter() - t1)
    return spikes


def lava_call(graph: DeployGraph, x: torch.Tensor, t: torch.Tensor, *, timeout_s: float = 600
              ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One denoising call in Lava: eps and every population's spikes in its window
    ``[T, B, C, H, W]``, as :class:`~sdm_neuro.simulators.timed.TimedSimulator` returns them.
    Each sample is one Lava run in a child process killed after ``timeout_s``."""
    check_lava_deployable(graph)
    if not any(p.offset for p in graph.populations):
        graph = schedule(graph)
    steps = graph.config.snn_steps
    per_sample = bias_mantissas(graph, x, t)
    runs = []
    with tempfile.TemporaryDirectory(prefix="sdm-neuro-lava-") as tmp:
        gpath = graph.save(Path(tmp) / "graph.pt")
        for b, bias in enumerate(per_sample):
            inp, out = Path(tmp) / f"bias{b}.npz", Path(tmp) / f"spikes{b}.npz"
            np.savez(inp, **bias)
            _run_child([sys.executable, "-m", "sdm_neuro.export.lava_worker", str(gpath),
                        str(inp), str(out)], timeout_s)
            with np.load(out) as z:
                runs.append({k: z[k] for k in z.files})
    spikes = {}
    for pop in graph.populations:
        window = np.stack([r[pop.name][pop.offset:pop.offset + steps] for r in runs], axis=1)
        spikes[pop.name] = torch.from_numpy(window).reshape(steps, len(runs), *pop.shape)
    eps = IntegerSimulator(graph).decode(spikes, steps)
    return eps, spikes


def _run_child(cmd: list[str], timeout_s: float) -> None:
    # A new session, so that a timeout kills Lava's own worker processes too.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        log, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise ExportError(f"the Lava run did not finish within {timeout_s:.0f} s and was killed "
                          "(an error inside a Lava process can deadlock it).") from None
    if proc.returncode != 0:
        tail = log.decode(errors="replace")[-3000:]
        raise ExportError(f"the Lava run failed (exit code {proc.returncode}):\n{tail}")
