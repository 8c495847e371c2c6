"""Multi-step integrate-and-fire neuron with the reference (spikingjelly ``IFNode``) semantics.

Per SNN step s: ``v = v + x[s]``; spike where ``v >= threshold`` (a spike fires exactly at
threshold); hard reset ``v = 0`` where it spiked. No leak; v starts at 0. The spike function's
gradient is the ATan surrogate with alpha = 2 (spikingjelly ``surrogate.ATan``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

ATAN_ALPHA = 2.0


class _AtanSpike(torch.autograd.Function):
    """Heaviside forward (x >= 0 -> 1), ATan surrogate backward:
    d/dx = alpha / 2 / (1 + (pi/2 * alpha * x)^2)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad_out * (ATAN_ALPHA / 2) / (1 + (math.pi / 2 * ATAN_ALPHA * x) ** 2)


def atan_spike(x: torch.Tensor) -> torch.Tensor:
    """Spike function on ``v - threshold``."""
    return _AtanSpike.apply(x)


class IFNeuron(nn.Module):
    """Multi-step IF neuron on ``[T_snn, B, ...]`` input.

    The membrane potential persists across calls (as in the reference) until :meth:`reset`;
    :class:`~sdm_neuro.models.unet.SpikingUNet` resets every neuron after each call unless asked
    to keep state. It holds no state_dict entries, so checkpoints keep the reference key layout.
    ``last_spikes`` keeps the most recent output when ``record`` is set (for tests and statistics).
    """

    def __init__(self, threshold: float = 1.0) -> None:
        super().__init__()
        self.threshold = float(threshold)
        self.v: torch.Tensor | None = None
        self.record = False
        self.last_spikes: torch.Tensor | None = None

    def reset(self) -> None:
        self.v = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = self.v if self.v is not None else torch.zeros_like(x[0])
        out = []
        for s in range(x.shape[0]):
            v = v + x[s]
            spike = atan_spike(v - self.threshold)
            v = v * (1.0 - spike)  # hard reset to 0, differentiable as in spikingjelly
            out.append(spike)
        self.v = v
        spikes = torch.stack(out)
        if self.record:
            self.last_spikes = spikes.detach()
        return spikes

    def extra_repr(self) -> str:
        return f"threshold={self.threshold}"
