"""Float reference execution of a (lowered, unquantized) deployment graph: the check that
lowering preserved the model. IF semantics as the PyTorch model (``v >= threshold``, hard
reset); arithmetic in float64."""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from ..ir.graph import HOST, DeployGraph, Projection
from ..ir.host import decoder_tail, per_call_bias, pixel_current


def project(proj: Projection, spikes: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``[T, B, C_src, H, W]`` spikes -> ``[T, B, C_dst, H', W']`` synaptic input (no gain)."""
    steps, batch = spikes.shape[:2]
    z = spikes.flatten(0, 1)
    if proj.upsample > 1:
        z = F.interpolate(z, scale_factor=proj.upsample, mode="nearest")
    y = F.conv2d(z, weight, stride=proj.stride, padding=proj.padding)
    return y.reshape(steps, batch, *y.shape[1:])


def _gain(proj: Projection, steps: int, dtype: torch.dtype) -> torch.Tensor:
    g = torch.tensor(proj.gain or (1.0,) * steps, dtype=dtype)
    return g.view(-1, 1, 1, 1, 1)


@torch.no_grad()
def run_float_graph(graph: DeployGraph, x: torch.Tensor, t: torch.Tensor, *,
                    observe: dict[str, list[float]] | None = None,
                    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(eps [B, C, H, W] float32, spikes per population [T, B, C, H, W] float64).

    ``observe``: filled with ``[max v, min v, max |current|, max |bias current|]`` per
    population (v before the threshold test), for calibration."""
    steps = graph.config.snn_steps
    pixels = pixel_current(graph, x)
    spikes: dict[str, torch.Tensor] = {}

    def current(dst: str) -> torch.Tensor:
        total = 0
        for p in graph.inputs(dst):
            total = total + _gain(p, steps, torch.float64) * project(p, spikes[p.src], p.weight)
        return total

    for pop in graph.populations:
        c, h, w = pop.shape
        bias = per_call_bias(graph, pop, t, pixels)
        drive = (current(pop.name) + bias).expand(steps, x.shape[0], c, h, w)
        spikes[pop.name] = fire_float(pop.name, drive, bias, pop.threshold, observe)
    h = current(HOST) + graph.host.tail_bias[:, None, :, None, None]
    return decoder_tail(graph, h), spikes


def fire_float(name: str, drive: torch.Tensor, bias: torch.Tensor, threshold: float,
               observe: dict[str, list[float]] | None) -> torch.Tensor:
    """Float IF layer over ``drive`` ``[T, ...]``: v += drive, spike at ``v >= threshold``, hard
    reset; spikes in ``drive``'s dtype. ``observe[name]``: [max v, min v, max |drive|,
    max |bias|]."""
    v = torch.zeros_like(drive[0])
    out = torch.empty_like(drive)
    fired = torch.empty(v.shape, dtype=torch.bool, device=v.device)
    lo, hi = math.inf, -math.inf
    for s in range(drive.shape[0]):
        v += drive[s]
        if observe is not None:
            a, b = torch.aminmax(v)
            lo, hi = min(lo, float(a)), max(hi, float(b))
        torch.ge(v, threshold, out=fired)
        v.masked_fill_(fired, 0.0)
        out[s].copy_(fired)
    if observe is not None:
        observe[name] = [hi, lo, abs_max(drive), abs_max(bias)]
    return out


def abs_max(x: torch.Tensor) -> float:
    """``max |x|`` in one pass."""
    lo, hi = torch.aminmax(x)
    return max(-float(lo), float(hi))
