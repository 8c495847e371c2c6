"""Activity of a deployed graph for one image and one denoising call: spikes, synaptic
operations (spikes x true fan-out), neuron updates, host MACs; measured with the integer
simulator at calls spread over the reverse process, or read from a ``simulate.json`` (by its
reader, beside its writer: ``sdm_neuro.run.simulation.read_simulate_report``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from ..ir.graph import DeployGraph
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
    path: str | None = None            # the file it was read from (for error messages)

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
                     batch: int = 16, seed: int = 0, progress: bool = False,
                     device: str | None = None) -> Activity:
    """Run the integer simulator once per t in ``ts`` on ``batch`` training images noised to
    that t (the forward-process marginal, which is what a good denoiser sees while sampling)."""
    from tqdm import tqdm

    from ..simulators.integer import Counters, IntegerSimulator

    sim = IntegerSimulator(graph, device)
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


def check_activity(activity: Activity, graph: DeployGraph) -> None:
    """Statistics read from a file must be of this model: its populations and projections, a
    chain its diffusion steps allow. A :class:`UsageError` naming the file and key."""
    where = activity.path or activity.source
    pops = {p.name for p in graph.populations}
    unknown, missing = sorted(set(activity.spikes) - pops), sorted(pops - set(activity.spikes))
    if unknown or missing:
        raise UsageError(f"{where}: layers are not this model's populations (unknown: "
                         f"{unknown[:5]}, missing: {missing[:5]}); the statistics are of "
                         "another model.")
    projs = {f"{p.src}->{p.dst}" for p in graph.projections}
    unknown = sorted(set(activity.synops) - projs)
    if unknown:
        raise UsageError(f"{where}: counters_per_call.synops names projections this model does "
                         f"not have: {unknown[:5]}.")
    if activity.chain is not None and activity.chain[1] > graph.config.diffusion_steps:
        raise UsageError(f"{where}: steps is {activity.chain[1]}, more than the model's "
                         f"{graph.config.diffusion_steps} diffusion steps.")
