"""Lowering: SpikingUNet -> DeployGraph, eliminating every analog tensor.

In the SDDPM U-Net, every 3x3 conv reads spikes and every analog tensor (the residual stream,
the skips) is a sum of such conv outputs passed through maps that are all linear: BatchNorm
(eval mode), 1x1 shortcuts, identity residuals, channel concatenation. So each spiking layer's
input current is exactly ``sum_j conv_j(spikes_j) + bias`` over earlier spiking layers j, with
composed weights (a 1x1 map A after a conv W is the conv ``A @ W``). This pass evaluates the
model's data flow symbolically on such sums (:class:`_Expr`), in float64; each term becomes a
projection, each IF layer a population. The time embedding (only ever added before a ResBlock's
``neuron2``) becomes a per-call bias from a lookup table over t, the pixel conv (only read by the
stem neuron) a per-call, per-neuron bias; the decoder tail stays on the host, reading the
final residual stream as projections to ``HOST``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import ConfigError
from ..models.layers import DownSample, ResBlock, TSMConv2d, UpSample
from ..models.unet import SpikingUNet
from ..ir.graph import HOST, DeployGraph, HostStages, Population, Projection

_F64 = torch.float64


@dataclass
class _Term:
    src: str
    weight: torch.Tensor           # [C_out, C_in, k, k] float64
    stride: int
    upsample: int
    gain: tuple[float, ...]        # () = ones


@dataclass
class _Expr:
    """``sum(terms) + bias[s]`` (+ the per-call time embedding / pixel conv)."""

    terms: list[_Term]
    bias: torch.Tensor             # [T, C] float64
    temb: str | None = None
    pixel: bool = False
    res: int = 0                   # spatial size

    @property
    def channels(self) -> int:
        return self.bias.shape[1]


def _gain_mul(a: tuple[float, ...], b: tuple[float, ...]) -> tuple[float, ...]:
    if not a:
        return b
    if not b:
        return a
    return tuple(x * y for x, y in zip(a, b))


def conv_parts(conv: nn.Module, steps: int) -> tuple[torch.Tensor, torch.Tensor, tuple]:
    inner = conv.tsmconv if isinstance(conv, TSMConv2d) else conv
    gain = tuple(float(g) for g in conv.tsmp.detach().reshape(-1)) if isinstance(
        conv, TSMConv2d) else ()
    if gain and len(gain) != steps:
        raise ConfigError(f"TSM gains have {len(gain)} steps, the model {steps}.")
    b = inner.bias if inner.bias is not None else torch.zeros(inner.out_channels)
    return inner.weight.detach().to(_F64), b.detach().to(_F64), gain


def bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    scale = bn.weight.detach().to(_F64) / torch.sqrt(bn.running_var.to(_F64) + bn.eps)
    return scale, bn.bias.detach().to(_F64) - bn.running_mean.to(_F64) * scale


def fold_conv_bn(conv: nn.Module, bn: nn.BatchNorm2d, steps: int) -> tuple[torch.Tensor,
                                                                        torch.Tensor, tuple]:
    """``BN((conv(x) + b) * g[s])`` = ``g[s] * conv(x; W') + bias[s]`` with BN folded."""
    w, b, gain = conv_parts(conv, steps)
    scale, shift = bn_affine(bn)
    g = torch.tensor(gain or (1.0,) * steps, dtype=_F64)
    bias = g[:, None] * (b * scale)[None] + shift[None]
    return w * scale[:, None, None, None], bias, gain


@dataclass
class _Lowering:
    model: SpikingUNet
    populations: list[Population] = field(default_factory=list)
    projections: list[Projection] = field(default_factory=list)

    @property
    def steps(self) -> int:
        return self.model.config.snn_steps

    def fire(self, name: str, x: _Expr, threshold: float) -> str:
        self.populations.append(Population(
            name=name, shape=(x.channels, x.res, x.res), threshold=threshold, bias=x.bias,
            temb_block=x.temb, pixel_input=x.pixel))
        self.connect(x, name)
        return name

    def connect(self, x: _Expr, dst: str) -> None:
        merged: dict[tuple, _Term] = {}
        for t in x.terms:  # one projection per source and geometry
            key = (t.src, t.stride, t.upsample, t.weight.shape[-1], t.gain)
            if key in merged:
                merged[key].weight = merged[key].weight + t.weight
            else:
                merged[key] = _Term(t.src, t.weight.clone(), t.stride, t.upsample, t.gain)
        for t in merged.values():
            self.projections.append(Projection(src=t.src, dst=dst, weight=t.weight,
                                               stride=t.stride, upsample=t.upsample,
                                               gain=t.gain))

    def spike_conv(self, src: str, conv: nn.Module, bn: nn.BatchNorm2d, res: int, *,
                   stride: int = 1, upsample: int = 1) -> _Expr:
        w, bias, gain = fold_conv_bn(conv, bn, self.steps)
        return _Expr([_Term(src, w, stride, upsample, gain)], bias,
                     res=res * upsample // stride)

    @staticmethod
    def add(a: _Expr, b: _Expr) -> _Expr:
        if a.temb or b.temb or a.pixel or b.pixel or a.res != b.res:
            raise ConfigError("internal: per-call inputs reached a residual sum.")
        return _Expr(a.terms + b.terms, a.bias + b.bias, res=a.res)

    def one_by_one(self, conv: nn.Module, x: _Expr) -> _Expr:
        """A 1x1 shortcut conv (with its TSM gain) applied to an analog sum."""
        w, b, gain = conv_parts(conv, self.steps)
        a = w[:, :, 0, 0]
        terms = [_Term(t.src, torch.einsum("oc,cikl->oikl", a, t.weight), t.stride, t.upsample,
                       _gain_mul(t.gain, gain)) for t in x.terms]
        g = torch.tensor(gain or (1.0,) * self.steps, dtype=_F64)
        return _Expr(terms, (x.bias @ a.T + b[None]) * g[:, None], res=x.res)

    @staticmethod
    def concat(a: _Expr, b: _Expr) -> _Expr:
        ca, cb = a.channels, b.channels

        def place(t: _Term, lo: int) -> _Term:
            w = torch.zeros(ca + cb, *t.weight.shape[1:], dtype=_F64)
            w[lo:lo + t.weight.shape[0]] = t.weight
            return _Term(t.src, w, t.stride, t.upsample, t.gain)

        return _Expr([place(t, 0) for t in a.terms] + [place(t, ca) for t in b.terms],
                     torch.cat([a.bias, b.bias], dim=1), res=a.res)

    def resblock(self, name: str, block: ResBlock, x: _Expr) -> _Expr:
        n1 = self.fire(f"{name}.neuron1", x, block.neuron1.threshold)
        a = self.spike_conv(n1, block.conv1, block.bn1, x.res)
        a.temb = name
        n2 = self.fire(f"{name}.neuron2", a, block.neuron2.threshold)
        h = self.spike_conv(n2, block.conv2, block.bn2, x.res)
        skip = x if isinstance(block.shortcut, nn.Identity) else self.one_by_one(block.shortcut, x)
        return self.add(h, skip)

    def resample(self, name: str, block: nn.Module, x: _Expr) -> _Expr:
        n = self.fire(f"{name}.neuron", x, block.neuron.threshold)
        if isinstance(block, DownSample):
            return self.spike_conv(n, block.conv, block.bn, x.res, stride=2)
        return self.spike_conv(n, block.conv, block.bn, x.res, upsample=2)


def lower(model: SpikingUNet) -> DeployGraph:
    """The float deployment graph of ``model`` (eval-mode BatchNorm; current thresholds)."""
    m, cfg = model, model.config
    low = _Lowering(m)
    pw, pb, pg = fold_conv_bn(m.conv, m.bn, cfg.snn_steps)
    stem = _Expr([], pb, pixel=True, res=cfg.img_size)
    n0 = low.fire("neuron", stem, m.neuron.threshold)
    h = low.spike_conv(n0, m.conv_identity, m.bn_identity, cfg.img_size)
    h = walk_unet(m, h, lambda name, block, ins: low.resblock(
        name, block, ins[0] if len(ins) == 1 else low.concat(*ins)), low.resample)
    low.connect(h, HOST)
    host = host_stages(m, pw, pg, h.bias)
    return DeployGraph(cfg, tuple(low.populations), tuple(low.projections), host,
                       {"source": "lowered from SpikingUNet"})


def walk_unet(model: SpikingUNet, h, resblock, resample):
    """The U-Net's block order, for both lowerings: ``h`` (the stem's output) through the down,
    middle and up blocks; ``resblock(name, block, inputs)`` gets ``[h]``, or ``[h, skip]`` in the
    decoder (the skip popped from the encoder's outputs), ``resample(name, block, h)`` a
    Down/UpSample. Returns the last block's output."""
    skips = [h]

    def walk(prefix: str, blocks: nn.ModuleList, h, down: bool):
        for i, block in enumerate(blocks):
            name = f"{prefix}.{i}"
            if isinstance(block, ResBlock):
                h = resblock(name, block, [h, skips.pop()] if prefix == "upblocks" else [h])
            elif isinstance(block, (DownSample, UpSample)):
                h = resample(name, block, h)
            if down:
                skips.append(h)
        return h

    h = walk("downblocks", model.downblocks, h, down=True)
    h = walk("middleblocks", model.middleblocks, h, down=False)
    return walk("upblocks", model.upblocks, h, down=False)


def host_stages(model: SpikingUNet, pixel_weight: torch.Tensor, pixel_gain: tuple,
                tail_bias: torch.Tensor) -> HostStages:
    """The host's float work: the pixel conv, the time-embedding MLP tabulated per t and per
    ResBlock, the decoder tail's parameters."""
    with torch.no_grad():
        temb = model.time_embedding(torch.arange(model.config.diffusion_steps))
        tables = {name: mod.temb_proj(temb).float() for name, mod in model.named_modules()
                  if isinstance(mod, ResBlock)}
    tail = {k: v.detach().clone() for k, v in model.state_dict().items()
            if k.split(".")[0] in ("tail_bn", "tail_conv", "T_output_layer", "last_bn")}
    return HostStages(pixel_weight=pixel_weight, pixel_gain=pixel_gain, temb_table=tables,
                      tail=tail, tail_bias=tail_bias)
