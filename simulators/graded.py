"""The bit-exact integer simulator of a quantized graded graph, in ideal and hardware timing.

Arithmetic, as Lava's fixed-point models compute it (``../shared/reference/lava-graded-and-conv.md``):

* a conv (Lava ``Conv``) sums ``(w << e) * input`` over its taps and wraps the sum at 24 bits,
  ``((y + 2**23) mod 2**24) - 2**23`` (counted as ``conv_wrap``); its input is a population's
  spikes (0/1) or a relay's payloads;
* an identity (``Sparse``, weight 1) delivers ``floor(payload * 2**k)`` into its channel range;
  an upsample fan-out copies each spike to its 2x2 block;
* a relay (``GradedVec``, vth 0) sends the sum of its inputs, an int32 with no wrap (a payload
  beyond the graph's payload width is counted as ``relay_overflow``);
* an IF population is :mod:`.lif` (``PyLifModelBitAcc``) with the per-call bias mantissas.

Convs run as float convs of the model's own shape, which is exact: every partial sum is an
integer bounded by ``sum |w|`` over a target's taps times the largest input. Each call measures
its payloads and picks float32 wherever that bound stays below 2**23 (no wrap either) and an
accumulator's summed bounds below 2**24, float64 elsewhere (below 2**53); a larger bound splits
the payloads into 16-bit halves (each half's conv is exact in float64). A conv after an UpSample
runs as one transposed conv on the small map (:func:`~.integer.upsample_kernel`). So the graded
simulator runs the model's convolutions, not unrolled matrices, and costs what the float forward
costs or less.

Hardware timing (:class:`GradedTimedSimulator`): every connection delivers the source's output
of global step tau at ``tau + 1 + delay`` (Lava's one-step Conv / Sparse, DelaySparse's delay);
relays and IF layers add no step. Each node runs its T_snn-step window from ``offset``
(:func:`sdm_neuro.compiler.schedule_graded.schedule_graded`); IF layers are ``LIFReset`` with the
reset at their window start. As in :mod:`.timed`, every input of a window comes from its
sources' windows, so the windows compute what the ideal mode does (tested, and against Lava).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from ..errors import ConfigError
from ..ir.connectivity import fan_out
from ..ir.fixed_point import NO_LEAK_DV, NO_SYNAPTIC_MEMORY_DU, STATE_BITS
from ..ir.graded import Connection, GradedGraph
from ..ir.graph import Projection, call_length, is_scheduled
from ..ir.host import decoder_tail, per_call_bias, pixel_current
from .counting import nonzero_counts
from .device import exact_mode, integer_device
from .integer import FLOAT32_EXACT, Counters, bias_mantissa, conv_upsampled, upsample_kernel
from .lif import LifParams, LifState, if_run, lif_reset, lif_step

CONV_WRAP = 1 << STATE_BITS          # Lava's Conv wraps its sum at 24 bits
FLOAT64_EXACT = 1 << 53
_SPLIT = 16                           # payload halves of a split conv


def wrap24(y: torch.Tensor, events: dict[str, int] | None) -> torch.Tensor:
    """Lava Conv's wrap of an integer sum (float64 holding integers, exact below 2**53) into
    [-2**23, 2**23), counting wrapped elements."""
    half = CONV_WRAP >> 1
    lo, hi = (float(v) for v in torch.aminmax(y)) if y.numel() else (0.0, 0.0)
    if lo >= -half and hi < half:
        return y
    if events is not None:
        events["conv_wrap"] = events.get("conv_wrap", 0) + int(((y < -half) | (y >= half)).sum())
    return torch.remainder(y + half, CONV_WRAP) - half


def conv_fan_out(conn: Connection, src_shape: tuple[int, int, int]) -> torch.Tensor:
    """[C, H, W] float64 targets each source neuron reaches (synaptic operations per input)."""
    if conn.kind == "identity":
        return torch.ones(src_shape, dtype=torch.float64)
    if conn.kind == "upsample":
        return torch.full(src_shape, 4.0, dtype=torch.float64)
    proj = Projection(conn.src, conn.dst, conn.weight, stride=conn.stride)
    return fan_out(proj, src_shape)


@dataclass
class _Conv:
    conn: Connection
    weight32: torch.Tensor | None     # float32 kernel (w << e), for inputs whose sums are
    #                                   provably integers below 2**23 (exact, never wrap)
    weight64: torch.Tensor | None     # float64 kernel (w << e), for a payload input beyond that
    bound: int                        # max over targets of sum |w << e| over its taps


class _Runner:
    """The per-connection integer arithmetic shared by both timings. ``device``: where the
    integer network runs (see :mod:`.device`); inputs, eps and the host stay on the CPU."""

    def __init__(self, graph: GradedGraph, device: str | torch.device | None = None) -> None:
        if not graph.quantized:
            raise ConfigError("the graded graph is not quantized (run quantize_graded first).")
        self.graph = graph
        self.device = dev = integer_device(device)
        self.params = {p.name: LifParams(du=p.lif.du, dv=p.lif.dv, vth=p.lif.vth,
                                         bias_exp=p.lif.bias_exp) for p in graph.populations}
        self.binary = {p.name for p in graph.populations} | {
            r.name for r in graph.relays if r.binary}
        self.payload_max = (1 << (graph.meta.get("payload_bits", 24) - 1)) - 1
        self.events_total: dict[str, int] = {}
        self.convs: dict[int, _Conv] = {}
        # each node's (connection index, connection) inputs, in the graph's order
        self.ins: dict[str, list[tuple[int, Connection]]] = {n.name: [] for n in graph.nodes()}
        for i, c in enumerate(graph.connections):
            self.ins[c.dst].append((i, c))
        shapes = {n.name: n.shape for n in graph.nodes()}
        self.fanout: dict[int, torch.Tensor] = {}
        for i, c in enumerate(graph.connections):
            self.fanout[i] = conv_fan_out(c, shapes[c.src]).to(dev)
            if c.kind != "conv":
                continue
            w = c.effective_weight()
            bound = int(w.abs().flatten(1).sum(1).max())
            w32 = w.to(dev, torch.float32).contiguous() if bound < FLOAT32_EXACT else None
            w64 = (w.to(dev, torch.float64).contiguous()
                   if c.src not in self.binary or w32 is None else None)
            self.convs[i] = _Conv(c, w32, w64, bound)
    @torch.no_grad()
    def __call__(self, x: torch.Tensor, t: torch.Tensor, counters: Counters | None = None
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(eps on the CPU, every node's output ``[T, B, C, H, W]`` on the device: bool spikes;
        payloads as float tensors holding exact integers). The timing's ``_call`` runs in
        :func:`~sdm_neuro.simulators.device.exact_mode`."""
        with exact_mode():
            return self._call(x, t, counters)

    def apply(self, i: int, z: torch.Tensor, events: dict[str, int] | None,
              top: float | None = None) -> torch.Tensor:
        """Connection ``i`` (not an identity: see :meth:`deliver`) on its source's output ``z``
        ``[N, C, H, W]`` (bool spikes, or payloads in float32 / float64 holding exact integers)
        -> integers ``[N, C', H', W']`` in a new float tensor: float32 when every partial sum
        is provably an integer below 2**23 (so exact, and no wrap), else float64. ``top``: the
        source's largest |payload| when the caller knows it (else measured here)."""
        c = self.graph.connections[i]
        if c.kind == "upsample":  # copies values: float32 holds what the source holds
            dtype = torch.float64 if z.dtype == torch.float64 else torch.float32
            return F.interpolate(z.to(dtype), scale_factor=2, mode="nearest")
        cv = self.convs[i]
        if z.dtype == torch.bool:
            top = 1.0
        elif top is None:
            lo, hi = (float(v) for v in torch.aminmax(z)) if z.numel() else (0.0, 0.0)
            top = max(-lo, hi)
        # |sum| <= bound * max |input|: below 2**23 every partial sum is an exact float32
        # integer and nothing can wrap (no pass over y).
        if cv.weight32 is not None and top * cv.bound < CONV_WRAP >> 1:
            return F.conv2d(z.to(torch.float32), cv.weight32, stride=c.stride,
                            padding=c.padding)
        z = z.to(torch.float64)
        if top * cv.bound < FLOAT64_EXACT:
            y = F.conv2d(z, cv.weight64, stride=c.stride, padding=c.padding)
        else:  # payloads too large for one exact float64 conv: 16-bit halves
            hi = torch.floor(z / (1 << _SPLIT))
            y = sum(F.conv2d(part, cv.weight64, stride=c.stride, padding=c.padding) * scale
                    for part, scale in ((hi, float(1 << _SPLIT)),
                                        (z - hi * (1 << _SPLIT), 1.0)))
        return y if top * cv.bound < CONV_WRAP >> 1 else wrap24(y, events)

    def reach(self, i: int, top: float) -> float:
        """Largest |contribution| of connection ``i`` from a source whose outputs are at most
        ``top`` in magnitude (a wrapped conv sum is below 2**23)."""
        c = self.graph.connections[i]
        if c.kind == "identity":
            return top * 2.0**c.weight_exp + 1  # floor moves a value by less than 1
        if c.kind == "upsample":
            return top
        return min(top * self.convs[i].bound, float(CONV_WRAP >> 1))

    def deliver(self, i: int, z: torch.Tensor, acc: torch.Tensor) -> None:
        """Add connection ``i``'s contribution from source output ``z`` into ``acc``; an
        identity adds ``floor(z * 2**k)`` (exact in float64, Lava's arithmetic shift) into its
        channel range without a conv."""
        c = self.graph.connections[i]
        if c.kind != "identity":
            acc += self.apply(i, z, None)
            return
        k = c.weight_exp
        dst = acc if z.shape[1] == acc.shape[1] else acc[:, c.dst_channel:
                                                            c.dst_channel + z.shape[1]]
        if k >= 0:  # z * 2**k is an exact integer: add_'s alpha shifts without a copy
            dst.add_(z, alpha=2.0**k)
        else:
            dst += (z.to(acc.dtype) * 2.0**k).floor_()

    def fire(self, name: str, drive: torch.Tensor, bias: torch.Tensor,
             events: dict[str, int]) -> torch.Tensor:
        p = self.params[name]
        if p.du == NO_SYNAPTIC_MEMORY_DU and p.dv == NO_LEAK_DV:
            return if_run(drive, bias, p, counters=events)
        state = LifState.zeros(drive.shape[1:], device=drive.device)
        return torch.stack([lif_step(state, drive[s], bias[s], p, counters=events, check=False)
                            for s in range(drive.shape[0])])

    def note(self, events: dict[str, int]) -> None:
        """Keep every call's events (wraps, saturations, overflows), counters or not."""
        for k, v in events.items():
            self.events_total[k] = self.events_total.get(k, 0) + v

    def overflow(self, payload: torch.Tensor, events: dict[str, int]) -> float:
        """Count payloads beyond the graph's payload width; returns the largest |payload|."""
        lo, hi = (float(v) for v in torch.aminmax(payload)) if payload.numel() else (0.0, 0.0)
        top = max(-lo, hi)
        n = 0 if top <= self.payload_max else int((payload.abs() > self.payload_max).sum())
        events["relay_overflow"] = events.get("relay_overflow", 0) + n
        return top

    def biases(self, x: torch.Tensor, t: torch.Tensor, counters: Counters | None
               ) -> dict[str, torch.Tensor]:
        g = self.graph
        steps, batch = g.config.snn_steps, x.shape[0]
        pixels = pixel_current(g, x)
        return {p.name: bias_mantissa(p, per_call_bias(g, p, t, pixels), counters)
                .to(self.device).expand(steps, batch, *p.shape) for p in g.populations}

    def decode(self, payload: torch.Tensor) -> torch.Tensor:
        """The host decoder, on the CPU, on the output relay's payloads ``[T, B, C, H, W]``."""
        r = self.graph.relay(self.graph.output)
        h = payload.to("cpu", torch.float64) * r.scale + r.bias[:, None, :, None, None]
        return decoder_tail(self.graph, h).float()

    def count(self, nonzero: dict[str, torch.Tensor], batch: int, counters: Counters,
              events: dict[str, int], suffix: str = "") -> None:
        """Spikes, graded payloads (non-zero), synaptic operations (non-zero inputs x targets),
        neuron updates (IF and relay neurons every step), host MACs, events. ``nonzero``: each
        node's :func:`~.counting.nonzero_counts`."""
        g = self.graph
        steps = g.config.snn_steps
        for n in g.nodes():
            total = int(nonzero[n.name].sum())
            if g.is_relay(n.name):
                counters.payloads[n.name] += total
            else:
                counters.spikes[n.name] += total
            counters.neuron_updates += steps * batch * n.neurons
        for i, c in enumerate(g.connections):
            counters.synops[f"{c.src}->{c.dst}"] += int((nonzero[c.src] * self.fanout[i]).sum())
        for k, v in events.items():
            counters.events[k + suffix] += v
        counters.calls += 1
        counters.host_macs += graded_host_macs(g, batch)


