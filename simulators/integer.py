"""The bit-exact integer simulator of a quantized deployment graph (ideal timing).

Every population sees its input in the same SNN step as in the PyTorch model. Neuron arithmetic
is :mod:`.lif` (Lava's ``PyLifModelBitAcc``); a projection's accumulation ``W_int @ s`` is
computed by a float32 conv, which is exact: binary spikes times integer weights |w| <= 256 give
integer partial sums bounded by 256 * fan_in, and :func:`check_exact_accumulation` requires that
bound below 2**24 (float32 represents every integer up to 2**24 exactly, so every partial sum
and the result are exact whatever the summation order). Larger fan-ins fall back to float64.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch.nn import functional as F

from ..ir.connectivity import stored_fan_out
from ..ir.graph import HOST, DeployGraph, Population, Projection
from ..ir.host import decoder_tail, per_call_bias, pixel_current
from ..errors import ConfigError
from ..ir.fixed_point import BIAS_MAX, BIAS_MIN, NO_LEAK_DV, NO_SYNAPTIC_MEMORY_DU
from .counting import nonzero_counts
from .device import exact_mode, integer_device
from .float_graph import project
from .lif import LifParams, LifState, if_run, lif_step

# float32 holds every integer up to 2**(stored mantissa bits + 1) exactly (the implicit bit).
FLOAT32_MANTISSA_BITS = round(-math.log2(torch.finfo(torch.float32).eps))  # 23
FLOAT32_EXACT = 1 << (FLOAT32_MANTISSA_BITS + 1)
IF_DU = NO_SYNAPTIC_MEMORY_DU  # u forgets every step: the IF neurons of SDDPM


def accumulation_bound(proj: Projection) -> int:
    """Largest |partial sum| of ``W_int @ s`` for binary s: sum of |w| over one output's taps."""
    w = proj.weight_int.to(torch.int64).abs()
    if w.dim() == 5:  # TSM: per-step weight sets
        w = w.amax(dim=0)
    return int(w.flatten(1).sum(dim=1).max())


def check_exact_accumulation(proj: Projection) -> torch.dtype:
    """float32 when every partial sum is an integer below 2**24, else float64 (below 2**53)."""
    return torch.float32 if accumulation_bound(proj) < FLOAT32_EXACT else torch.float64


@dataclass
class Counters:
    """Per-call activity (summed over the batch), for statistics and the energy report."""

    spikes: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    synops: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    neuron_updates: int = 0
    host_macs: int = 0
    events: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # wraps, clips
    calls: int = 0
    payloads: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # graded mapping:
    # non-zero payloads each relay sent

    def to_dict(self) -> dict:
        return {"calls": self.calls, "neuron_updates": self.neuron_updates,
                "host_macs": self.host_macs, "spikes": dict(self.spikes),
                "synops": dict(self.synops), "events": dict(self.events),
                **({"payloads": dict(self.payloads)} if self.payloads else {})}

    @classmethod
    def summed(cls, parts: Iterable[dict]) -> Counters:
        """Counters of consecutive runs (each a :meth:`to_dict`) added up, each key in the order
        it first appears: what one run over all their calls counts."""
        out = cls()
        for d in parts:
            out.calls += d["calls"]
            out.neuron_updates += d["neuron_updates"]
            out.host_macs += d["host_macs"]
            for name in ("spikes", "synops", "events", "payloads"):
                mine = getattr(out, name)
                for k, v in d.get(name, {}).items():
                    mine[k] += v
        return out


def bias_mantissa(pop: Population, current: torch.Tensor, counters: Counters | None
                  ) -> torch.Tensor:
    """Float bias current -> 13-bit mantissa at the population's ``bias_exp`` (clipped, counted)."""
    step = pop.scale * 2.0**pop.lif.bias_exp
    mant = torch.round(current / step).to(torch.int64)
    clipped = mant.clamp(BIAS_MIN, BIAS_MAX)
    if counters is not None:
        counters.events["bias_clip"] += int((clipped != mant).sum())
    return clipped


