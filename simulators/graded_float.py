"""Float reference execution of a (lowered, unquantized) graded graph: the check that the graded
lowering preserved the model, and the calibration run of its quantizer. IF semantics as the
PyTorch model (``v >= threshold``, hard reset); arithmetic in float64, or float32 for
calibration (``dtype``).

A relay's value is its payload part (the sum of its inputs) plus its carried constant ``bias``;
connections read the payload part only, because every reader already holds the constant.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ..ir.graded import Connection, GradedGraph
from ..ir.host import decoder_tail, per_call_bias, pixel_current
from .float_graph import abs_max, fire_float


def add_float(conn: Connection, z: torch.Tensor, total: torch.Tensor) -> None:
    """Add the connection's float contribution of ``z`` [T, B, C_src, H, W] into ``total``
    [T, B, C_dst, H', W'] (an identity into its channel range), in place."""
    steps, batch = z.shape[:2]
    if conn.kind == "identity":
        total[:, :, conn.dst_channel:conn.dst_channel + z.shape[2]] += z
        return
    flat = z.flatten(0, 1)
    if conn.kind == "upsample":
        y = F.interpolate(flat, scale_factor=2, mode="nearest")
    else:
        y = F.conv2d(flat, conn.weight.to(flat.dtype), stride=conn.stride, padding=conn.padding)
    y = y.reshape(steps, batch, *y.shape[1:])
    if conn.gain:  # TSM (float graphs only)
        y = y * torch.tensor(conn.gain, dtype=y.dtype).view(-1, 1, 1, 1, 1)
    total += y


@torch.no_grad()
def run_float_graded(graph: GradedGraph, x: torch.Tensor, t: torch.Tensor, *,
                     observe: dict[str, list[float]] | None = None, keep: bool = True,
                     dtype: torch.dtype = torch.float64,
                     ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(eps [B, C, H, W] float32, every node's output [T, B, C, H, W] in ``dtype``: spikes of
    a population, the payload part of a relay).

    ``observe``: per population ``[max v, min v, max |current|, max |bias current|]`` (v before
    the threshold test), per relay ``[max |payload part|]``, for calibration. ``keep=False``
    drops each output after its last reader (the dict returned then holds the output node
    only): calibration's memory is then a few layers', not the whole network's."""
    steps, batch = graph.config.snn_steps, x.shape[0]
    pixels = pixel_current(graph, x)
    order = {n.name: i for i, n in enumerate(graph.nodes())}
    last: dict[str, int] = {}  # node -> position of its last reader
    for c in graph.connections:
        last[c.src] = max(last.get(c.src, -1), order[c.dst])
    out: dict[str, torch.Tensor] = {}
    for i, node in enumerate(graph.nodes()):
        c, h, w = node.shape
        total = torch.zeros(steps, batch, c, h, w, dtype=dtype)
        for conn in graph.inputs(node.name):
            add_float(conn, out[conn.src], total)
        if not keep:  # outputs whose last reader this was
            for src in {conn.src for conn in graph.inputs(node.name)}:
                if last[src] == i and src != graph.output:
                    del out[src]
        if graph.is_relay(node.name):
            out[node.name] = total
            if observe is not None:
                observe[node.name] = [abs_max(total)]
            continue
        bias = per_call_bias(graph, node, t, pixels).to(dtype)
        out[node.name] = fire_float(node.name, total.add_(bias), bias, node.threshold, observe)
    final = out[graph.output] + graph.relay(graph.output).bias[:, None, :, None, None].to(dtype)
    return decoder_tail(graph, final), out
