"""Schedule, step lists and samplers against a direct transcription of the reference sampler."""

import numpy as np
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


# --- respaced DDPM against an independent float64 transcription -----------------------------

def documented_noise(seed: int, sample_index: int, shape, draws: int) -> list[torch.Tensor]:
    """The documented noise contract, written out here: sample i draws from its own
    ``torch.Generator`` seeded with ``(seed * 1_000_003 + i) mod 2**63``, one [C, H, W]
    tensor per use (x_T first, then one per noise-adding step)."""
    g = torch.Generator().manual_seed((seed * 1_000_003 + sample_index) % 2**63)
    return [torch.randn(tuple(shape), generator=g) for _ in range(draws)]


def stand_in_eps(x, t):
    """eps = 0.1 x + t / 2000: depends on x and on t, so a wrong t shows."""
    return 0.1 * x + t / 2000.0


def respaced_ddpm_float64(x_T: np.ndarray, noise: list[np.ndarray], timesteps: list[int],
                          T: int, variance: str = "fixedlarge",
                          clamp: bool = True) -> tuple[list[tuple[int, np.ndarray]], np.ndarray]:
    """Respaced DDPM from its formulas, in float64 numpy (no code of the package):
    abar_k = abar[timesteps[k]] (ascending), abar_prev_0 = 1, beta_k = 1 - abar_k / abar_{k-1},
    x0 = sqrt(1/abar) x - sqrt(1/abar - 1) eps clamped to [-1, 1], posterior mean
    sqrt(abar_prev) beta / (1 - abar) x0 + sqrt(1 - beta) (1 - abar_prev) / (1 - abar) x,
    variance beta ("fixedlarge") or the posterior's ("fixedsmall"), no noise at the last step
    (whose mean is x0: abar_prev = 1). Returns the (t, x_t) of every model call and x0."""
    betas = np.linspace(1e-4, 0.02, T)
    abar = np.cumprod(1.0 - betas)
    ts = sorted(timesteps)
    abar_r = abar[ts]
    abar_prev = np.concatenate([[1.0], abar_r[:-1]])
    beta_r = 1.0 - abar_r / abar_prev
    var = beta_r if variance == "fixedlarge" else beta_r * (1 - abar_prev) / (1 - abar_r)
    x, calls, k_noise = x_T, [], 0
    for k in reversed(range(len(ts))):
        calls.append((ts[k], x.copy()))
        eps = stand_in_eps(x, ts[k])
        x0 = np.sqrt(1 / abar_r[k]) * x - np.sqrt(1 / abar_r[k] - 1) * eps
        x0 = np.clip(x0, -1, 1) if clamp else x0
        mean = (np.sqrt(abar_prev[k]) * beta_r[k] / (1 - abar_r[k]) * x0
                + np.sqrt(1 - beta_r[k]) * (1 - abar_prev[k]) / (1 - abar_r[k]) * x)
        if k == 0:
            return calls, np.clip(mean, -1, 1)
        x = mean + np.sqrt(var[k]) * noise[k_noise]
        k_noise += 1
    raise AssertionError("empty chain")


def run_sampler(T: int, steps: int, seed: int, shape) -> tuple[list[tuple[int, np.ndarray]],
                                                                np.ndarray]:
    """The package's DDPM sampler with the stand-in denoiser, recording every call's (t, x_t)."""
    calls = []

    def model(x, t):
        assert len(set(t.tolist())) == 1  # one t per call for the whole batch
        calls.append((int(t[0]), x.double().numpy().copy()))
        return stand_in_eps(x, t.view(-1, 1, 1, 1).float())

    out = sample(model, LinearSchedule(num_steps=T), shape, sampler="ddpm", steps=steps,
                 seed=seed)
    return calls, out.double().numpy()


def reference_chain(T, timesteps, seed, shape, **kw):
    """The float64 reference for every sample of the batch, with the documented noise."""
    per_sample = []
    for i in range(shape[0]):
        draws = [d.double().numpy() for d in documented_noise(seed, i, shape[1:], len(timesteps))]
        per_sample.append(respaced_ddpm_float64(draws[0], draws[1:], timesteps, T, **kw))
    calls = [(per_sample[0][0][j][0], np.stack([s[0][j][1] for s in per_sample]))
             for j in range(len(timesteps))]
    return calls, np.stack([s[1] for s in per_sample])


# float32 arithmetic in the sampler against float64 here: rounding stays below this.
CHAIN_TOL = 1e-5


@pytest.mark.parametrize("T,steps,timesteps", [
    (1000, 10, list(range(99, 1000, 100))),                               # 999, 899, ..., 99
    (1000, 7, [999, 856, 713, 570, 427, 284, 141]),                       # 1000/7 not integer
    (1000, 1, [999]),                                                      # x0 from x_T
    (20, 5, [3, 7, 11, 15, 19]),
])
def test_respaced_ddpm_matches_float64_reference_chain(T, steps, timesteps):
    shape = [3, 1, 4, 4]
    ours, x0 = run_sampler(T, steps, seed=5, shape=shape)
    ref, ref_x0 = reference_chain(T, timesteps, 5, shape)
    assert [t for t, _ in ours] == sorted(timesteps, reverse=True) == [t for t, _ in ref]
    for (t, a), (_, b) in zip(ours, ref):
        assert np.abs(a - b).max() < CHAIN_TOL, f"x_t differs at t={t}"
    assert np.abs(x0 - ref_x0).max() < CHAIN_TOL
    assert np.abs(x0).max() <= 1


def test_respaced_ddpm_reference_comparison_is_sensitive():
    """The tolerance above separates the right chain from near misses: posterior ("fixedsmall")
    variance, no x0 clamp, or improved-diffusion's ascending spacing from 0 all differ by far
    more than CHAIN_TOL."""
    T, steps, shape = 1000, 10, [3, 1, 4, 4]
    _, x0 = run_sampler(T, steps, seed=5, shape=shape)
    trailing = list(range(99, 1000, 100))
    for kw, ts in (({"variance": "fixedsmall"}, trailing), ({"clamp": False}, trailing),
                   ({}, list(range(0, 1000, 111)))):
        _, other = reference_chain(T, ts, 5, shape, **kw)
        assert np.abs(x0 - other).max() > 100 * CHAIN_TOL, kw
