"""Schedule, step lists and samplers against a direct transcription of the reference sampler."""

import pytest
import torch
from torch.nn import functional as F

from sdm_neuro import UsageError
from sdm_neuro.diffusion import (
    LinearSchedule,
    NoiseSource,
    diffusion_loss,
    model_call_steps,
    reference_step_list,
    sample,
)


def fake_eps(x, t):
    """A deterministic stand-in denoiser that depends on x and t."""
    return torch.tanh(0.7 * x + t.view(-1, 1, 1, 1).float() / 1000.0)


def reference_ddpm(x_T, noise: NoiseSource, T=1000):
    """The SDDPM GaussianDiffusionSampler ('ddpm', 'epsilon', 'fixedlarge'), transcribed:
    float64 buffers gathered and cast to float32 before use."""
    betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
    alphas = 1.0 - betas
    abar = torch.cumprod(alphas, 0)
    abar_prev = F.pad(abar, [1, 0], value=1)[:T]
    sqrt_recip = torch.sqrt(1.0 / abar)
    sqrt_recipm1 = torch.sqrt(1.0 / abar - 1)
    post_var = betas * (1.0 - abar_prev) / (1.0 - abar)
    c1 = torch.sqrt(abar_prev) * betas / (1.0 - abar)
    c2 = torch.sqrt(alphas) * (1.0 - abar_prev) / (1.0 - abar)
    log_var = torch.log(torch.cat([post_var[1:2], betas[1:]]))
    x = x_T
    for ts in reversed(range(T)):
        t = torch.full((x.shape[0],), ts, dtype=torch.long)
        eps = fake_eps(x, t)
        if ts > 0:
            x0 = (sqrt_recip[ts].float() * x - sqrt_recipm1[ts].float() * eps).clamp(-1, 1)
            mean = c1[ts].float() * x0 + c2[ts].float() * x
            x = mean + torch.exp(0.5 * log_var[ts].float()) * noise.randn(x.shape[1:])
        else:
            a = abar[ts].sqrt().float()
            sigma = torch.sqrt((1.0 - abar[ts]).float())
            return torch.clip(1 / a * (x - eps * (1 - a**2) / sigma), -1, 1)


def test_schedule_is_float64_linear():
    s = LinearSchedule()
    assert s.betas.dtype == torch.float64 and s.betas[0] == 1e-4 and s.betas[-1] == 0.02
    assert torch.allclose(s.alphas_bar, torch.cumprod(1 - s.betas, 0))


def test_step_lists():
    assert reference_step_list(1000, 10) == [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
    assert model_call_steps("ddim", 1000, 1000) == list(range(999, 0, -1))
    assert model_call_steps("ddpm", 1000, 1000) == list(range(999, -1, -1))
    assert len(model_call_steps("ddpm", 1000, 50)) == 50
    with pytest.raises(UsageError, match=r"\[1, 1000\]"):
        reference_step_list(1000, 0)


def test_ddpm_1000_steps_matches_reference_sampler():
    shape = [2, 1, 3, 3]
    ours = sample(fake_eps, LinearSchedule(), shape, sampler="ddpm", steps=1000, seed=7)
    noise = NoiseSource(7, [0, 1])
    ref = reference_ddpm(noise.randn(shape[1:]), noise)
    assert torch.equal(ours, ref)


@pytest.mark.parametrize("sampler,steps", [("ddpm", 20), ("ddim", 20), ("ddim", 1)])
def test_deterministic_and_batch_independent(sampler, steps):
    s = LinearSchedule()
    full = sample(fake_eps, s, [5, 1, 4, 4], sampler=sampler, steps=steps, seed=3)
    again = sample(fake_eps, s, [5, 1, 4, 4], sampler=sampler, steps=steps, seed=3)
    part = sample(fake_eps, s, [2, 1, 4, 4], sampler=sampler, steps=steps, seed=3, indices=[3, 4])
    other = sample(fake_eps, s, [5, 1, 4, 4], sampler=sampler, steps=steps, seed=4)
    assert torch.equal(full, again) and torch.equal(full[3:], part)
    assert not torch.equal(full, other)


def test_respaced_ddpm_equals_ddpm_on_consecutive_steps():
    """With S = T the respaced formulas are the reference's; a coarser chain still ends in
    [-1, 1] with the clamped x0 of its last call."""
    s = LinearSchedule(num_steps=20)
    a = sample(fake_eps, s, [2, 1, 2, 2], sampler="ddpm", steps=20, seed=1)
    b = sample(fake_eps, s, [2, 1, 2, 2], sampler="ddpm", steps=5, seed=1)
    assert a.abs().max() <= 1 and b.abs().max() <= 1 and not torch.equal(a, b)


def test_diffusion_loss_is_mse_of_noise():
    s = LinearSchedule()
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 1, 4, 4) * 2 - 1
    perfect = {}

    def oracle_model(x_t, t):
        # recover the noise exactly from x_t, x0 and t
        abar = s.alphas_bar[t].float().view(-1, 1, 1, 1)
        perfect["eps"] = (x_t - abar.sqrt() * x0) / (1 - abar).sqrt()
        return perfect["eps"]

    assert diffusion_loss(oracle_model, x0, s, g1).item() < 1e-8
    assert diffusion_loss(lambda x, t: torch.zeros_like(x), x0, s, g2).item() > 0.5
