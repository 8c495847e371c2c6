"""Bit-exact integer simulation of a quantized feed-forward SNN (Lava's fixed-point LIF).

Ideal timing: every layer steps once per time step, in order, as the float reference does. On
Lava each connection adds one step of latency, so layer ``k`` (0-based) of a Lava run shows at
step ``t + k + 1`` what this shows at ``t``; ``sdm_neuro.export.netx.run_netx`` aligns them.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ..errors import UsageError
from ..ir.feedforward import QuantizedSNN, QuantLayer, check_input, is_spike_input
from ..ir.fixed_point import HOST_A_IN_MAX, NO_SYNAPTIC_MEMORY_DU
from ..ir.fixed_point import NETX_BIAS_EXP as BIAS_EXP
from .lif import LifParams, LifState, lif_step


def synaptic_input(ql: QuantLayer, s: torch.Tensor) -> torch.Tensor:
    """Lava's ``a_in`` from binary spikes ``s`` [N, *in]: the integer weighted sum (weight_exp
    is 0). Sums of 8-bit weights over a fan-in below 2**44 are exact in float64, which torch's
    conv runs fast."""
    syn = ql.layer.synapse
    w = ql.weight_int.double()
    z = s.double()
    if syn.kind == "affine":
        acc = z.reshape(z.shape[0], -1) @ w.T
    else:
        acc = F.conv2d(z, w, None, syn.stride, syn.padding)
    return acc.to(torch.int64)


def host_input(ql: QuantLayer, x: torch.Tensor) -> torch.Tensor:
    """The first layer's graded input from an analog ``x`` [N, *in]: the float synapse (bias
    excluded: it is the neurons' bias) in threshold units, rounded to ``a_in`` units (1/vth)."""
    syn = ql.layer.synapse
    if syn.kind == "affine":
        cur = x.double().reshape(x.shape[0], -1) @ syn.weight.T
    else:
        cur = F.conv2d(x.double(), syn.weight, None, syn.stride, syn.padding)
    a_in = cur * ql.drive_scale * ql.vth
    peak = float(a_in.abs().max()) if a_in.numel() else 0.0
    if peak >= HOST_A_IN_MAX:  # beyond it Lava's int32 u overflows (lif.py); int64 casts wrap
        raise UsageError(f"layer {ql.layer.name!r}: the input drives it with {peak:.3g} LSBs "
                         f"per step (vth {ql.vth}), beyond Lava's range of {HOST_A_IN_MAX:,}; "
                         f"scale the input down or quantize on it.")
    return torch.round(a_in).to(torch.int64)


@torch.no_grad()
def run_integer(qnet: QuantizedSNN, x: torch.Tensor, *, counters: dict | None = None
                ) -> list[torch.Tensor]:
    """``x`` [T, B, *input_shape] -> each layer's bool spikes [T, B, *shape]. A network
    quantized for 0/1 spikes (its first synapse on chip) refuses any other input."""
    check_input(qnet.net, x)
    if qnet.spike_input and not is_spike_input(x):
        raise UsageError(f"the input has values other than 0 and 1, but layer "
                         f"{qnet.layers[0].layer.name!r} was quantized for binary spikes (on "
                         f"chip); quantize on such an input to run its first synapse on the "
                         f"host.")
    steps, batch = x.shape[:2]
    s = x
    out = []
    for i, ql in enumerate(qnet.layers):
        flat = s.reshape(steps * batch, *s.shape[2:])
        a_in = synaptic_input(ql, flat) if (i > 0 or qnet.spike_input) else host_input(ql, flat)
        a_in = a_in.reshape(steps, batch, *ql.layer.shape)
        p = LifParams(du=NO_SYNAPTIC_MEMORY_DU, dv=ql.dv, vth=ql.vth, bias_exp=BIAS_EXP)
        state = LifState.zeros((batch, *ql.layer.shape))
        s = torch.stack([lif_step(state, a_in[t], ql.bias_mant, p, counters=counters,
                                  check=False) for t in range(steps)])
        out.append(s)
    return out

