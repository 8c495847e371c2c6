"""Loihi 2 through Lava, graded mapping: a quantized, scheduled
:class:`~sdm_neuro.ir.graded.GradedGraph` as Lava processes with shared conv kernels and graded spikes, run in Lava's bit-accurate CPU
simulation (``Loihi2SimCfg(select_tag='fixed_pt')``). The facts relied on below are verified in
``../shared/reference/lava-graded-and-conv.md`` (cited as "reference").

Process map (one Lava network per call and sample):

* population -> ``LIFReset``, built as :mod:`.lava_runtime` builds it (du, dv, vth, bias_exp per
  process, the per-call bias as per-neuron ``bias_mant``, reset at the start of its window:
  ``reset_interval`` = call length, ``reset_offset`` = offset + 1, Lava counting steps from 1;
  one ``bias_mant`` per call, so a bias that changes across SNN steps, i.e. TSM, is refused);
* relay -> ``GradedVec`` with ``vth = 0``: it sends the sum of its inputs in the same step and
  keeps no state. The default ``vth = 1`` silently drops payloads of +-1;
* ``conv`` -> ``Conv`` holding ``weight_int << weight_exp`` (Lava's Conv ignores ``weight_exp``),
  flipped and permuted to Lava's (C_out, kW, kH, C_in) true-convolution layout, its input and
  output reached through transposed ports (nodes are (C, H, W), Conv wants (W, H, C));
  ``num_message_bits`` 0 from a population (binary spikes), 24 from a relay. Lava multiplies the
  payload by the weight for any value > 0 (no masking), and wraps the sum at 24 bits;
* ``identity`` (relay -> relay or population) -> ``Sparse`` / ``DelaySparse`` (int64 delays),
  one synapse of weight 1 per source neuron into channel ``dst_channel + c``, ``weight_exp`` k
  (Lava's arithmetic shift gives floor(payload * 2**k)), ``num_message_bits`` 24. Sign mode
  EXCITATORY, stated: MIXED mode drops the weight's LSB and would turn weight 1 into 0;
* ``upsample`` (population -> upsample relay) -> ``Sparse`` / ``DelaySparse`` fan-out, one
  synapse of weight 1 per upsampled neuron (nearest x2), EXCITATORY, binary spikes;
* every node's output is read by a sink ``RingBuffer`` (fixed-point model: int32 ports and
  buffer, so graded payloads come back exactly).

Every connection process adds one step (DelaySparse 1 + d), neurons and relays none: the source's
output of global step tau arrives at tau + 1 + delay, the timing the graded schedule assumes
(``sdm_neuro.compiler.schedule_graded``). Lava's Conv model overflows under numpy 2 for 128 or
more channels (int8 geometry); :func:`~.lava_compat.import_lava` re-types it (measure 3 there).

Lava runs in a child process with a hard timeout (:func:`~.lava_process.run_child`): an error
inside a Lava process can deadlock the run instead of raising.
"""

from __future__ import annotations


import numpy as np
import torch

from ..errors import ExportError
from ..ir.fixed_point import MAX_DELAY
from ..ir.graded import GradedGraph
from ..ir.graph import call_length, is_scheduled
from ..ir.host import decoder_tail
from .lava_process import run_windows
from .lava_runtime import bias_mantissas

GRADED_MESSAGE_BITS = 24  # any value > 0 makes Lava multiply payloads; 24 is the chip's width


