"""DPM-Solver++ against diffusers' DPMSolverMultistepScheduler, Analytic-DPM against a direct
transcription of the reference code's ``reverse_ddpm_ms_eps`` (baofff/Analytic-DPM)."""

import math

import numpy as np
import pytest
import torch

from sdm_neuro import UsageError
from sdm_neuro.diffusion import LinearSchedule, model_call_steps, sample
from sdm_neuro.diffusion.analytic import eps_moments
from sdm_neuro.diffusion.samplers import canonical_sampler

SHAPE = (3, 2, 4, 4)


def stand_in(x, t):
    """A deterministic denoiser of x and t whose x0 predictions leave [-1, 1] at some steps."""
    return torch.tanh(1.3 * x.roll(1, dims=-1) - 0.4 * x + t.view(-1, 1, 1, 1).float() / 700.0)


def x_T(seed=3):
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("steps", [10, 25])
def test_dpm_solver_pp_equals_diffusers(order, steps):
    diffusers = pytest.importorskip("diffusers")
    sched = diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
        solver_order=order, prediction_type="epsilon", algorithm_type="dpmsolver++",
        solver_type="midpoint", thresholding=True, sample_max_value=1.0,
        lower_order_final=True, final_sigmas_type="zero")
    # The same call times as this project's DDIM: int(999 - (1000 / steps) * i).
    times = [int(999 - 1000 / steps * i) for i in range(steps)]
    sched.set_timesteps(timesteps=times)
    x = x_T()
    for t in sched.timesteps:
        eps = stand_in(x, torch.full((SHAPE[0],), int(t), dtype=torch.long))
        x = sched.step(eps, t, x).prev_sample
    ours = sample(stand_in, LinearSchedule(), SHAPE, sampler=f"dpmpp{order}", steps=steps,
                  x_T=x_T())
    assert model_call_steps(f"dpmpp{order}", 1000, steps) == times
    # diffusers keeps its sigma table in float32, this project's coefficients come from float64
    assert torch.allclose(ours, x, rtol=1e-5, atol=2e-5), (ours - x).abs().max()
    assert ours.abs().max() <= 1.0  # the last update returns the clamped x0


def reference_analytic(x, ms_eps, K, seed_rows):
    """baofff/Analytic-DPM reverse_ddpm_ms_eps, transcribed in numpy (1-based steps with
    betas[0] = 0), the DDPM respacing of SDDPM's step list, no sigma clip."""
    N = 1000
    betas = np.concatenate([[0.0], np.linspace(1e-4, 0.02, N)])
    alphas = 1.0 - betas
    cum_alphas = alphas.cumprod()
    cum_betas = 1.0 - cum_alphas
    ns = sorted(int(N - 1 - N / K * i) + 1 for i in range(K))  # 1-based
    for s, r in list(zip([0] + ns, ns))[::-1]:
        skip_alpha = alphas[s + 1: r + 1].prod()
        skip_beta = 1.0 - skip_alpha
        t = torch.full((x.shape[0],), r - 1, dtype=torch.long)
        eps = stand_in(x, t)
        x0 = (x / math.sqrt(cum_alphas[r]) - math.sqrt(1 / cum_alphas[r] - 1) * eps).clamp(-1, 1)
        coeff1 = skip_beta * cum_alphas[s] ** 0.5 / cum_betas[r]
        coeff2 = skip_alpha ** 0.5 * cum_betas[s] / cum_betas[r]
        mean = coeff1 * x0 + coeff2 * x
        if s != 0:
            small = skip_beta * cum_betas[s] / cum_betas[r]
            cov = np.clip(cum_betas[r] / cum_alphas[r] * (1.0 - ms_eps[r - 1]), 0.0, 1.0)
            sigma2 = small + cum_alphas[s] * skip_beta**2 / cum_betas[r] ** 2 * cov
            noise = torch.stack([torch.randn(SHAPE[1:], generator=g) for g in seed_rows])
            x = mean + sigma2**0.5 * noise
        else:
            x = mean
    return x


def test_analytic_dpm_equals_the_reference_update():
    K = 20
    steps = model_call_steps("analytic", 1000, K)
    # moments inside and outside the clip range (1 - G < 0 clips the covariance to 0)
    moments = {t: 0.8 + 0.3 * math.sin(t) for t in steps}
    ours = sample(stand_in, LinearSchedule(), SHAPE, sampler="analytic", steps=K, seed=5,
                  x_T=x_T(), moments=moments)
    rows = [torch.Generator().manual_seed(5 * 1_000_003 + i) for i in range(SHAPE[0])]
    ref = reference_analytic(x_T(), {t: moments.get(t, 0.0) for t in range(1000)}, K, rows)
    assert torch.allclose(ours, ref.float(), rtol=1e-5, atol=1e-5), (ours - ref).abs().max()


def test_analytic_needs_moments_and_eps_moments_averages_the_square():
    with pytest.raises(UsageError, match="eps moments"):
        sample(stand_in, LinearSchedule(), SHAPE, sampler="analytic", steps=5)
    images = torch.rand(10, 1, 3, 3) * 2 - 1
    got = eps_moments(lambda x, t: torch.full_like(x, 0.5) * (1 + (t[0] == 7)), LinearSchedule(),
                      [3, 7], images, batch=4)
    assert got == {3: 0.25, 7: 1.0}


def test_sampler_names():
    assert canonical_sampler("dpmpp") == "dpmpp2"
    assert canonical_sampler("analytic") == "analytic"
    with pytest.raises(UsageError, match="unknown sampler 'dpm'"):
        canonical_sampler("dpm")
    assert model_call_steps("analytic", 1000, 4) == model_call_steps("ddpm", 1000, 4)
