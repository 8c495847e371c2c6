"""Building blocks of the spiking U-Net, with the reference module and parameter names.

Tensors between blocks are ``[T_snn, B, C, H, W]`` (time-major). Convolutions and BatchNorms run
on the time-flattened batch ``[T_snn*B, C, H, W]`` (row = step*B + b), exactly as the reference,
so BatchNorm's training statistics are taken over all SNN steps.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .neuron import IFNeuron


class Swish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


def sinusoidal_table(num_steps: int, ch: int) -> torch.Tensor:
    """Frozen time-embedding table ``[num_steps, ch]``: row p is interleaved
    ``[sin(p f0), cos(p f0), sin(p f1), ...]`` with ``f_i = exp(-(2i/ch) ln 10000)``, computed in
    float32 in the reference's order so a fresh table equals the stored one bit for bit."""
    freqs = torch.exp(-(torch.arange(0, ch, step=2) / ch * math.log(10000)))
    angles = torch.arange(num_steps).float()[:, None] * freqs[None, :]
    return torch.stack([torch.sin(angles), torch.cos(angles)], dim=-1).view(num_steps, ch)


class TimeEmbedding(nn.Module):
    """Table lookup -> Linear(ch, 4ch) -> Swish -> Linear(4ch, 4ch); float, never spiking."""

    def __init__(self, num_steps: int, ch: int, tdim: int) -> None:
        super().__init__()
        self.timembedding = nn.Sequential(
            nn.Embedding.from_pretrained(sinusoidal_table(num_steps, ch)),
            nn.Linear(ch, tdim),
            Swish(),
            nn.Linear(tdim, tdim),
        )
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.timembedding(t)


class TSMConv2d(nn.Module):
    """SDM's temporal-wise conv: ``conv(x)`` (bias included) times a learned gain ``tsmp[s]`` per
    SNN step s. Keys ``tsmconv.weight``, ``tsmconv.bias``, ``tsmp`` ``[T_snn,1,1,1,1]``."""

    def __init__(self, snn_steps: int, in_ch: int, out_ch: int, kernel_size: int,
                 stride: int = 1, padding: int = 0) -> None:
        super().__init__()
        self.tsmconv = nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding)
        self.tsmp = nn.Parameter(torch.ones(snn_steps, 1, 1, 1, 1))

    @property
    def weight(self) -> torch.Tensor:
        return self.tsmconv.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.tsmconv.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.tsmconv(x)
        steps = self.tsmp.shape[0]
        return (y.reshape(steps, -1, *y.shape[1:]) * self.tsmp).flatten(0, 1)


def make_conv(tsm: bool, snn_steps: int, in_ch: int, out_ch: int, kernel_size: int,
              stride: int = 1, padding: int = 0) -> nn.Module:
    """A plain Conv2d (SDDPM) or a TSMConv2d (SDM), xavier-uniform weights and zero bias."""
    if tsm:
        conv: nn.Module = TSMConv2d(snn_steps, in_ch, out_ch, kernel_size, stride, padding)
        inner = conv.tsmconv
    else:
        conv = inner = nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding)
    nn.init.xavier_uniform_(inner.weight)
    nn.init.zeros_(inner.bias)
    return conv


def over_time(fn, x: torch.Tensor) -> torch.Tensor:
    """Apply a 2-D op to ``[T, B, C, H, W]`` on the time-flattened batch (row = step*B + b)."""
    y = fn(x.flatten(0, 1))
    return y.reshape(x.shape[0], x.shape[1], *y.shape[1:])


def conv_bn(conv: nn.Module, bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """``bn(conv(.))`` on ``[T, B, C, H, W]``."""
    return over_time(lambda z: bn(conv(z)), x)


class ResBlock(nn.Module):
    """``h = BN1(conv1(IF1(x))) + Linear(Swish(temb))``; ``h = BN2(conv2(IF2(h)))``;
    ``out = h + shortcut(x)`` with the 1x1 shortcut (when channels change) on the ANALOG input."""

    def __init__(self, in_ch: int, out_ch: int, tdim: int, *, tsm: bool, snn_steps: int,
                 threshold: float = 1.0) -> None:
        super().__init__()
        self.temb_proj = nn.Sequential(Swish(), nn.Linear(tdim, out_ch))
        nn.init.xavier_uniform_(self.temb_proj[1].weight)
        nn.init.zeros_(self.temb_proj[1].bias)
        self.neuron1 = IFNeuron(threshold)
        self.conv1 = make_conv(tsm, snn_steps, in_ch, out_ch, 3, 1, 1)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.neuron2 = IFNeuron(threshold)
        self.conv2 = make_conv(tsm, snn_steps, out_ch, out_ch, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut = (make_conv(tsm, snn_steps, in_ch, out_ch, 1, 1, 0)
                         if in_ch != out_ch else nn.Identity())

    def forward(self, x: torch.Tensor, temb: torch.Tensor, t_index: torch.Tensor) -> torch.Tensor:
        h = conv_bn(self.conv1, self.bn1, self.neuron1(x))
        # temb holds one row per distinct t; t_index maps batch rows to them.
        h = h + self.temb_proj(temb)[t_index][:, :, None, None]  # per-sample, per-channel bias
        h = conv_bn(self.conv2, self.bn2, self.neuron2(h))
        return h + over_time(self.shortcut, x)


class _Resample(nn.Module):
    """``BN(conv3x3(resize(IF(x))))``: the spiking down/up-sampling blocks."""

    stride = 1

    def __init__(self, ch: int, *, tsm: bool, snn_steps: int, threshold: float = 1.0) -> None:
        super().__init__()
        self.conv = make_conv(tsm, snn_steps, ch, ch, 3, self.stride, 1)
        self.bn = nn.BatchNorm2d(ch)
        self.neuron = IFNeuron(threshold)

    def resize(self, s: torch.Tensor) -> torch.Tensor:
        return s

    def forward(self, x: torch.Tensor, temb: torch.Tensor, t_index: torch.Tensor) -> torch.Tensor:
        return over_time(lambda z: self.bn(self.conv(self.resize(z))), self.neuron(x))


class DownSample(_Resample):
    """``BN(conv3x3 stride 2 (IF(x)))``."""

    stride = 2


class UpSample(_Resample):
    """``BN(conv3x3(nearest_x2(IF(x))))``."""

    def resize(self, s: torch.Tensor) -> torch.Tensor:
        return F.interpolate(s, scale_factor=2, mode="nearest")