def check_graded_deployable(graph: GradedGraph) -> None:
    """Quantized, scheduled (every connection lines its source's window up with its
    destination's: dst.offset = src.offset + 1 + delay), delays within the project's range."""
    if not graph.quantized or any(p.scale is None for p in graph.populations):
        raise ExportError("the graded graph is not quantized; quantize it "
                          "(sdm_neuro.compiler.quantize_graded) before building Lava processes.")
    if graph.relay(graph.output).scale is None:
        raise ExportError(f"the output relay {graph.output} has no scale: the graph is not "
                          "quantized.")
    if graph.connections and not is_scheduled(graph):
        raise ExportError("the graded graph is not scheduled (every offset is 0); schedule it "
                          "(sdm_neuro.compiler.schedule_graded) before building Lava processes.")
    for c in graph.connections:
        src, dst = graph.node(c.src), graph.node(c.dst)
        if dst.offset != src.offset + 1 + c.delay:
            raise ExportError(f"connection {c.src} -> {c.dst}: the graph is not scheduled "
                              f"(offsets {src.offset} -> {dst.offset} with delay {c.delay}; "
                              "a scheduled graph has dst = src + 1 + delay).")
        if c.kind == "conv" and c.delay:
            raise ExportError(f"connection {c.src} -> {c.dst}: a Conv has no synaptic delay.")
        if not 0 <= c.delay <= MAX_DELAY:
            raise ExportError(f"connection {c.src} -> {c.dst}: delay {c.delay} outside "
                              f"0..{MAX_DELAY} (the project's synaptic delay range).")


def lava_conv_weight(conv) -> np.ndarray:
    """PyTorch cross-correlation [C_out, C_in, kH, kW] -> Lava's true convolution
    (C_out, kW, kH, C_in): flip both kernel axes, then permute."""
    w = conv.effective_weight().numpy()
    return np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(0, 3, 2, 1)).astype(np.int32)


