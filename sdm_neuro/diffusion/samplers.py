"""Reverse-diffusion samplers with the SDDPM reference update rules.

* DDPM, "fixedlarge" variance, epsilon model: x0 predicted and clamped to [-1, 1] before the
  posterior mean; the last call returns the clamped x0. With fewer than T steps the chain is
  respaced (posterior between consecutive kept steps, betas recomputed from abar); with T steps
  it is exactly the reference chain.
* DDIM, eta = 0: the reference step list ``[max(int(T-1-(T/S)*i), 0) for i < S]``; each step
  clamps x0; the final update lands on ``abar[0]`` and the result is returned unclamped, as the
  reference does.
* DPM-Solver++ (``dpmpp1``, ``dpmpp2``, ``dpmpp3``: multistep, orders 1-3) on the DDIM steps,
  ending on the clean image: :mod:`.dpm_solver`.
* Analytic-DPM (``analytic``): the DDPM chain with the optimal variance from the model's eps
  moments: :mod:`.analytic`.

Noise is drawn per sample from its own generator seeded with ``(seed, sample index)``, so sample
i with seed s gets the same noise whatever the batch size or batch split.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from ..errors import UsageError
from .schedule import LinearSchedule, coef32

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
SamplerName = Literal["ddpm", "ddim", "dpmpp1", "dpmpp2", "dpmpp3", "analytic"]
SAMPLERS: tuple[str, ...] = ("ddpm", "ddim", "dpmpp1", "dpmpp2", "dpmpp3", "analytic")
ALIASES = {"dpmpp": "dpmpp2"}  # the solver's usual order for unconditional sampling


def canonical_sampler(name: str) -> str:
    """A sampler name as recorded in reports (``dpmpp`` is ``dpmpp2``), or a UsageError."""
    name = ALIASES.get(name, name)
    if name not in SAMPLERS:
        raise UsageError(f"unknown sampler '{name}' (choose from "
                         f"{', '.join((*SAMPLERS, *ALIASES))}).")
    return name


def on_device(model: torch.nn.Module, device: torch.device) -> Denoiser:
    """``model`` run on ``device`` while the noise and the sampler's arithmetic stay on the CPU,
    so a sample differs across devices only by the model's own rounding."""
    if device.type == "cpu":
        return model
    model = model.to(device)

    def call(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return model(x.to(device), t.to(device)).cpu()

    return call


def reference_step_list(num_steps: int, sample_steps: int) -> list[int]:
    """The reference's diffusion steps for an S-step sampler (DDIM appends 0 if missing)."""
    if not 1 <= sample_steps <= num_steps:
        raise UsageError(f"--steps must be in [1, {num_steps}] (got {sample_steps}).")
    ratio = num_steps / sample_steps
    return [max(int(num_steps - 1 - ratio * i), 0) for i in range(sample_steps)]


def model_call_steps(sampler: SamplerName, num_steps: int, sample_steps: int) -> list[int]:
    """The diffusion step t of every denoiser call the sampler makes, in order."""
    steps = reference_step_list(num_steps, sample_steps)
    if sampler == "ddim":
        # The reference loop ends when it reaches t = 0 without calling the model there.
        return [t for t in steps if t > 0] or [steps[0]]
    return steps


class NoiseSource:
    """Per-sample Gaussian noise: sample i uses ``Generator(seed * 1_000_003 + i)``; every call
    draws one ``[C, H, W]`` tensor per sample, in the same order for any batch layout."""

    def __init__(self, seed: int, indices: Sequence[int]) -> None:
        self.generators = []
        for i in indices:
            g = torch.Generator()
            g.manual_seed((int(seed) * 1_000_003 + int(i)) % (2**63))
            self.generators.append(g)

    def randn(self, shape: Sequence[int]) -> torch.Tensor:
        return torch.stack([torch.randn(tuple(shape), generator=g) for g in self.generators])


@dataclass(frozen=True)
class SamplerStep:
    """One sampler step: the denoiser is called at diffusion step ``t``."""

    index: int
    t: int
    t_prev: int  # next step of the chain; -1 means "the clean image"


def sample(model: Denoiser, schedule: LinearSchedule, shape: Sequence[int], *,
           sampler: SamplerName = "ddpm", steps: int = 1000, seed: int = 0,
           indices: Sequence[int] | None = None, x_T: torch.Tensor | None = None,
           progress: Callable[[Sequence[SamplerStep]], Iterable[SamplerStep]] | None = None,
           moments: Mapping[int, float] | None = None) -> torch.Tensor:
    """Run the reverse process for a batch ``shape = [B, C, H, W]``; returns x0 (float32).

    ``indices`` are the global sample numbers of the batch rows (default 0..B-1): they select
    the per-sample noise streams. ``x_T`` replaces the initial noise (it must then be given for
    every row). ``progress`` wraps the list of steps (e.g. in a tqdm bar). ``moments``: the
    analytic sampler's eps moments per step (:func:`~.analytic.eps_moments`).
    """
    from .analytic import analytic_variance, check_moments
    from .dpm_solver import DpmSolverPP

    if sampler not in SAMPLERS:
        raise UsageError(f"unknown sampler '{sampler}' (choose from {', '.join(SAMPLERS)}).")
    batch = shape[0]
    indices = list(range(batch)) if indices is None else list(indices)
    if len(indices) != batch:
        raise UsageError(f"{len(indices)} sample indices for a batch of {batch}.")
    noise = NoiseSource(seed, indices)
    x = noise.randn(shape[1:]) if x_T is None else x_T.clone().float()
    calls = model_call_steps(sampler, schedule.num_steps, steps)
    last = 0 if sampler == "ddim" else -1  # DDIM lands on abar[0]; the others return x0
    if sampler == "analytic":
        check_moments(moments, calls)
    chain = [SamplerStep(i, t, calls[i + 1] if i + 1 < len(calls) else last)
             for i, t in enumerate(calls)]
    iterator: Iterable[SamplerStep] = chain if progress is None else progress(chain)
    abar = schedule.alphas_bar
    betas = schedule.betas
    solver = (DpmSolverPP(int(sampler[-1]), abar, len(calls)) if sampler.startswith("dpmpp")
              else None)
    for step in iterator:
        t = torch.full((batch,), step.t, dtype=torch.long)
        with torch.no_grad():
            eps = model(x, t)
        if sampler == "ddim":
            x = _ddim_update(x, eps, abar, step)
        elif solver is not None:
            x = solver.step(x, eps, step.index, step.t, step.t_prev)
        elif sampler == "analytic" and step.t_prev >= 0:
            var = analytic_variance(abar, step.t, step.t_prev, moments[step.t])
            x = _ddpm_update(x, eps, abar, betas, step, noise, variance=var)
        else:
            x = _ddpm_update(x, eps, abar, betas, step, noise)
    return x


def _ddim_update(x: torch.Tensor, eps: torch.Tensor, abar: torch.Tensor,
                 step: SamplerStep) -> torch.Tensor:
    a_t = coef32(abar[step.t].sqrt())
    a_s = coef32(abar[step.t_prev].sqrt())
    sigma_t = torch.sqrt(coef32(1.0 - abar[step.t]))
    x0 = ((x - eps * sigma_t) / a_t).clamp(-1.0, 1.0)
    c_2 = torch.sqrt(1 - a_s.pow(2))  # eta = 0: no noise term
    return a_s * x0 + c_2 * eps


def _ddpm_update(x: torch.Tensor, eps: torch.Tensor, abar: torch.Tensor, betas: torch.Tensor,
                 step: SamplerStep, noise: NoiseSource, variance: float | None = None
                 ) -> torch.Tensor:
    t = step.t
    if step.t_prev < 0:
        # Last call: return the clamped x0 prediction (reference: t == 0 branch).
        a_t = coef32(abar[t].sqrt())
        sigma_t = torch.sqrt(coef32(1.0 - abar[t]))
        return (1 / a_t * (x - eps * (1 - a_t**2) / sigma_t)).clamp(-1.0, 1.0)
    abar_t, abar_s = abar[t], abar[step.t_prev]
    # Consecutive steps use the schedule's own beta (bit-identical to the reference chain);
    # respaced ones the beta of the merged transition.
    beta = betas[t] if step.t_prev == t - 1 else 1.0 - abar_t / abar_s
    x0 = coef32(torch.sqrt(1.0 / abar_t)) * x - coef32(torch.sqrt(1.0 / abar_t - 1)) * eps
    x0 = x0.clamp(-1.0, 1.0)
    coef1 = torch.sqrt(abar_s) * beta / (1.0 - abar_t)
    coef2 = torch.sqrt(1.0 - beta) * (1.0 - abar_s) / (1.0 - abar_t)
    mean = coef32(coef1) * x0 + coef32(coef2) * x
    # "fixedlarge" variance: beta itself (the reference's posterior_var[1] entry only sits at
    # t = 0, which never reaches this branch); Analytic-DPM passes its own.
    var = beta if variance is None else torch.tensor(variance, dtype=torch.float64)
    std = torch.exp(0.5 * coef32(torch.log(var)))
    return mean + std * noise.randn(x.shape[1:])


def generate(model: Denoiser, schedule: LinearSchedule, num: int, image_shape: Sequence[int], *,
             batch_size: int = 16, sampler: SamplerName = "ddpm", steps: int = 1000, seed: int = 0,
             progress: bool = True, moments: Mapping[int, float] | None = None) -> torch.Tensor:
    """Sample ``num`` images in batches of ``batch_size`` with one progress bar over all
    denoiser calls. Sample i is the same for any ``batch_size`` (see :class:`NoiseSource`)."""
    from tqdm.auto import tqdm

    if num < 1 or batch_size < 1:
        raise UsageError(f"--num and --batch must be >= 1 (got {num}, {batch_size}).")
    n_calls = len(model_call_steps(sampler, schedule.num_steps, steps))
    starts = range(0, num, batch_size)
    bar = tqdm(total=n_calls * len(starts), desc=f"{sampler} {steps} steps", unit="call",
               disable=not progress, dynamic_ncols=True)

    def advance(chain: Sequence[SamplerStep]) -> Iterable[SamplerStep]:
        for step in chain:
            yield step
            bar.update(1)

    out = []
    with bar:
        for start in starts:
            idx = list(range(start, min(start + batch_size, num)))
            out.append(sample(model, schedule, [len(idx), *image_shape], sampler=sampler,
                              steps=steps, seed=seed, indices=idx, progress=advance,
                              moments=moments))
    return torch.cat(out)
