"""A feed-forward spiking network as snnTorch and Norse exchange it through NIR: a chain of
(Conv2d | Affine) -> (IF | LIF) layers, and its float reference in discrete time.

Discrete semantics (one step of every layer per time step, layers in order within a step, as
snnTorch, Norse and this project's float reference all run them):

    I[t] = W s_prev[t] + b
    v[t] = a * v[t-1] + c * I[t] + l      spike where v[t] > threshold, then v[t] = 0

with ``a`` the per-step retention, ``c`` the input gain and ``l`` the leak drive. From a NIR
``LIF`` (tau dv/dt = (v_leak - v) + r I) by forward Euler with step dt: ``a = 1 - dt/tau``,
``c = r dt/tau``, ``l = v_leak dt/tau`` (snnTorch's Leaky: ``beta = a``, its exporter writes
``r = tau/dt`` so ``c = 1``; Norse's LIFBoxCell is the same Euler step but ignores ``r``). From a
NIR ``IF`` (dv/dt = r I): ``a = 1, c = r, l = 0``, i.e. ``r I`` is the charge of one step, which
is Norse's IAFCell (it ignores dt). Reset is to zero, the only reset Loihi's LIF has.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.nn import functional as F

from .fixed_point import VTH_SHIFT


@dataclass(frozen=True, eq=False)
class Synapse:
    kind: str                          # "conv" or "affine"
    weight: torch.Tensor               # conv [Cout, Cin, kH, kW]; affine [out, in]; float64
    bias: torch.Tensor                 # [Cout] or [out]; zeros where the source had none
    in_shape: tuple[int, ...]          # (C, H, W) for conv; anything whose product is `in`
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)

    @property
    def out_shape(self) -> tuple[int, ...]:
        if self.kind == "affine":
            return (self.weight.shape[0],)
        _, h, w = self.in_shape
        kh, kw = self.weight.shape[-2:]
        return (self.weight.shape[0],
                (h + 2 * self.padding[0] - kh) // self.stride[0] + 1,
                (w + 2 * self.padding[1] - kw) // self.stride[1] + 1)

    def __call__(self, s: torch.Tensor) -> torch.Tensor:
        """``s`` [N, *in_shape] -> currents [N, *out_shape] (float64 or integer-valued float)."""
        if self.kind == "affine":
            return s.reshape(s.shape[0], -1) @ self.weight.T.to(s.dtype) + self.bias.to(s.dtype)
        return F.conv2d(s, self.weight.to(s.dtype), self.bias.to(s.dtype), self.stride,
                        self.padding)


@dataclass(frozen=True, eq=False)
class Neurons:
    kind: str                          # "IF" or "LIF" (as read from / written to NIR)
    threshold: torch.Tensor            # all float64, broadcastable to the layer's shape
    retention: torch.Tensor            # a
    gain: torch.Tensor                 # c
    leak: torch.Tensor                 # l
    tau: torch.Tensor | None = None    # LIF only: NIR tau and r, kept to write the file back
    r: torch.Tensor | None = None


@dataclass(frozen=True, eq=False)
class Layer:
    name: str                          # the NIR node names, "synapse>neurons"
    synapse: Synapse
    neurons: Neurons

    @property
    def shape(self) -> tuple[int, ...]:
        return self.synapse.out_shape


@dataclass(frozen=True, eq=False)
class FeedForwardSNN:
    input_shape: tuple[int, ...]
    layers: tuple[Layer, ...]
    dt: float                          # the Euler step the LIF constants were discretised with
    source: str = ""                   # where it came from (file, tool), for reports


def check_input(net: FeedForwardSNN, x: torch.Tensor, what: str = "input") -> None:
    """``x`` must be a real [T, B, *input_shape] tensor, T, B >= 1, finite: a
    :class:`~sdm_neuro.errors.UsageError` naming ``what`` otherwise (a NaN would run silently
    and come out as missing spikes)."""
    from ..errors import UsageError

    want = f"[T, B, {', '.join(map(str, net.input_shape))}] with T, B >= 1"
    if not isinstance(x, torch.Tensor) or x.dtype.is_complex:
        raise UsageError(f"{what}: a {type(x).__name__} {getattr(x, 'dtype', '')}; expected a "
                         f"real tensor {want}.")
    if x.dim() != len(net.input_shape) + 2 or tuple(x.shape[2:]) != tuple(net.input_shape) \
            or x.numel() == 0:
        raise UsageError(f"{what}: shape {tuple(x.shape)}; the network runs {want}.")
    if x.dtype.is_floating_point and not bool(torch.isfinite(x).all()):
        raise UsageError(f"{what}: contains NaN or inf.")


def run_float(net: FeedForwardSNN, x: torch.Tensor, *, observe: dict | None = None
              ) -> list[torch.Tensor]:
    """Float64 reference: ``x`` [T, B, *input_shape] -> each layer's spikes [T, B, *shape].

    ``observe`` (optional) receives per layer ``(v_max, v_min, drive_max, margin)`` in threshold
    units over every step: the ranges calibrate quantization; ``margin`` (the least ``|v -
    threshold|``) bounds how close a spike decision came to flipping under rounding."""
    check_input(net, x)
    steps, batch = x.shape[:2]
    s = x.double()
    out = []
    for layer in net.layers:
        n = layer.neurons
        cur = layer.synapse(s.reshape(steps * batch, *s.shape[2:])).reshape(steps, batch,
                                                                            *layer.shape)
        drive = n.gain * cur + n.leak
        v = torch.zeros(batch, *layer.shape, dtype=torch.float64)
        spikes = torch.empty(steps, batch, *layer.shape, dtype=torch.float64)
        v_max = v_min = 0.0
        margin = float("inf")
        for t in range(steps):
            v = n.retention * v + drive[t]
            z = v > n.threshold
            if observe is not None:
                rel = v / n.threshold
                v_max, v_min = max(v_max, float(rel.max())), min(v_min, float(rel.min()))
                margin = min(margin, float((rel - 1).abs().min()))
            spikes[t] = z
            v = torch.where(z, 0.0, v)
        if observe is not None:
            observe[layer.name] = (v_max, v_min, float((drive / n.threshold).abs().max()),
                                   margin)
        out.append(spikes)
        s = spikes
    return out


# --- the quantized form (filled by sdm_neuro.compiler.quantize_feedforward) -------------------

@dataclass(frozen=True, eq=False)
class QuantLayer:
    layer: Layer
    weight: torch.Tensor               # folded float weights, threshold units (conv: [Co,Ci,k,k])
    weight_int: torch.Tensor           # int16, even, in the weight mantissa range; weight_exp 0
    bias_mant: torch.Tensor            # int64 per neuron, 13-bit signed, at NETX_BIAS_EXP
    vth: int
    dv: int
    drive_scale: torch.Tensor          # c / threshold per neuron (float current -> thresholds)

    @property
    def q(self) -> float:
        """Threshold units of one membrane LSB."""
        return 1.0 / ((1 << VTH_SHIFT) * self.vth)


@dataclass(frozen=True, eq=False)
class QuantizedSNN:
    net: FeedForwardSNN
    layers: tuple[QuantLayer, ...]
    spike_input: bool                  # False: the first synapse runs on the host (current)
    report: dict = field(default_factory=dict)


def is_spike_input(x: torch.Tensor) -> bool:
    return bool(((x == 0) | (x == 1)).all())
