"""Analytic-DPM (Bao et al., ICLR 2022): the DDPM chain with the optimal reverse variance.

The mean is the (respaced) DDPM posterior mean with x0 clamped, as in :mod:`.samplers`; the
variance between kept steps s < t is

    sigma2 = skip_beta * (1 - abar_s) / (1 - abar_t)
             + abar_s * skip_beta**2 / (1 - abar_t)**2
               * clip((1 - abar_t) / abar_t * (1 - G_t), 0, 1)

with ``skip_beta = 1 - abar_t / abar_s`` and ``G_t = E ||eps_theta(x_t, t)||**2 / d`` over the
data, the moment the method estimates once per model by Monte Carlo (:func:`eps_moments`). This
is the reference code's ``reverse_ddpm_ms_eps`` (baofff/Analytic-DPM) without its optional
variance clip at the last steps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch

from ..errors import UsageError
from .schedule import LinearSchedule


def analytic_variance(abar: torch.Tensor, t: int, s: int, moment: float) -> float:
    """sigma2 of the step t -> s (s >= 0) given ``moment = G_t``."""
    abar_t, abar_s = float(abar[t]), float(abar[s])
    skip_beta = 1.0 - abar_t / abar_s
    small = skip_beta * (1.0 - abar_s) / (1.0 - abar_t)
    cov = min(1.0, max(0.0, (1.0 - abar_t) / abar_t * (1.0 - moment)))
    return small + abar_s * skip_beta**2 / (1.0 - abar_t) ** 2 * cov


def eps_moments(model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                schedule: LinearSchedule, steps: Sequence[int], images: torch.Tensor, *,
                batch: int = 64, seed: int = 0,
                progress: Callable[[Sequence[int]], Sequence[int]] | None = None
                ) -> dict[int, float]:
    """``G_t`` for every t in ``steps``: the mean over ``images`` (x0 in [-1, 1]) of
    ``||eps_theta(x_t, t)||**2 / d`` with ``x_t`` drawn from q(x_t | x0) (noise seeded by
    ``seed``; the same noise for every t)."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(images.shape, generator=gen)
    d = images[0].numel()
    out: dict[int, float] = {}
    for t in (steps if progress is None else progress(steps)):
        total = 0.0
        for i in range(0, len(images), batch):
            x0, e = images[i:i + batch], noise[i:i + batch]
            tt = torch.full((len(x0),), int(t), dtype=torch.long)
            with torch.no_grad():
                eps = model(schedule.q_sample(x0, tt, e), tt)
            total += float(eps.double().pow(2).sum())
        out[int(t)] = total / (len(images) * d)
    return out


def check_moments(moments: Mapping[int, float] | None, steps: Sequence[int]) -> None:
    """The moments of every step but the last are there, or a UsageError naming what lacks."""
    if moments is None:
        raise UsageError("the analytic sampler needs the model's eps moments (eps_moments).")
    for t in steps[:-1]:
        if t not in moments:
            raise UsageError(f"analytic sampler: no eps moment for step {t}.")
