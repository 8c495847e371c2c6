"""Training objective: epsilon prediction with MSE on a uniformly random diffusion step."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .schedule import LinearSchedule


def diffusion_loss(model: nn.Module, x0: torch.Tensor, schedule: LinearSchedule,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Mean squared error between the true noise and ``model(x_t, t)`` (images in [-1, 1])."""
    t = torch.randint(schedule.num_steps, (x0.shape[0],), generator=generator, device=x0.device)
    noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    x_t = schedule.q_sample(x0, t, noise)
    return F.mse_loss(model(x_t, t), noise)