def upsample_kernel(weight: torch.Tensor) -> torch.Tensor:
    """A 3x3 conv (padding 1) after a 2x nearest upsample, as one transposed conv (stride 2,
    padding 1, 4x4 kernel) on the small map: :func:`conv_upsampled`.

    Per axis, output ``2i + a`` sees small-map ``i - 1, i`` (a = 0) with taps ``(w0, w1 + w2)``,
    or ``i, i + 1`` (a = 1) with ``(w0 + w1, w2)``: the transposed conv's taps are
    ``(w2, w1 + w2, w0 + w1, w0)``. Folded taps are integer sums whose magnitude never exceeds
    the sum of the taps' magnitudes, so :func:`accumulation_bound` still bounds every partial
    sum. Why: 16 taps per small-map pixel instead of 9 per pixel of the 4x larger map (44% fewer
    multiply-adds in the largest layers of the U-Net decoder), and oneDNN's transposed conv
    writes the interleaved output directly.
    ``[..., O, C, 3, 3]`` -> ``[..., C, O, 4, 4]`` (conv_transpose2d's layout).
    """
    def fold(w: torch.Tensor, dim: int) -> torch.Tensor:
        w0, w1, w2 = w.unbind(dim)
        return torch.stack([w2, w1 + w2, w0 + w1, w0], dim)

    return fold(fold(weight, -2), -1).transpose(-4, -3)


