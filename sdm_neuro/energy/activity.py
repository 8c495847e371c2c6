"""Activity of a deployed graph for one image and one denoising call: spikes, synaptic
operations (spikes x true fan-out), neuron updates, host MACs; measured with the integer
simulator at calls spread over the reverse process, or read from ``simulate.json``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from ..deploy.graph import DeployGraph
from ..diffusion import LinearSchedule
from ..diffusion.samplers import model_call_steps
from ..errors import UsageError


@dataclass(frozen=True)
class Activity:
    """Per image and per call (mean over the measured calls)."""

    spikes: Mapping[str, float]        # population -> spikes
    synops: Mapping[str, float]        # "src->dst" -> synaptic operations
    neuron_updates: float
    host_macs: float
    by_t: tuple[dict, ...]             # per measured call: t, spikes, synops, firing rate
    source: str                        # how it was obtained, for the report
    chain: tuple[str, int] | None = None  # (sampler, steps) of the run it was read from

    def synops_into(self, population: str) -> float:
        return sum(v for k, v in self.synops.items() if k.split("->")[1] == population)

    def synops_from(self, population: str) -> float:
        return sum(v for k, v in self.synops.items() if k.split("->")[0] == population)


def trajectory_steps(sampler: str, num_steps: int, steps: int, calls: int) -> list[int]:
    """``calls`` of the sampler's model calls, evenly spread from the first (t near T) to the
    last (t = 0)."""
    chain = model_call_steps(sampler, num_steps, steps)
    if calls < 1:
        raise UsageError(f"--calls must be >= 1 (got {calls}).")
    k = min(calls, len(chain))
    idx = torch.linspace(0, len(chain) - 1, k).round().long().tolist()
    return [chain[i] for i in idx]


def noised_batch(images: torch.Tensor, t: int, batch: int, gen: torch.Generator,
                 schedule: LinearSchedule) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch`` random training images noised to step ``t`` (the forward-process marginal)."""
    idx = torch.randint(len(images), (batch,), generator=gen)
    tt = torch.full((batch,), t)
    x0 = images[idx]
    return schedule.q_sample(x0, tt, torch.randn(x0.shape, generator=gen)), tt


def measure_activity(graph: DeployGraph, images: torch.Tensor, ts: list[int], *,
                     batch: int = 16, seed: int = 0, progress: bool = False) -> Activity:
    """Run the integer simulator once per t in ``ts`` on ``batch`` training images noised to
    that t (the forward-process marginal, which is what a good denoiser sees while sampling)."""
    from tqdm import tqdm

    from ..simulators.integer import Counters, IntegerSimulator

    sim = IntegerSimulator(graph)
    sch = LinearSchedule(num_steps=graph.config.diffusion_steps)
    gen = torch.Generator().manual_seed(seed)
    total = Counters()
    by_t = []
    steps = graph.config.snn_steps
    neurons = sum(p.neurons for p in graph.populations)
    for t in tqdm(ts, desc="activity", unit="call", disable=not progress):
        x, tt = noised_batch(images, t, batch, gen, sch)
        c = Counters()
        sim(x, tt, c)
        spikes = sum(c.spikes.values()) / batch
        by_t.append({"t": t, "spikes": spikes, "synops": sum(c.synops.values()) / batch,
                     "firing_rate": spikes / (neurons * steps),
                     "firing_rate_per_population": {k: v / batch / (graph.population(k).neurons
                                                                     * steps)
                                                    for k, v in c.spikes.items()}})
        for k, v in c.spikes.items():
            total.spikes[k] += v
        for k, v in c.synops.items():
            total.synops[k] += v
        total.neuron_updates += c.neuron_updates
        total.host_macs += c.host_macs
    n = len(ts) * batch
    return Activity({k: v / n for k, v in total.spikes.items()},
                    {k: v / n for k, v in total.synops.items()},
                    total.neuron_updates / n, total.host_macs / n, tuple(by_t),
                    f"measured: integer simulator, {len(ts)} calls at t = "
                    f"{', '.join(map(str, ts))}, {batch} noised training images each")


def activity_from_simulate(path: str | Path) -> Activity:
    """The counters of a ``sdm-neuro simulate`` run (``simulate.json``): the whole chain."""
    path = Path(path)
    try:
        rep = json.loads(path.read_text())
        per_call, batch = rep["counters_per_call"], rep["batch"]
        layers = rep["layers"]
        spikes = {k: v["spikes_per_call"] / batch for k, v in layers.items()}
        return Activity(spikes, {k: v / batch for k, v in per_call["synops"].items()},
                        per_call["neuron_updates"] / batch, per_call["host_macs"] / batch, (),
                        f"{path}: sdm-neuro simulate, {rep['sampler']} {rep['steps']} steps, "
                        f"{rep['num']} samples (every call of the chain)",
                        (rep["sampler"], int(rep["steps"])))
    except FileNotFoundError:
        raise UsageError(f"{path}: no such statistics file") from None
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError) as e:
        raise UsageError(f"{path}: not a simulate.json written by sdm-neuro simulate "
                         f"({type(e).__name__}: {e})") from None
