"""Lowering to the graded mapping: SpikingUNet -> GradedGraph, every layer kept.

Each conv of the model stays one connection with its own kernel (BatchNorm folded in, float64).
Which analog tensors become relays: exactly the residual stream after each block (the stem's
``conv_identity`` output and every down / middle / up block output). Why these and no others:

* every IF layer reads either one conv of spikes (a ResBlock's ``neuron2``: conv1 plus the time
  embedding, no relay needed) or the residual stream (``neuron1``, the resample neurons);
* the residual stream is a sum of a conv of spikes and a linear map (identity or 1x1) of the
  previous stream, so one relay per block turns the composed mapping's ever-growing sums of
  paths into one graded identity or 1x1 conv per block; fewer relays would re-compose paths,
  more (a relay per conv output) would only add neurons and a step;
* the decoder's skips are block outputs, so they are these relays read again (a skip
  concatenation is two identities into channel ranges and the 1x1 shortcut split by input
  channel: Lava cannot concatenate ports).

A 1x1 shortcut writes into a relay of its own (``{block}.shortcut``; after a skip
concatenation, one conv per input, both into it) that reaches the block output through an
identity. Why: the 1x1 multiplies a payload that already carries the stream's resolution by an
8-bit weight, so its sum needs a right shift (a negative exponent) to return to the stream's
units, and a Lava Conv has no exponent while an identity (Sparse) has one (recipe R2 of the
reference); the identity also carries the two steps of delay that line the shortcut up with the
block's two spiking layers. One relay per block, not one per input: the skip's conv then reads
the same delayed copy of the skip that the block's ``neuron1`` reads (the schedule shares
copies), where a relay per input would need a second chain of copies for a long skip.

An UpSample's nearest x2 copy of its spikes is a relay too (a Sparse fan-out, then the shared
kernel), and the host decoder reads the last relay's payload. BatchNorm shifts and conv biases
cannot ride on a relay (GradedVec adds no constant); each relay carries its constant as ``bias``
and every reader folds it in: an IF layer into its bias current, a relay through an identity or
1x1 into its own carried constant, the host into the decoder input.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import ConfigError
from ..ir.graded import Connection, GradedGraph, Relay
from ..ir.graph import Population
from ..models.layers import DownSample, ResBlock
from ..models.unet import SpikingUNet
from .lower import conv_parts, fold_conv_bn, host_stages, walk_unet

_F64 = torch.float64


@dataclass
class _Builder:
    model: SpikingUNet
    populations: list[Population] = field(default_factory=list)
    relays: list[Relay] = field(default_factory=list)
    connections: list[Connection] = field(default_factory=list)
    order: list[str] = field(default_factory=list)

    @property
    def steps(self) -> int:
        return self.model.config.snn_steps

    def relay(self, name: str, shape: tuple[int, int, int], bias: torch.Tensor,
              kind: str = "sum") -> Relay:
        r = Relay(name, shape, bias, kind)
        self.relays.append(r)
        self.order.append(name)
        return r

    def fire(self, name: str, inputs: list[Relay], threshold: float, res: int) -> str:
        """An IF layer reading relays through identities (channel ranges in input order)."""
        bias = torch.cat([r.bias for r in inputs], dim=1)
        self.populations.append(Population(name=name, shape=(bias.shape[1], res, res),
                                           threshold=threshold, bias=bias))
        self.order.append(name)
        lo = 0
        for r in inputs:
            self.connections.append(Connection(r.name, name, "identity", dst_channel=lo))
            lo += r.shape[0]
        return name

    def conv(self, src: str, dst: str, weight: torch.Tensor, stride: int = 1,
             gain: tuple[float, ...] = ()) -> None:
        self.connections.append(Connection(src, dst, "conv", weight=weight, stride=stride,
                                           gain=gain))

    def resblock(self, name: str, block: ResBlock, inputs: list[Relay]) -> Relay:
        res = inputs[0].shape[1]
        n1 = self.fire(f"{name}.neuron1", inputs, block.neuron1.threshold, res)
        w1, b1, g1 = fold_conv_bn(block.conv1, block.bn1, self.steps)
        n2 = f"{name}.neuron2"
        self.populations.append(Population(name=n2, shape=(w1.shape[0], res, res),
                                           threshold=block.neuron2.threshold, bias=b1,
                                           temb_block=name))
        self.order.append(n2)
        self.conv(n1, n2, w1, gain=g1)
        w2, b2, g2 = fold_conv_bn(block.conv2, block.bn2, self.steps)
        bias_in = torch.cat([r.bias for r in inputs], dim=1)
        if isinstance(block.shortcut, nn.Identity):
            carried = b2 + bias_in
        else:
            a, b_sc, g_sc = conv_parts(block.shortcut, self.steps)
            g = torch.tensor(g_sc or (1.0,) * self.steps, dtype=_F64)
            carried = b2 + (bias_in @ a[:, :, 0, 0].T + b_sc[None]) * g[:, None]
        parts = []
        if isinstance(block.shortcut, nn.Identity):  # each input into its channel range
            lo = 0
            for r in inputs:
                parts.append((r.name, lo))
                lo += r.shape[0]
        else:  # the 1x1 shortcut in a relay of its own, one conv per input (split by channel)
            sc = self.relay(f"{name}.shortcut", (w2.shape[0], res, res), torch.zeros_like(b2))
            lo = 0
            for r in inputs:
                self.conv(r.name, sc.name, a[:, lo:lo + r.shape[0]].clone(), gain=g_sc)
                lo += r.shape[0]
            parts.append((sc.name, 0))
        out = self.relay(name, (w2.shape[0], res, res), carried)
        self.conv(n2, name, w2, gain=g2)
        for src, first in parts:
            self.connections.append(Connection(src, name, "identity", dst_channel=first))
        return out

    def resample(self, name: str, block: nn.Module, x: Relay) -> Relay:
        res = x.shape[1]
        n = self.fire(f"{name}.neuron", [x], block.neuron.threshold, res)
        w, b, gain = fold_conv_bn(block.conv, block.bn, self.steps)
        if isinstance(block, DownSample):
            out = self.relay(name, (w.shape[0], res // 2, res // 2), b)
            self.conv(n, name, w, stride=2, gain=gain)
            return out
        up = self.relay(f"{name}.upsample", (x.shape[0], 2 * res, 2 * res),
                        torch.zeros(self.steps, x.shape[0], dtype=_F64), kind="upsample")
        self.connections.append(Connection(n, up.name, "upsample"))
        out = self.relay(name, (w.shape[0], 2 * res, 2 * res), b)
        self.conv(up.name, name, w, gain=gain)
        return out


def check_graded_lowerable(model: SpikingUNet) -> None:
    if model.config.tsm:
        raise ConfigError(
            "the graded mapping cannot run SDM's TSM convs: a Loihi 2 Conv holds one shared "
            "kernel, and TSM scales every conv's output by a different gain at each SNN step "
            "(no exact per-step gain exists on a shared kernel in Lava); use --mapping composed, "
            "which runs TSM through time-gated relays.")


def lower_graded(model: SpikingUNet) -> GradedGraph:
    """The float graded graph of ``model`` (eval-mode BatchNorm; current thresholds). A TSM
    model's convs carry their per-step gains: a float graph for calibration, which
    :func:`check_graded_lowerable` keeps from deployment."""
    m, cfg = model, model.config
    b = _Builder(m)
    pw, pb, pg = fold_conv_bn(m.conv, m.bn, cfg.snn_steps)
    res = cfg.img_size
    b.populations.append(Population(name="neuron", shape=(pb.shape[1], res, res),
                                    threshold=m.neuron.threshold, bias=pb, pixel_input=True))
    b.order.append("neuron")
    w, bias, gain = fold_conv_bn(m.conv_identity, m.bn_identity, cfg.snn_steps)
    h = b.relay("conv_identity", (w.shape[0], res, res), bias)
    b.conv("neuron", h.name, w, gain=gain)
    h = walk_unet(m, h, b.resblock, b.resample)
    host = host_stages(m, pw, pg, h.bias)
    return GradedGraph(cfg, tuple(b.populations), tuple(b.relays), tuple(b.connections),
                       tuple(b.order), h.name, host, {"source": "lowered from SpikingUNet",
                                                       "mapping": "graded"})
