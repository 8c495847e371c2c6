"""Operation counts of the PyTorch model, layer by layer, as the papers and NeuroBench count them.

Forward hooks on every Conv2d / Linear (and the tail's Conv3d, run as a 2-D conv per step) see
the layer's input: a layer whose input is all in {0, 1} (spikes) does accumulates (ACs), any
other layer multiply-accumulates (MACs). Dense ops are what the layer computes as a dense ANN
layer; effective ops skip zero inputs and are exact at the borders (the conv of the non-zero
input map with an all-ones kernel, NeuroBench's binarised re-run).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from ..ir.connectivity import axis_reach
from ..models.unet import SpikingUNet


@dataclass(frozen=True)
class LayerOps:
    """One layer's work for ONE image and ONE denoising call (all SNN steps)."""

    name: str
    spiking_input: bool        # input all in {0, 1}: accumulates, else multiply-accumulates
    rows: int                  # times the layer runs per image per call (T_snn, or 1)
    dense_per_row: int         # dense multiply-accumulates of one run
    effective: float           # non-zero input x weights it reaches, summed over the rows
    input_zeros: float         # zero input activations (for activation sparsity)
    input_size: int            # input activations, summed over the rows

    @property
    def dense(self) -> int:
        return self.rows * self.dense_per_row


def _conv_effective(conv: nn.Conv2d, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Synaptic ops of each row: non-zero inputs times the taps they reach (exact at borders):
    input ``(c, y, x)`` reaches ``C_out / groups * reach_y[y] * reach_x[x]`` taps."""
    (ky, kx), (sy, sx), (py, px), (dy, dx) = (conv.kernel_size, conv.stride, conv.padding,
                                              conv.dilation)
    ry = axis_reach(x.shape[2], out.shape[2], ky, sy, py, dy)
    rx = axis_reach(x.shape[3], out.shape[3], kx, sx, px, dx)
    nz = (x != 0).sum(1, dtype=torch.float64)  # [N, H, W]
    return (nz * (ry[:, None] * rx[None, :])).flatten(1).sum(1) * (conv.out_channels
                                                                   // conv.groups)


@torch.no_grad()
def model_ops(model: SpikingUNet, x: torch.Tensor, t: torch.Tensor) -> list[LayerOps]:
    """Per-layer ops of ``model(x, t)``, averaged over the batch (one image, one call)."""
    batch = x.shape[0]
    names = {m: n for n, m in model.named_modules()}
    found: list[LayerOps] = []

    def record(name: str, module: nn.Module, z: torch.Tensor, out: torch.Tensor) -> None:
        binary = bool(((z == 0) | (z == 1)).all())
        if isinstance(module, nn.Linear):
            rows = 1  # the time-embedding MLPs run once per call (per distinct t)
            per_row = module.in_features * module.out_features
            eff = float((z != 0).sum()) / z.shape[0] * module.out_features
            zeros, size = float((z == 0).sum()) / z.shape[0], z.shape[1]
        else:
            rows = z.shape[0] // batch  # conv runs on the time-flattened batch
            per_row = (out[0].numel() * module.in_channels // module.groups
                       * module.kernel_size[0] * module.kernel_size[1])
            eff = float(_conv_effective(module, z, out).sum()) / batch
            zeros, size = float((z == 0).sum()) / batch, z[0].numel() * rows
        found.append(LayerOps(name, binary, rows, per_row, eff, zeros, size))

    def hook(module: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        record(names[module], module, inp[0], out)

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, nn.Conv2d | nn.Linear)]
    # The tail's Conv3d runs as F.conv2d per step (see SpikingUNet.tail): count it the same way.
    w3d = model.T_output_layer
    conv3 = nn.Conv2d(w3d.in_channels, w3d.out_channels, 3, padding=1).double()

    def tail_hook(module: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        record("T_output_layer", conv3, out, out)  # tail_conv's output is its input

    handles.append(model.tail_conv.register_forward_hook(tail_hook))
    try:
        model(x, t)
    finally:
        for h in handles:
            h.remove()
    return found


def ann_macs(ops: list[LayerOps]) -> int:
    """Dense MACs of the same U-Net as a non-spiking network: every layer once per call."""
    return sum(o.dense_per_row for o in ops)


def mean_ops(runs: list[list[LayerOps]]) -> list[LayerOps]:
    """Layer ops averaged over several calls (e.g. at different t): data-dependent fields are
    averaged, the structure must agree."""
    out = []
    for layer in zip(*runs, strict=True):
        n = len(layer)
        out.append(dataclasses.replace(
            layer[0], spiking_input=all(o.spiking_input for o in layer),
            effective=sum(o.effective for o in layer) / n,
            input_zeros=sum(o.input_zeros for o in layer) / n))
    return out
