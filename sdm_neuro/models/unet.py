"""The SDDPM spiking U-Net (``Spk_UNet``) and SDM's temporal-wise variant (``Spk_UNet_TSM``).

Same forward semantics and state_dict key names as the reference code, so a reference
checkpoint loads with strict key checking. The README's "Semantics" section summarises the data flow.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import torch
from torch import nn
from torch.nn import functional as F

from ..config import UNetConfig
from ..errors import ConfigError, UsageError
from .layers import (
    DownSample,
    IFNeuron,
    ResBlock,
    Swish,
    TimeEmbedding,
    UpSample,
    conv_bn,
    make_conv,
)

MEMBRANE_DECAY = 0.8  # hard-coded in the reference MembraneOutputLayer


class SpikingUNet(nn.Module):
    """Spiking U-Net denoiser: ``eps = model(x_t, t)`` with x_t ``[B, C, H, W]`` float32 and t the
    raw integer diffusion step ``[B]``.

    Neuron state is cleared after every call (the reference sampler's ``reset_net``); pass
    ``keep_state=True`` to keep the membrane potentials for the next call instead.
    """

    def __init__(self, config: UNetConfig, *, threshold: float = 1.0) -> None:
        super().__init__()
        self.config = config
        c, steps, tsm = config.ch, config.snn_steps, config.tsm
        kw = {"tsm": tsm, "snn_steps": steps, "threshold": threshold}

        self.time_embedding = TimeEmbedding(config.diffusion_steps, c, config.tdim)
        self.conv = make_conv(tsm, steps, config.img_ch, c, 3, 1, 1)
        self.bn = nn.BatchNorm2d(c)
        self.neuron = IFNeuron(threshold)
        self.conv_identity = make_conv(tsm, steps, c, c, 3, 1, 1)
        self.bn_identity = nn.BatchNorm2d(c)

        self.downblocks = nn.ModuleList()
        skip_chs = [c]
        now = c
        for level, mult in enumerate(config.ch_mult):
            for _ in range(config.num_res_blocks):
                self.downblocks.append(ResBlock(now, c * mult, config.tdim, **kw))
                now = c * mult
                skip_chs.append(now)
            if level != len(config.ch_mult) - 1:
                self.downblocks.append(DownSample(now, **kw))
                skip_chs.append(now)
        self.middleblocks = nn.ModuleList(
            [ResBlock(now, now, config.tdim, **kw), ResBlock(now, now, config.tdim, **kw)])
        self.upblocks = nn.ModuleList()
        for level in reversed(range(len(config.ch_mult))):
            out = c * config.ch_mult[level]
            for _ in range(config.num_res_blocks + 1):
                self.upblocks.append(ResBlock(skip_chs.pop() + now, out, config.tdim, **kw))
                now = out
            if level != 0:
                self.upblocks.append(UpSample(now, **kw))

        self.tail_bn = nn.BatchNorm2d(now)
        self.tail_swish = Swish()
        self.tail_conv = make_conv(tsm, steps, now, config.img_ch, 3, 1, 1)
        self.T_output_layer = nn.Conv3d(config.img_ch, config.img_ch, kernel_size=(3, 3, 1),
                                        padding=(1, 1, 0))
        self.last_bn = nn.BatchNorm2d(config.img_ch)
        self.swish = Swish()
        # The reference initialises the tail conv near zero (gain 1e-5).
        nn.init.xavier_uniform_(self.tail_conv.weight, gain=1e-5)
        nn.init.xavier_uniform_(self.conv.weight)

    # -- neurons -------------------------------------------------------------------------------
    def neurons(self) -> Iterator[tuple[str, IFNeuron]]:
        """Every spiking layer with its reference module name, in call order."""
        for name, m in self.named_modules():
            if isinstance(m, IFNeuron):
                yield name, m

    def reset_state(self) -> None:
        for _, n in self.neurons():
            n.reset()

    def set_threshold(self, threshold: float) -> None:
        """Threshold guidance (SDM): set every IF threshold to one value; weights untouched."""
        if not threshold > 0:
            raise UsageError(f"threshold must be > 0 (got {threshold}).")
        for _, n in self.neurons():
            n.threshold = float(threshold)

    def thresholds(self) -> dict[str, float]:
        """Every spiking layer's threshold, by its reference module name."""
        return {name: n.threshold for name, n in self.neurons()}

    def set_thresholds(self, thresholds: Mapping[str, float]) -> None:
        """Set the named layers' thresholds (a per-layer map, or :meth:`thresholds` back)."""
        neurons = dict(self.neurons())
        unknown = sorted(set(thresholds) - set(neurons))
        if unknown:
            raise UsageError(f"no spiking layer named {', '.join(unknown)}.")
        for name, value in thresholds.items():
            neurons[name].threshold = float(value)

    def record_spikes(self, on: bool = True) -> None:
        for _, n in self.neurons():
            n.record = on
            n.last_spikes = None

    def recorded_spikes(self) -> dict[str, torch.Tensor]:
        return {name: n.last_spikes for name, n in self.neurons() if n.last_spikes is not None}

    # -- forward -------------------------------------------------------------------------------
    def check_input(self, x: torch.Tensor, t: torch.Tensor) -> None:
        cfg = self.config
        if x.dim() != 4 or x.shape[1] != cfg.img_ch:
            raise UsageError(f"x must be [B, {cfg.img_ch}, H, W] (got {list(x.shape)}).")
        factor = 2 ** (len(cfg.ch_mult) - 1)
        if x.shape[2] % factor or x.shape[3] % factor:
            raise ConfigError(f"image size {tuple(x.shape[2:])} is not divisible by {factor} "
                              f"(2**(levels-1) for ch_mult {list(cfg.ch_mult)}).")
        if t.shape != (x.shape[0],):
            raise UsageError(f"t must have shape [{x.shape[0]}] (got {list(t.shape)}).")

    def forward(self, x: torch.Tensor, t: torch.Tensor, *, keep_state: bool = False) -> torch.Tensor:
        self.check_input(x, t)
        try:
            return self._forward(x, t)
        finally:
            if not keep_state:
                self.reset_state()

    def _forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        steps = self.config.snn_steps
        if steps * x.shape[0] == 1:
            # oneDNN's conv takes a different (not bit-identical) path for a batch of one row;
            # running two identical rows keeps every sample independent of the batch size.
            return self._forward(x.expand(2, *x.shape[1:]), t.expand(2))[:1]
        xs = x.unsqueeze(0).expand(steps, *x.shape)  # the image at every SNN step
        # The time-embedding MLPs run once per distinct t (GEMMs over a varying number of rows are
        # not bit-identical; a sampler's batch shares one t), then are gathered per sample.
        t_unique, t_index = torch.unique(t, return_inverse=True)
        temb = self.time_embedding(t_unique)

        h = conv_bn(self.conv, self.bn, xs)
        h = conv_bn(self.conv_identity, self.bn_identity, self.neuron(h))
        skips = [h]
        for block in self.downblocks:
            h = block(h, temb, t_index)
            skips.append(h)
        for block in self.middleblocks:
            h = block(h, temb, t_index)
        for block in self.upblocks:
            if isinstance(block, ResBlock):
                h = torch.cat([h, skips.pop()], dim=2)
            h = block(h, temb, t_index)
        return self.tail(h)

    def tail(self, h: torch.Tensor) -> torch.Tensor:
        """Analog decoder: ``tail_bn -> Swish -> tail_conv``, then the (3,3,1) Conv3d over
        ``[B,C,H,W,T]`` (computed as the equal per-step 3x3 conv with ``w3d[..., 0]``)
        ``-> last_bn -> Swish`` added to it, then ``eps = sum_s 0.8**(T-1-s) h[s]``."""
        steps, batch = h.shape[:2]
        y = self.tail_conv(self.tail_swish(self.tail_bn(h.flatten(0, 1))))
        w3d = self.T_output_layer
        z = F.conv2d(y, w3d.weight[..., 0], w3d.bias, padding=1)
        out = (self.swish(self.last_bn(z)) + y).reshape(steps, batch, *y.shape[1:])
        return membrane_output(out)


def membrane_output(h: torch.Tensor) -> torch.Tensor:
    """``sum_s 0.8**(T-1-s) * h[s]`` over the leading SNN-step axis (reference coefficients:
    float32 ``torch.pow(0.8, arange(T-1, -1, -1))``)."""
    steps = h.shape[0]
    coef = torch.pow(MEMBRANE_DECAY, torch.arange(steps - 1, -1, -1)).to(h.device, h.dtype)
    return (h * coef.view(steps, *([1] * (h.dim() - 1)))).sum(dim=0)


def count_parameters(model: nn.Module) -> int:
    """All parameters, frozen ones included (the reference's count)."""
    return sum(p.numel() for p in model.parameters())


def neuron_shapes(model: SpikingUNet) -> dict[str, tuple[int, int, int]]:
    """(C, H, W) of every spiking layer at the configured image size, in call order."""
    res = model.config.img_size
    shapes = {"neuron": (model.conv_identity.weight.shape[1], res, res)}

    def walk(prefix: str, blocks: nn.ModuleList) -> None:
        nonlocal res
        for i, b in enumerate(blocks):
            if isinstance(b, ResBlock):
                shapes[f"{prefix}.{i}.neuron1"] = (b.conv1.weight.shape[1], res, res)
                shapes[f"{prefix}.{i}.neuron2"] = (b.conv2.weight.shape[1], res, res)
            else:
                shapes[f"{prefix}.{i}.neuron"] = (b.conv.weight.shape[1], res, res)
                res = res // 2 if isinstance(b, DownSample) else res * 2

    walk("downblocks", model.downblocks)
    walk("middleblocks", model.middleblocks)
    walk("upblocks", model.upblocks)
    return shapes
