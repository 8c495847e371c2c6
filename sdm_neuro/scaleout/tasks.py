"""What one Ray task computes for its shard: module-level functions, so Ray can send them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from .shards import Shard


@dataclass(frozen=True)
class SamplingSpec:
    """The sampling settings every shard shares (those of the single-process ``generate``)."""

    diffusion_steps: int
    image_shape: tuple[int, ...]
    batch: int
    sampler: str
    steps: int
    seed: int
    device: str = "cpu"
    # PyTorch threads per task. Integer results do not depend on it; float convolutions in
    # oneDNN can round differently with another thread count at some shapes (measured: batch 2
    # of the default model, up to 0.09 apart between 1 and 2 threads), so float samples equal a
    # single process run with the same --threads.
    threads: int = 1
    moments: Mapping[int, float] | None = None  # the analytic sampler's, per step


def float_shard(model, spec: SamplingSpec, shard: Shard, reporter) -> dict:
    """The float model's samples ``shard.start ... shard.stop - 1``."""
    from ..diffusion import on_device
    from ..training import resolve_device

    denoiser = on_device(model, resolve_device(spec.device))
    return {"tensors": {"samples": sample_batches(denoiser, spec, shard, reporter)}}


def sample_batches(denoiser, spec: SamplingSpec, shard: Shard, reporter) -> torch.Tensor:
    """``shard``'s samples, batch by batch as :func:`~sdm_neuro.diffusion.generate` cuts them
    (the same rows in the same batches); ``reporter(1)`` after every denoising call."""
    from ..diffusion import LinearSchedule
    from ..diffusion.samplers import sample

    torch.set_num_threads(spec.threads)
    schedule = LinearSchedule(num_steps=spec.diffusion_steps)

    def advance(chain):
        for step in chain:
            yield step
            reporter(1)

    out = []
    for start in range(shard.start, shard.stop, spec.batch):
        idx = list(range(start, min(start + spec.batch, shard.stop)))
        out.append(sample(denoiser, schedule, [len(idx), *spec.image_shape],
                          sampler=spec.sampler, steps=spec.steps, seed=spec.seed, indices=idx,
                          progress=advance, moments=spec.moments))
    return torch.cat(out)


def simulate_shard(graph, model, mode: str, compare_every: int, spec: SamplingSpec,
                   shard: Shard, reporter) -> dict:
    """``simulate``'s work for ``shard``: the integer chain (its denoiser's call numbers start
    where the single run's would, so the float comparisons fall on the same calls), then the
    float chain from the same noise when there is a float model (``None``: the integer chain
    alone, as ``evaluate --integer`` samples)."""
    import time

    from ..compiler.pipeline import IntegerDenoiser
    from ..diffusion.samplers import model_call_steps

    per_batch = len(model_call_steps(spec.sampler, spec.diffusion_steps, spec.steps))
    den = IntegerDenoiser(graph, mode=mode, float_model=model, compare_every=compare_every,
                          device=spec.device, call_offset=shard.start // spec.batch * per_batch)
    t0 = time.perf_counter()
    tensors = {"integer": sample_batches(den, spec, shard, reporter)}
    t_int = time.perf_counter() - t0
    if model is not None:  # (the float model and the sampler run on the CPU, as in simulate)
        tensors["float"] = sample_batches(model, spec, shard, reporter)
    t_float = time.perf_counter() - t0 - t_int
    return {"tensors": tensors,
            "data": {"counters": den.counters.to_dict(), "errors": den.errors,
                     "agreement": den.agreement,
                     "seconds": {"integer": t_int, "float": t_float}}}
