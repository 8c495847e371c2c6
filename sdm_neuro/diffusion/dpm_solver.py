"""DPM-Solver++ (Lu et al., arXiv 2211.01095), multistep, orders 1-3, for an epsilon model on
the discrete linear schedule.

* Data prediction ``x0 = (x - sigma_t eps) / alpha_t``, clamped to [-1, 1] as every sampler here
  clamps it (diffusers: ``thresholding=True, sample_max_value=1.0``).
* The update in log-SNR ``lambda = log(alpha / sigma)``; second order is the midpoint form,
  third order the multistep form of the paper.
* The chain calls the model at :func:`~sdm_neuro.diffusion.samplers.reference_step_list` (the
  DDIM steps), then lands on sigma = 0, so the last update is first order and returns the clamped
  x0 of the last call (diffusers: ``final_sigmas_type="zero"``).
* Orders rise one step at a time as the history fills; under 15 steps the second-to-last update
  is at most second order (diffusers' ``lower_order_final``).

Written here rather than run through diffusers' ``DPMSolverMultistepScheduler``: it is a stateful
object per batch whose sigma table is float32, while every sampler here takes its coefficients
from the float64 schedule and must be one pure update that the float model and the integer
simulator share; the default install would also gain huggingface_hub and requests for forty lines
of closed-form algebra. diffusers is the independent reference in the tests.
"""

from __future__ import annotations

import math

import torch

from .schedule import coef32

ORDERS = (1, 2, 3)


class DpmSolverPP:
    """One chain's solver state: the x0 predictions and log-SNRs of the calls so far."""

    def __init__(self, order: int, alphas_bar: torch.Tensor, num_calls: int) -> None:
        if order not in ORDERS:
            raise ValueError(f"DPM-Solver++ order must be one of {ORDERS} (got {order}).")
        self.order, self.abar, self.n = order, alphas_bar, num_calls
        self.x0: list[torch.Tensor] = []
        self.lam: list[float] = []

    def _alpha_sigma_lambda(self, t: int) -> tuple[float, float, float]:
        a = float(self.abar[t])
        alpha, sigma = math.sqrt(a), math.sqrt(1.0 - a)
        return alpha, sigma, math.log(alpha) - math.log(sigma)

    def step(self, x: torch.Tensor, eps: torch.Tensor, index: int, t: int, t_prev: int
             ) -> torch.Tensor:
        """The sample after call ``index`` (at step ``t``; ``t_prev < 0``: the clean image)."""
        alpha_s, sigma_s, lam_s = self._alpha_sigma_lambda(t)
        x0 = ((x - coef32(sigma_s) * eps) / coef32(alpha_s)).clamp(-1.0, 1.0)
        self.x0.append(x0)
        self.lam.append(lam_s)
        if t_prev < 0:
            return x0  # sigma = 0: the first-order update is the data prediction itself
        order = min(self.order, index + 1)
        if index == self.n - 2 and self.n < 15:
            order = min(order, 2)
        alpha_t, sigma_t, lam_t = self._alpha_sigma_lambda(t_prev)
        h = lam_t - lam_s
        phi = math.expm1(-h)  # e^{-h} - 1
        out = coef32(sigma_t / sigma_s) * x - coef32(alpha_t * phi) * x0
        if order >= 2:
            m0, m1 = self.x0[-1], self.x0[-2]
            r0 = (lam_s - self.lam[-2]) / h
            d1_0 = (m0 - m1) * coef32(1.0 / r0)
            if order == 2:
                out = out - coef32(0.5 * alpha_t * phi) * d1_0
            else:
                m2 = self.x0[-3]
                r1 = (self.lam[-2] - self.lam[-3]) / h
                d1_1 = (m1 - m2) * coef32(1.0 / r1)
                d1 = d1_0 + (d1_0 - d1_1) * coef32(r0 / (r0 + r1))
                d2 = (d1_0 - d1_1) * coef32(1.0 / (r0 + r1))
                out = (out + coef32(alpha_t * (phi / h + 1.0)) * d1
                       - coef32(alpha_t * ((phi + h) / h**2 - 0.5)) * d2)
        del self.x0[:-2], self.lam[:-2]  # a third-order step needs the last three
        return out
