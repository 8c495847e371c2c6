"""Float reference execution of a (lowered, unquantized) graded graph: the check that the graded
lowering preserved the model, and the calibration run of its quantizer. IF semantics as the
PyTorch model (``v >= threshold``, hard reset); arithmetic in float64.

A relay's value is its payload part (the sum of its inputs) plus its carried constant ``bias``;
connections read the payload part only, because every reader already holds the constant.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ..ir.graded import Connection, GradedGraph
from ..ir.host import decoder_tail, per_call_bias, pixel_current
from .float_graph import fire_float


def apply_float(conn: Connection, z: torch.Tensor, dst_shape: tuple[int, int, int]
                ) -> torch.Tensor:
    """``[T, B, C_src, H, W]`` -> the connection's float contribution ``[T, B, C_dst, H', W']``
    (an identity fills its channel range, zeros elsewhere)."""
    steps, batch = z.shape[:2]
    flat = z.flatten(0, 1)
    if conn.kind == "upsample":
        y = F.interpolate(flat, scale_factor=2, mode="nearest")
    elif conn.kind == "identity":
        y = flat.new_zeros(flat.shape[0], *dst_shape)
        y[:, conn.dst_channel:conn.dst_channel + flat.shape[1]] = flat
    else:
        y = F.conv2d(flat, conn.weight.to(flat.dtype), stride=conn.stride, padding=conn.padding)
    return y.reshape(steps, batch, *y.shape[1:])


@torch.no_grad()
def run_float_graded(graph: GradedGraph, x: torch.Tensor, t: torch.Tensor, *,
                     observe: dict[str, list[float]] | None = None
                     ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(eps [B, C, H, W] float32, every node's output [T, B, C, H, W] float64: spikes of a
    population, the payload part of a relay).

    ``observe``: per population ``[max v, min v, max |current|, max |bias current|]`` (v before
    the threshold test), per relay ``[max |payload part|]``, for calibration."""
    steps, batch = graph.config.snn_steps, x.shape[0]
    pixels = pixel_current(graph, x)
    out: dict[str, torch.Tensor] = {}
    for node in graph.nodes():
        c, h, w = node.shape
        total = torch.zeros(steps, batch, c, h, w, dtype=torch.float64)
        for conn in graph.inputs(node.name):
            total = total + apply_float(conn, out[conn.src], node.shape)
        if graph.is_relay(node.name):
            out[node.name] = total
            if observe is not None:
                observe[node.name] = [float(total.abs().max())]
            continue
        bias = per_call_bias(graph, node, t, pixels)
        drive = (total + bias).expand(steps, batch, c, h, w)
        out[node.name] = fire_float(node.name, drive, bias, node.threshold, observe)
    final = out[graph.output] + graph.relay(graph.output).bias[:, None, :, None, None]
    return decoder_tail(graph, final), out
