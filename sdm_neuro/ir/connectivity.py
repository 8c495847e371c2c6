"""Connectivity counts of a deployment graph's projections (and of a feed-forward layer): the one
home of fan-in, fan-out and synapse counting. The design-rule checks, the energy report, the
integer simulator's synaptic-operation counters and the graph table all count here.

Two kinds of count, named by what they count:

* structural (:func:`fan_out`, :func:`synapses`): every kernel tap that lands inside the
  target map is a synapse, whatever its weight (the graph table's "synapses" column);
* stored (:func:`stored_fan_out`, :func:`stored_synapses`, :func:`fan_in`): only what a chip
  stores, i.e. target channels with a non-zero weight at some SNN step (a composed projection's
  skip padding is all zeros) and, for :func:`fan_in`, taps with a non-zero weight. Synaptic
  operations are spikes x :func:`stored_fan_out`; the core count stores
  :func:`stored_synapses`.

All are exact at the borders and, after a nearest upsample, count distinct (source, target)
pairs (two taps from the same upsampled block onto one target are one synapse on hardware).
TSM: a tap or channel counts if any SNN step's weight uses it; per-step copies of a relayed
projection's synapse matrix are the caller's to multiply (see
:mod:`sdm_neuro.hardware_profiles.constraints`).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch
from torch.nn import functional as F

if TYPE_CHECKING:
    from .graph import Projection


def used_taps(proj: Projection) -> torch.Tensor:
    """[C_dst, C_src, k, k] bool: the taps with a non-zero weight (the integer weights once
    quantized, else the float ones); TSM: a tap is used if any SNN step uses it."""
    w = proj.weight_int if proj.weight_int is not None else proj.weight
    w = w.abs().amax(0) if w.dim() == 5 else w.abs()
    return w != 0


def stored_channels(proj: Projection) -> torch.Tensor:
    """[C_dst] bool: the target channels with at least one used tap (an all-zero channel, e.g.
    the skip padding of a composed projection, stores no synapse)."""
    return used_taps(proj).flatten(1).any(1)


def fan_in(proj: Projection) -> int:
    """Largest number of distinct source neurons with a non-zero weight onto one target neuron
    (interior neuron). After a u x nearest upsample, the taps of one output phase that read the
    same source neuron fold into one synapse (for u = 2, k = 3: 2x2, see ``upsample_kernel``)."""
    w = used_taps(proj)
    u, k, pad = proj.upsample, proj.kernel, proj.padding
    if u == 1:
        return int(w.flatten(1).sum(1).max())
    best = 0
    for a in range(u):
        for b in range(u):  # output phase (a, b): tap ky reads source offset (a + ky - pad) // u
            rows = {}
            for ky in range(k):
                for kx in range(k):
                    key = ((a + ky - pad) // u, (b + kx - pad) // u)
                    rows[key] = rows.get(key, torch.zeros_like(w[:, :, 0, 0])) | w[:, :, ky, kx]
            best = max(best, int(sum(m.to(torch.int64) for m in rows.values()).sum(1).max()))
    return best


def axis_reach(n_in: int, n_out: int, k: int, stride: int = 1, padding: int = 0,
               dilation: int = 1) -> torch.Tensor:
    """[n_in] float64: along one axis of a conv, the (output, tap) pairs that read each input
    index, i.e. output ``o`` and tap ``j`` with ``o * stride - padding + j * dilation == i`` and
    ``0 <= o < n_out``. A conv's all-ones fan-out map is separable: input ``(c, y, x)`` reaches
    ``C_out * reach_y[y] * reach_x[x]`` synapses. Why not the transposed conv of all-ones maps:
    that is a whole layer's multiply-adds (float64) per count; this is O(k * n_in)."""
    i = torch.arange(n_in)
    total = torch.zeros(n_in, dtype=torch.float64)
    for j in range(k):
        num = i + padding - j * dilation
        hit = (num >= 0) & (num % stride == 0) & (torch.div(num, stride, rounding_mode="floor")
                                                  < n_out)
        total += hit.to(torch.float64)
    return total


def fan_out(proj: Projection, src_shape: tuple[int, int, int]) -> torch.Tensor:
    """[C_src, H, W] float64: structural synapses of each source neuron (targets one spike
    reaches, every target channel counted), exact at the borders (:func:`axis_reach`).

    After a nearest upsample one source neuron feeds a u x u block, and two taps that land on
    the same target from the same block are one synapse on hardware (their weights add: the
    folded taps of :func:`sdm_neuro.simulators.integer.upsample_kernel`), so the count is of
    distinct (source, target) pairs: per axis, the targets whose window meets the block."""
    c_out, c_in, k, _ = proj.weight.shape
    _, h, w = src_shape
    u, pad = proj.upsample, proj.padding
    if u > 1:
        if proj.stride != 1:
            raise ValueError("fan_out: an upsampling projection must have stride 1")

        def reach(n: int) -> torch.Tensor:  # targets per source index along one axis
            a = torch.arange(n)
            n_out = n * u + 2 * pad - k + 1
            lo = (u * a - (k - 1 - pad)).clamp(min=0)
            hi = (u * a + u - 1 + pad).clamp(max=n_out - 1)
            return (hi - lo + 1).clamp(min=0).to(torch.float64)

        return (c_out * reach(h)[:, None] * reach(w)[None, :]).expand(c_in, h, w).clone()
    ho, wo = (h + 2 * pad - k) // proj.stride + 1, (w + 2 * pad - k) // proj.stride + 1
    per_pixel = (axis_reach(h, ho, k, proj.stride, pad)[:, None]
                 * axis_reach(w, wo, k, proj.stride, pad)[None, :])
    return (c_out * per_pixel).expand(c_in, h, w).clone()


def synapses(proj: Projection, src_shape: tuple[int, int, int]) -> int:
    """Number of structural synapses: every kernel tap that lands inside the target."""
    return int(fan_out(proj, src_shape).sum())


def stored_fan_out(proj: Projection, src_shape: tuple[int, int, int]) -> torch.Tensor:
    """[C_src, H, W] float64: :func:`fan_out` over the :func:`stored_channels` only, the targets
    a spike really reaches (synaptic operations are spikes times this)."""
    rows = stored_channels(proj)
    return fan_out(dataclasses.replace(proj, weight=proj.weight[rows]), src_shape)


def stored_synapses(proj: Projection, src_shape: tuple[int, int, int]) -> int:
    """Stored synapses: (source, target) pairs over the :func:`stored_channels`, exact at the
    borders."""
    return int(stored_fan_out(proj, src_shape).sum())


def layer_connectivity(kind: str, weight_int: torch.Tensor, in_shape: tuple[int, ...],
                       stride: tuple[int, int] = (1, 1), padding: tuple[int, int] = (0, 0)
                       ) -> tuple[int, int, int]:
    """(fan-in, fan-out, synapses) of one feed-forward layer's synapses (``kind`` "affine" or
    "conv"), exact: the non-zero weight pattern applied to an all-ones input counts each
    target's synapses (the largest is the fan-in, the sum the synapses), and its gradient each
    source's (the largest is the fan-out)."""
    src = torch.ones(1, *in_shape, dtype=torch.float64, requires_grad=True)
    mask = (weight_int != 0).double()
    per_target = (src.flatten(1) @ mask.T if kind == "affine" else
                  F.conv2d(src, mask, None, stride, padding))
    (per_source,) = torch.autograd.grad(per_target.sum(), src)
    return int(per_target.max()), int(per_source.max()), int(per_target.sum())