def fan_matrix(conn, src_shape, dst_shape):
    """The 0/1 synapse matrix [N_dst, N_src] (C-order flattened (C, H, W)) of an identity
    (source channel c -> destination channel dst_channel + c) or a nearest x2 upsample."""
    from scipy.sparse import csr_matrix

    if conn.kind == "identity":
        c, h, w = np.indices(src_shape).reshape(3, -1)
        rows = np.ravel_multi_index((c + conn.dst_channel, h, w), dst_shape)
        cols = np.arange(c.size)
    else:  # upsample: every target neuron reads its nearest source neuron
        c, h, w = np.indices(dst_shape).reshape(3, -1)
        rows = np.arange(c.size)
        cols = np.ravel_multi_index((c, h // 2, w // 2), src_shape)
    n_dst, n_src = int(np.prod(dst_shape)), int(np.prod(src_shape))
    return csr_matrix((np.ones(rows.size, np.int32), (rows, cols)), shape=(n_dst, n_src))


def check_constant_bias(bias: dict[str, np.ndarray]) -> None:
    """The bias mantissas (``[T_snn, ...]`` per population) must not change across SNN steps:
    only TSM makes them, and the graded mapping refuses TSM, so one ``bias_mant`` per call."""
    for name, b in bias.items():
        if not (np.asarray(b) == np.asarray(b)[:1]).all():
            raise ExportError(f"population {name}: its bias changes across SNN steps (TSM), "
                              "which the graded mapping does not run.")


def build_graded_network(graph: GradedGraph, bias: dict[str, np.ndarray]):
    """Lava processes for one call of one sample (``bias``: ``[T_snn, N]`` per population, as the
    worker receives it); returns (a process to run, sinks per node)."""
    check_constant_bias(bias)
    from lava.proc.conv.process import Conv
    from lava.proc.graded.process import GradedVec
    from lava.proc.io.sink import RingBuffer
    from lava.proc.lif.process import LIFReset
    from lava.proc.sparse.process import DelaySparse, Sparse
    from lava.utils.weightutils import SignMode

    length = call_length(graph)
    procs, sinks = {}, {}
    for node in graph.nodes():
        if graph.is_relay(node.name):
            procs[node.name] = GradedVec(shape=node.shape, vth=0)  # takes no name
        else:
            p = node.lif
            procs[node.name] = LIFReset(
                shape=node.shape, du=p.du, dv=p.dv, vth=p.vth, bias_exp=p.bias_exp,
                bias_mant=np.asarray(bias[node.name][0]).reshape(node.shape).astype(np.int32),
                reset_interval=length, reset_offset=(node.offset + 1) % length, name=node.name)
        sinks[node.name] = RingBuffer(shape=node.shape, buffer=length)
        procs[node.name].s_out.connect(sinks[node.name].a_in)

    for conn in graph.connections:
        src, dst = graph.node(conn.src), graph.node(conn.dst)
        bits = GRADED_MESSAGE_BITS if graph.is_relay(conn.src) else 0
        where = f"connection {conn.src} -> {conn.dst}"
        if conn.kind == "conv":
            c, h, w = src.shape
            proc = Conv(weight=lava_conv_weight(conn), input_shape=(w, h, c),
                        padding=conn.padding, stride=conn.stride, num_message_bits=bits,
                        name=where)
            if tuple(reversed(proc.output_shape)) != tuple(dst.shape):
                raise ExportError(f"{where}: the conv gives {tuple(reversed(proc.output_shape))}"
                                  f", the destination is {tuple(dst.shape)}.")
            procs[conn.src].s_out.transpose([2, 1, 0]).connect(proc.s_in)
            proc.a_out.transpose([2, 1, 0]).connect(procs[conn.dst].a_in)
            continue
        weights = fan_matrix(conn, src.shape, dst.shape)
        common = {"weights": weights, "weight_exp": conn.weight_exp or 0, "num_weight_bits": 8,
                  "sign_mode": SignMode.EXCITATORY, "num_message_bits": bits, "name": where}
        if conn.delay:
            delays = weights.astype(np.int64)  # Lava rejects int32 delays
            delays.data[:] = conn.delay
            proc = DelaySparse(delays=delays, **common)
        else:
            proc = Sparse(**common)
        procs[conn.src].s_out.flatten().connect(proc.s_in)
        proc.a_out.reshape(dst.shape).connect(procs[conn.dst].a_in)
    return next(iter(procs.values())), sinks


def run_graded_network(graph: GradedGraph, bias: dict[str, np.ndarray],
                       timings: dict[str, float] | None = None) -> dict[str, np.ndarray]:
    """Run one call in Lava (in this process); every node's output ``[length, N]`` over the whole
    call (bool spikes of a population, int64 payloads of a relay). ``timings`` receives the
    seconds spent building the processes and running them."""
    import time

    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg

    from .lava_compat import import_lava

    import_lava()  # also the Conv int32 patch
    check_graded_deployable(graph)
    length = call_length(graph)
    t0 = time.perf_counter()
    proc, sinks = build_graded_network(graph, bias)
    t1 = time.perf_counter()
    try:
        proc.run(condition=RunSteps(num_steps=length), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        out = {}
        for name, sink in sinks.items():
            data = np.moveaxis(np.asarray(sink.data.get()), -1, 0).reshape(length, -1)
            out[name] = data.astype(np.int64 if graph.is_relay(name) else bool)
    finally:
        proc.stop()
    if timings is not None:
        timings.update(build_s=t1 - t0, run_s=time.perf_counter() - t1)
    return out


def lava_graded_outputs(graph: GradedGraph, bias: dict[str, np.ndarray], *,
                        timeout_s: float = 600) -> dict[str, torch.Tensor]:
    """Every node's output in its window ``[T, B, C, H, W]`` (bool spikes, int64 payloads), for
    a scheduled graph and the bias mantissas of a batch (``[T_snn, B, C, H, W]`` per population,
    as :func:`~.lava_runtime.bias_mantissas` gives them). Each sample is one Lava run in a child
    process killed after ``timeout_s``."""
    check_graded_deployable(graph)
    check_constant_bias(bias)
    return run_windows(graph, bias, timeout_s, "sdm-neuro-lava-graded-")


def lava_graded_call(graph: GradedGraph, x: torch.Tensor, t: torch.Tensor, *,
                     timeout_s: float = 600) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One denoising call in Lava: eps (the host decoder on the output relay's payloads, its
    carried constant added back) and every node's output in its window ``[T, B, C, H, W]``, as
    :class:`~sdm_neuro.simulators.graded.GradedTimedSimulator` returns them."""
    check_graded_deployable(graph)
    outputs = lava_graded_outputs(graph, bias_mantissas(graph, x, t), timeout_s=timeout_s)
    relay = graph.relay(graph.output)
    h = outputs[graph.output].double() * relay.scale + relay.bias[:, None, :, None, None]
    return decoder_tail(graph, h), outputs
