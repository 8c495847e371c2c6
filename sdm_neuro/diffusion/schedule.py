"""The linear beta schedule of DDPM / SDDPM, with float64 coefficients."""

from __future__ import annotations

from dataclasses import dataclass

import torch


def coef32(x: torch.Tensor | float) -> torch.Tensor:
    """A sampler coefficient computed in float64, as a float32 scalar (the reference's
    ``extract(...).float()``)."""
    return torch.as_tensor(x, dtype=torch.float64).float()


@dataclass(frozen=True, eq=False)
class LinearSchedule:
    """``betas = linspace(beta_1, beta_T, T)`` in float64 and the cumulative products."""

    num_steps: int = 1000
    beta_1: float = 1e-4
    beta_T: float = 0.02

    @property
    def betas(self) -> torch.Tensor:
        return torch.linspace(self.beta_1, self.beta_T, self.num_steps, dtype=torch.float64)

    @property
    def alphas_bar(self) -> torch.Tensor:
        return torch.cumprod(1.0 - self.betas, dim=0)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise`` (coefficients cast to float32 after
        the float64 computation, as the reference trainer does)."""
        abar = self.alphas_bar.to(t.device)[t]
        shape = (-1,) + (1,) * (x0.dim() - 1)
        return (abar.sqrt().float().view(shape) * x0
                + (1.0 - abar).sqrt().float().view(shape) * noise)