def conv_upsampled(z: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """``conv3x3(upsample2x(z))`` from an :func:`upsample_kernel`; ``z`` is [N, C, H, W]."""
    return F.conv_transpose2d(z, kernel, stride=2, padding=1)


def upsampled(proj: Projection) -> bool:
    """Whether ``proj`` (3x3, padding 1, after a 2x upsample) runs as :func:`conv_upsampled`."""
    return proj.upsample == 2 and proj.kernel == 3 and proj.stride == 1 and proj.padding == 1


def _as_slice(idx: torch.Tensor, n: int) -> slice | torch.Tensor | None:
    """None when ``idx`` is ``0..n-1``, a slice when it is a contiguous ascending run, else
    ``idx`` itself."""
    if len(idx) and bool((idx[1:] - idx[:-1] == 1).all()):
        a, b = int(idx[0]), int(idx[-1]) + 1
        return None if (a, b) == (0, n) else slice(a, b)
    return idx


def _on(idx: slice | torch.Tensor | None, device: torch.device
        ) -> slice | torch.Tensor | None:
    return idx.to(device) if isinstance(idx, torch.Tensor) else idx


def _select(x: torch.Tensor, idx: slice | torch.Tensor | None) -> torch.Tensor:
    if idx is None:
        return x
    return x[:, :, idx] if isinstance(idx, slice) else x.index_select(2, idx)


@dataclass
class _Fused:
    """All projections leaving one source with one geometry, run as one conv over the
    concatenation of their non-zero output rows (an all-zero row is no synapse: skip padding
    from skip concatenations costs nothing)."""

    src: str
    proto: Projection                  # geometry (stride, upsample, kernel)
    weight: torch.Tensor               # [sum rows, C_src, k, k] (or [T, ...] for TSM)
    dtype: torch.dtype
    # (projection, destination channels, conv output rows); each is None (all of them), a
    # slice (a contiguous run: a view, no copy) or an index tensor
    members: list[tuple[int, slice | torch.Tensor | None, slice | torch.Tensor | None]]
    upsampled: bool = False            # weight holds an upsample_kernel

    def conv(self, z: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """``[T, B, C_src, H, W]`` spikes (float) -> ``[T, B, rows, H', W']``."""
        if not self.upsampled:
            return project(self.proto, z, weight)
        y = conv_upsampled(z.flatten(0, 1), weight)
        return y.view(*z.shape[:2], *y.shape[1:])


class IntegerSimulator:
    """Runs denoising calls of one quantized graph (ideal timing). ``device``: where the integer
    network runs (see :mod:`.device`); inputs, eps and the host stay on the CPU."""

    def __init__(self, graph: DeployGraph, device: str | torch.device | None = None) -> None:
        if not graph.quantized:
            raise ConfigError("the deployment graph is not quantized (run quantize first).")
        self.graph = graph
        self.device = integer_device(device)
        self.shapes = {p.name: p.shape for p in graph.populations}
        self.params = {p.name: LifParams(du=p.lif.du, dv=p.lif.dv, vth=p.lif.vth,
                                         bias_exp=p.lif.bias_exp) for p in graph.populations}
        # The host decoder runs in float: its projections with one geometry and gain are one
        # conv over the sources' spikes concatenated along channels (weights likewise).
        host: dict[tuple, list[Projection]] = defaultdict(list)
        for p in graph.projections:
            if p.dst == HOST:
                host[(p.stride, p.upsample, p.kernel, p.gain, self.shapes[p.src][1:])].append(p)
        self.host_groups: list[tuple[list[str], _Fused]] = []
        # Float convs, so no folded kernels here: a transposed conv's float rounding depends
        # on the batch size in oneDNN, and each sample's eps must not.
        for ps in host.values():
            weight = torch.cat([p.weight.float() for p in ps], dim=1)
            self.host_groups.append(([p.src for p in ps], _Fused(
                HOST, ps[0], weight.contiguous(), torch.float32, [])))
        # A destination's accumulator is float32 when the sum of its inputs' bounds (after the
        # weight exponent) stays below 2**24, so every partial sum is an exact integer there.
        reach: dict[str, float] = defaultdict(float)
        for p in graph.projections:
            if p.dst != HOST:
                reach[p.dst] += accumulation_bound(p) * 2.0**p.weight_exp
        self.acc_dtype = {d: torch.float32 if r < FLOAT32_EXACT else torch.float64
                          for d, r in reach.items()}
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, p in enumerate(graph.projections):
            if p.dst != HOST:
                groups[(p.src, p.stride, p.upsample, p.kernel, p.weight_int.dim())].append(i)
        self.fused: dict[str, list[_Fused]] = defaultdict(list)
        self.fanout: dict[int, torch.Tensor] = {}
        for members in groups.values():
            parts, entries, start = [], [], 0
            dtype = torch.float32
            for i in members:
                p = graph.projections[i]
                w = p.weight_int
                nz = w.flatten(-3).ne(0).any(-1)
                rows = (nz.any(0) if w.dim() == 5 else nz).nonzero().flatten()
                if not len(rows):
                    continue
                parts.append(w[:, rows] if w.dim() == 5 else w[rows])
                entries.append((i, rows, slice(start, start + len(rows))))
                start += len(rows)
                if check_exact_accumulation(p) != torch.float32:
                    dtype = torch.float64
                self.fanout[i] = stored_fan_out(p, self.shapes[p.src]).to(self.device,
                                                                           torch.float64)
            if entries:
                p0 = graph.projections[members[0]]
                tsm = parts[0].dim() == 5
                weight = torch.cat(parts, dim=1 if tsm else 0)
                # Equal integer rows (the same conv reaching several populations along an
                # identity residual path) are computed once and gathered for each member.
                flat = (weight.transpose(0, 1) if tsm else weight).flatten(1)
                uniq, inverse = torch.unique(flat, dim=0, return_inverse=True)
                # Keep first-occurrence order, so a member owning every row needs no gather.
                first = torch.full((len(uniq),), len(flat)).scatter_reduce_(
                    0, inverse, torch.arange(len(flat)), "amin")
                order = first.argsort()
                uniq, inverse = uniq[order], order.argsort()[inverse]
                if tsm:  # back to [T, rows, ...]
                    uniq = uniq.view(-1, weight.shape[0], *weight.shape[2:]).transpose(0, 1)
                else:
                    uniq = uniq.view(-1, *weight.shape[1:])
                entries = [(i, _as_slice(rows, self.shapes[graph.projections[i].dst][0]),
                            _as_slice(inverse[sl], len(uniq))) for i, rows, sl in entries]
                if upsampled(p0):
                    uniq = upsample_kernel(uniq)
                entries = [(i, _on(rows, self.device), _on(sl, self.device))
                           for i, rows, sl in entries]
                self.fused[p0.src].append(_Fused(p0.src, p0, uniq.to(self.device, dtype)
                                                 .contiguous(), dtype, entries, upsampled(p0)))

    def _send(self, f: _Fused, spk: torch.Tensor, a_in: dict[str, torch.Tensor],
              batch: int, first_step: int = 0) -> None:
        """Project ``spk`` (SNN steps ``first_step...``) through the fused group into the
        destinations' accumulators ``a_in``.

        Accumulators hold integers in float (``acc_dtype``): the conv result is an exact
        integer (see :func:`check_exact_accumulation`), ``x * 2**e`` is exact, ``floor(x * 2**-e)``
        is Lava's arithmetic right shift, and the summed bounds keep every sum exact (below 2**24
        for float32, far below 2**53 for float64), so this equals the int64 computation while
        skipping its conversions."""
        z = spk if spk.dtype == f.dtype else spk.to(f.dtype)
        if f.weight.dim() == 5:  # TSM: the weights of step s act on the spikes of step s
            acc = torch.cat([f.conv(z[s:s + 1], f.weight[first_step + s])
                             for s in range(z.shape[0])])
        else:
            acc = f.conv(z, f.weight)
        for i, rows, sl in f.members:
            p = self.graph.projections[i]
            part = _select(acc, sl)
            scale = 2.0**p.weight_exp
            if p.weight_exp < 0:
                part, scale = torch.floor(part * scale), 1.0
            dtype = self.acc_dtype[p.dst]
            if p.dst not in a_in and rows is None:  # a first input covering every channel
                # becomes the accumulator (a copy: acc may serve other members)
                a_in[p.dst] = (part.to(dtype, copy=True) if scale == 1.0
                               else part.mul(scale).to(dtype))
                continue
            if p.dst not in a_in:
                c, h, w = self.shapes[p.dst]
                a_in[p.dst] = torch.zeros(spk.shape[0], batch, c, h, w, dtype=dtype,
                                          device=spk.device)
            dst = a_in[p.dst]
            if isinstance(rows, torch.Tensor):
                dst.index_add_(2, rows, part.to(dtype), alpha=scale)
            else:  # x * 2**e and the sum are exact integers: add_'s alpha does the shift
                (dst if rows is None else dst[:, :, rows]).add_(part, alpha=scale)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, t: torch.Tensor, counters: Counters | None = None
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(eps on the CPU, every population's spikes ``[T, B, C, H, W]`` on the device)."""
        with exact_mode():
            return self._call(x, t, counters)

    def _call(self, x: torch.Tensor, t: torch.Tensor, counters: Counters | None
              ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        g = self.graph
        steps, batch, dev = g.config.snn_steps, x.shape[0], self.device
        pixels = pixel_current(g, x)
        spikes: dict[str, torch.Tensor] = {}
        a_in: dict[str, torch.Tensor] = {}
        for pop in g.populations:
            c, h, w = pop.shape
            drive = a_in.pop(pop.name, None)
            if drive is None:
                drive = torch.zeros(steps, batch, c, h, w, dtype=torch.int64, device=dev)
            bias = bias_mantissa(pop, per_call_bias(g, pop, t, pixels), counters)
            bias = bias.to(dev).expand(steps, batch, c, h, w)
            events: dict[str, int] = {}
            params = self.params[pop.name]
            if params.du == IF_DU and params.dv == NO_LEAK_DV:
                out = if_run(drive, bias, params, counters=events)
            else:
                state = LifState.zeros((batch, c, h, w), device=dev)
                drive = drive.to(torch.int64)
                out = torch.stack([lif_step(state, drive[s], bias[s], params, counters=events,
                                            check=False) for s in range(steps)])
            spikes[pop.name] = out
            as_float: dict[torch.dtype, torch.Tensor] = {}  # one conversion per conv dtype
            for f in self.fused.get(pop.name, ()):
                if f.dtype not in as_float:
                    as_float[f.dtype] = out.to(f.dtype)
                self._send(f, as_float[f.dtype], a_in, batch)
            if counters is not None:
                for k, v in events.items():
                    counters.events[k] += v
        if counters is not None:
            self._count(spikes, batch, counters)
        return self.decode(spikes, steps), spikes

    def _count(self, spikes: dict[str, torch.Tensor], batch: int, counters: Counters) -> None:
        """Spikes, synaptic operations (spikes x true fan-out), neuron updates, host MACs."""
        g = self.graph
        steps = g.config.snn_steps
        for pop in g.populations:
            per_src = nonzero_counts(spikes[pop.name])
            counters.spikes[pop.name] += int(per_src.sum())
            counters.neuron_updates += steps * batch * pop.neurons
            for f in self.fused.get(pop.name, ()):
                for i, _, _ in f.members:
                    p = g.projections[i]
                    counters.synops[f"{p.src}->{p.dst}"] += int((per_src * self.fanout[i]).sum())
        counters.calls += 1
        counters.host_macs += host_macs(g, batch)

    def decode(self, spikes: dict[str, torch.Tensor], steps: int) -> torch.Tensor:
        """The host, on the CPU: read the decoder's projections (float weights), run the tail.
        ``spikes``: float32 (or bool) spikes of every population, on any device."""
        g = self.graph
        hsum = g.host.tail_bias[:, None, :, None, None].float()
        for sources, f in self.host_groups:
            parts = [spikes[s].to("cpu", torch.float32) for s in sources]
            z = parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)
            gain = torch.tensor(f.proto.gain or (1.0,) * steps).view(-1, 1, 1, 1, 1)
            hsum = hsum + gain * f.conv(z, f.weight)
        return decoder_tail(g, hsum).float()


def host_macs(graph: DeployGraph, batch: int) -> int:
    """Dense multiply-accumulates of the host per call: pixel conv, decoder input, tail."""
    cfg = graph.config
    steps, res, c_img = cfg.snn_steps, cfg.img_size, cfg.img_ch
    stem = graph.populations[0]
    macs = stem.neurons * c_img * 9  # the pixel conv, once per call
    for proj in graph.projections:
        if proj.dst == HOST:
            c_out, c_in, k, _ = proj.weight.shape
            macs += steps * c_out * res * res * c_in * k * k
    c_tail = graph.host.tail_bias.shape[1]
    macs += steps * res * res * (c_tail * c_img * 9 + c_img * c_img * 9)
    return macs * batch
