"""The host side of a deployed denoiser: per-call input currents and the float decoder tail."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ..models.layers import Swish
from ..models.unet import membrane_output
from .graph import DeployGraph, Population


def pixel_current(graph: DeployGraph, x: torch.Tensor) -> torch.Tensor:
    """``[T, B, C, H, W]`` float64: the stem's per-call current without its constant bias."""
    h = graph.host
    y = F.conv2d(x.to(torch.float64), h.pixel_weight, padding=1)
    g = torch.tensor(h.pixel_gain or (1.0,) * graph.config.snn_steps, dtype=torch.float64)
    return g.view(-1, 1, 1, 1, 1) * y.unsqueeze(0)


def per_call_bias(graph: DeployGraph, pop: Population, t: torch.Tensor,
                  pixels: torch.Tensor | None) -> torch.Tensor:
    """Everything but spikes that drives ``pop`` in one call: ``[T, B, C, H|1, W|1]`` float64."""
    cur = pop.bias[:, None, :, None, None]  # constant per step and channel
    if pop.temb_block is not None:
        temb = graph.host.temb_table[pop.temb_block][t].to(torch.float64)  # [B, C]
        cur = cur + temb[None, :, :, None, None]
    if pop.pixel_input:
        cur = cur + pixels
    return cur


def decoder_tail(graph: DeployGraph, h: torch.Tensor) -> torch.Tensor:
    """The model's tail on the host, in the tail parameters' dtype, exactly as :meth:`SpikingUNet.tail`:
    ``h [T, B, C, H, W]`` -> eps ``[B, img_ch, H, W]``."""
    sd = graph.host.tail
    steps, batch = h.shape[:2]
    swish = Swish()

    def bn(prefix: str, z: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(z, sd[f"{prefix}.running_mean"], sd[f"{prefix}.running_var"],
                            sd[f"{prefix}.weight"], sd[f"{prefix}.bias"], False, 0.0, 1e-5)

    z = swish(bn("tail_bn", h.flatten(0, 1).to(sd["tail_bn.weight"].dtype)))
    if "tail_conv.tsmp" in sd:
        y = F.conv2d(z, sd["tail_conv.tsmconv.weight"], sd["tail_conv.tsmconv.bias"], padding=1)
        y = (y.reshape(steps, -1, *y.shape[1:]) * sd["tail_conv.tsmp"]).flatten(0, 1)
    else:
        y = F.conv2d(z, sd["tail_conv.weight"], sd["tail_conv.bias"], padding=1)
    z = F.conv2d(y, sd["T_output_layer.weight"][..., 0], sd["T_output_layer.bias"], padding=1)
    out = (swish(bn("last_bn", z)) + y).reshape(steps, batch, *y.shape[1:])
    return membrane_output(out)