class GradedSimulator(_Runner):
    """Ideal timing: every node sees its input in the same SNN step as in the PyTorch model;
    all T_snn steps of a node at once.

    ``keep_payloads``: return every relay's payloads; without it a relay's payloads are freed
    after their last reader (the output relay's are kept), which bounds the call's memory by the
    live activations, as in the float forward."""

    def __init__(self, graph: GradedGraph, device: str | torch.device | None = None, *,
                 keep_payloads: bool = True) -> None:
        super().__init__(graph, device)
        self.keep_payloads = keep_payloads
        # A 3x3 conv reading an UpSample's relay (the nearest x2 copy of one population's
        # spikes) runs as one transposed conv on the population's spikes
        # (see upsample_kernel): the same integer sums, 44% fewer multiply-adds, and without
        # keep_payloads the copy is never made. conv connection -> (population, kernel)
        self.upsampled: dict[int, tuple[str, torch.Tensor]] = {}
        for i, c in enumerate(graph.connections):
            feed = graph.inputs(c.src) if graph.is_relay(c.src) else []
            # (binary input: |sum| <= bound < 2**23, exact in float32 and never wrapped)
            if (i in self.convs and self.convs[i].bound < CONV_WRAP >> 1 and c.kernel == 3
                    and c.stride == 1 and c.padding == 1 and len(feed) == 1
                    and feed[0].kind == "upsample" and not graph.is_relay(feed[0].src)):
                self.upsampled[i] = (feed[0].src, upsample_kernel(self.convs[i].weight32))
        last: dict[str, str] = {}
        for node in graph.nodes():
            for c in graph.inputs(node.name):
                last[c.src] = node.name
        self.freed_after: dict[str, list[str]] = {}
        for src, reader in last.items():
            if graph.is_relay(src) and src != graph.output:
                self.freed_after.setdefault(reader, []).append(src)
        # UpSample copies that only upsampled convs read: not made without keep_payloads
        read_through = {graph.connections[i].src for i in self.upsampled}
        self.copies = set() if keep_payloads else {
            r for r in read_through
            if all(i in self.upsampled for i, c in enumerate(graph.connections) if c.src == r)}

    def _call(self, x: torch.Tensor, t: torch.Tensor, counters: Counters | None
              ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        g = self.graph
        steps, batch, dev = g.config.snn_steps, x.shape[0], self.device
        bias = self.biases(x, t, counters)
        events: dict[str, int] = {}
        out: dict[str, torch.Tensor] = {}
        counts: dict[str, torch.Tensor] = {}
        top: dict[str, float] = {}  # largest |output| of each node so far
        for node in g.nodes():
            ins = self.ins[node.name]
            # float32 accumulation when the inputs' bounds sum below 2**24 (every partial sum
            # an exact integer), which the payload sizes measured this call decide
            bound = sum(self.reach(i, top[c.src]) for i, c in ins)
            dtype = torch.float32 if bound < FLOAT32_EXACT else torch.float64
            if node.name in self.copies:  # each copy equals its population's neuron
                top[node.name] = 1.0
                if counters is not None:
                    (_, c), = ins
                    counts[node.name] = counts[c.src].repeat_interleave(2, -2) \
                        .repeat_interleave(2, -1)
                continue
            acc = None
            for i, c in ins:
                if i in self.upsampled:
                    pop, kernel = self.upsampled[i]
                    y = conv_upsampled(out[pop].flatten(0, 1).to(torch.float32), kernel)
                else:
                    z = out[c.src].flatten(0, 1)
                    if c.kind == "identity":
                        if acc is None:
                            acc = torch.zeros(steps * batch, *node.shape, dtype=dtype,
                                              device=dev)
                        self.deliver(i, z, acc)
                        continue
                    y = self.apply(i, z, events, top[c.src])
                if acc is None:  # the first conv's fresh output
                    acc = y.to(dtype)
                else:
                    acc += y
            if acc is None:
                acc = torch.zeros(steps * batch, *node.shape, dtype=dtype, device=dev)
            acc = acc.view(steps, batch, *node.shape)
            if g.is_relay(node.name):
                top[node.name] = self.overflow(acc, events)
                out[node.name] = acc
            else:
                top[node.name] = 1.0
                out[node.name] = self.fire(node.name, acc, bias[node.name], events)
            if counters is not None:
                counts[node.name] = nonzero_counts(out[node.name])
            if not self.keep_payloads:
                for src in self.freed_after.get(node.name, ()):
                    out.pop(src, None)  # (a copy never made is not there)
        self.note(events)
        if counters is not None:
            self.count(counts, batch, counters, events)
        return self.decode(out[g.output]), out


class GradedTimedSimulator(_Runner):
    """Hardware timing: global steps, one-step connections plus delays, LIFReset windows.
    Returns each node's window, which equals the ideal mode's outputs."""

    def __init__(self, graph: GradedGraph, device: str | torch.device | None = None) -> None:
        if not is_scheduled(graph):
            raise ConfigError("GradedTimedSimulator: the graph has no schedule (offsets, "
                              "delays); run sdm_neuro.compiler.schedule_graded on it first.")
        super().__init__(graph, device)
        self.length = call_length(graph)

    def _call(self, x: torch.Tensor, t: torch.Tensor, counters: Counters | None
              ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        g = self.graph
        steps, batch, length, dev = g.config.snn_steps, x.shape[0], self.length, self.device
        bias = self.biases(x, t, counters)
        events: dict[str, int] = {}
        state = {p.name: LifState.zeros((batch, *p.shape), device=dev) for p in g.populations}
        history = {n.name: torch.zeros(length, batch, *n.shape, device=dev,
                                       dtype=torch.float64 if g.is_relay(n.name) else torch.bool)
                   for n in g.nodes()}
        for tau in range(length):
            for node in g.nodes():
                acc = torch.zeros(batch, *node.shape, dtype=torch.float64, device=dev)
                for i, c in self.ins[node.name]:
                    when = tau - 1 - c.delay
                    if when >= 0:
                        src = history[c.src][when]
                        if c.kind == "identity":
                            self.deliver(i, src, acc)
                        else:
                            acc += self.apply(i, src, events)
                if g.is_relay(node.name):
                    history[node.name][tau] = acc
                    continue
                if tau == node.offset:  # LIFReset: time_step % length == offset + 1
                    lif_reset(state[node.name])
                k = min(max(tau - node.offset, 0), steps - 1)
                history[node.name][tau] = lif_step(state[node.name], acc.to(torch.int64),
                                                   bias[node.name][k],
                                                   self.params[node.name], counters=events,
                                                   check=False)
        out = {n.name: history[n.name][n.offset:n.offset + steps] for n in g.nodes()}
        if counters is not None:
            for r in g.relays:  # the ideal mode's overflow count, over the windows
                self.overflow(out[r.name], events)
            # Events of every global step, the steps outside the windows included (as
            # simulators/timed.py labels them).
            self.count({n: nonzero_counts(o) for n, o in out.items()}, batch, counters, events,
                       suffix=" (any step)")
        return self.decode(out[g.output]), out


def graded_host_macs(graph: GradedGraph, batch: int) -> int:
    """Dense multiply-accumulates of the host per call: the pixel conv and the decoder tail (the
    decoder reads the output relay's payloads, so no conv of spikes runs on the host)."""
    cfg = graph.config
    steps, res, c_img = cfg.snn_steps, cfg.img_size, cfg.img_ch
    macs = graph.populations[0].neurons * c_img * 9
    c_tail = graph.relay(graph.output).shape[0]
    macs += steps * res * res * (c_tail * c_img * 9 + c_img * c_img * 9)
    return macs * batch

