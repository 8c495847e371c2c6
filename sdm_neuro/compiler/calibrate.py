"""Calibration: the float ranges both quantizers size Loihi 2's fixed point from.

What runs. One float run of the model's graded graph serves both mappings: its populations are
the composed graph's, with the same input currents (equal to float64 rounding, tested), and it
runs each conv of the model once where the composed graph runs every composed path (2.8x less
time on the SDDPM paper configuration). A TSM model's graded graph carries its per-step gains:
it calibrates its composed mapping though the graded mapping cannot deploy it.

Arithmetic. float32, with float64 where a bound says float32 could change the outcome. The
quantizers use ranges only through power-of-two choices (``vth``, bias and weight exponents,
relay scales), each monotone in the ranges once the coarser choices it depends on are fixed; so
if the choices made from every range scaled by ``1 - DECISION_MARGIN`` and by
``1 + DECISION_MARGIN`` are the choices made from the ranges themselves, a perturbation of the
ranges within that margin changes nothing. float32 rounding moves a range by a relative 1e-6 or
less (measured against float64: under 3e-7 on the default model and on the paper configuration;
a spike it flips at the threshold moves a range by one weight at most, and the 128 images'
maxima did not move further). A choice closer to its boundary than the margin recalibrates in
float64. ``graph.meta["calibration_dtype"]`` says which ran.

Memory. The run takes :data:`CALIBRATION_CHUNK` images at a time and keeps ranges only, each
node's output freed after its last reader.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable

import torch
from tqdm import tqdm

from ..ir.graded import GradedGraph
from ..models.unet import SpikingUNet
from .quantize_graph import PopulationStats, threshold_unit

CALIBRATION_CHUNK = 8  # images per float run: the run's memory, not the calibration set
DECISION_MARGIN = 2.0**-10  # relative; float32 moves ranges by < 1e-6

Inputs = list[tuple[torch.Tensor, torch.Tensor]]
Stats = dict[str, PopulationStats | float]  # per population, per relay (max |payload|)


def observe_ranges(run, inputs: Inputs, *, progress: bool = False,
                   desc: str = "calibration") -> dict[str, list[float]]:
    """``run(x, t, observed)`` over ``inputs`` in chunks of :data:`CALIBRATION_CHUNK` images,
    the ranges merged: ``[max v, min v, max |current|, max |bias|]`` per population,
    ``[max |payload|]`` per relay. Maxima and minima over chunks are those over the batch."""
    acc: dict[str, list[float]] = {}
    with tqdm(total=sum(len(xs) for xs, _ in inputs), desc=desc, unit="image",
              disable=not progress) as bar:
        for xs, ts in inputs:
            for i in range(0, len(xs), CALIBRATION_CHUNK):
                seen: dict[str, list[float]] = {}
                run(xs[i:i + CALIBRATION_CHUNK], ts[i:i + CALIBRATION_CHUNK], seen)
                for k, v in seen.items():
                    old = acc.get(k)
                    acc[k] = v if old is None else [min(a, b) if j == 1 else max(a, b)
                                                    for j, (a, b) in enumerate(zip(old, v))]
                bar.update(len(xs[i:i + CALIBRATION_CHUNK]))
    return acc


def measure(graph: GradedGraph, inputs: Inputs, dtype: torch.dtype, *,
            progress: bool = False) -> Stats:
    """Ranges of the float graded ``graph``'s run on ``inputs``: per population
    :class:`PopulationStats` (in threshold units; the bias over every t, not only the calibration
    ones), per relay the largest |payload part| (float units)."""
    from ..simulators.graded_float import run_float_graded

    # the kernels in the run's dtype once, not once per chunk (the model's size per chunk)
    graph = graph.replace(connections=tuple(
        dataclasses.replace(c, weight=c.weight.to(dtype)) if c.weight is not None else c
        for c in graph.connections))

    def run(x, t, seen):
        run_float_graded(graph, x, t, observe=seen, keep=False, dtype=dtype)

    acc = observe_ranges(run, inputs, progress=progress,
                         desc=f"calibration ({str(dtype).removeprefix('torch.')})")
    out: Stats = {r.name: acc[r.name][0] for r in graph.relays}
    tables = graph.host.temb_table
    for pop in graph.populations:
        v_max, v_min, drive, bias = acc[pop.name]
        if pop.temb_block is not None:
            full = pop.bias.abs().max() + tables[pop.temb_block].abs().max().double()
            bias = max(bias, float(full))
        u = threshold_unit(pop.threshold)
        out[pop.name] = PopulationStats(v_max / u, v_min / u, drive / u, bias / u)
    return out


def scaled(stats: Stats, factor: float) -> Stats:
    """Every range times ``factor``."""
    return {k: factor * v if isinstance(v, float) else PopulationStats(
        *(factor * f for f in dataclasses.astuple(v))) for k, v in stats.items()}


def decisive(choose: Callable[[Stats], object], stats: Stats) -> bool:
    """Whether ``choose`` (ranges -> the quantizer's discrete choices) is constant on ranges
    within :data:`DECISION_MARGIN` of ``stats``."""
    mid = choose(stats)
    return all(choose(scaled(stats, 1 + s * DECISION_MARGIN)) == mid for s in (-1, 1))


class Calibration:
    """The calibration of one model on one input set. Its float run's ranges are measured once
    per dtype and serve both mappings (``energy-report`` and a graded export build both); the
    float graph it runs is not kept (its float64 weights are the model's size twice over)."""

    def __init__(self, model: SpikingUNet, inputs: Inputs, *, progress: bool = False) -> None:
        self.model, self.inputs, self.progress = model, inputs, progress
        self._stats: dict[torch.dtype, Stats] = {}

    def float_graph(self) -> GradedGraph:
        """The float graded graph the ranges are measured on (lowered anew: about a second)."""
        from .lower_graded import lower_graded

        return lower_graded(copy.deepcopy(self.model).double())

    def ranges(self, choose: Callable[[Stats], object], graph: GradedGraph | None = None
               ) -> tuple[Stats, torch.dtype]:
        """(ranges, the dtype they were measured in) for a quantizer whose discrete choices are
        ``choose(ranges)``: float32, float64 when ``choose`` is not :func:`decisive` on them.
        ``graph``: :meth:`float_graph`, when the caller has it."""
        for dtype in (torch.float32, torch.float64):
            stats = self.measured(dtype, graph)
            if dtype == torch.float64 or decisive(choose, stats):
                return stats, dtype
        raise AssertionError("unreachable")

    def measured(self, dtype: torch.dtype = torch.float32, graph: GradedGraph | None = None
                 ) -> Stats:
        """The ranges of the float run in ``dtype`` (run now unless done)."""
        if dtype not in self._stats:
            self._stats[dtype] = measure(graph or self.float_graph(), self.inputs, dtype,
                                         progress=self.progress)
        return self._stats[dtype]


def stamped(graph, dtype: torch.dtype):
    """``graph`` with the dtype its ranges were measured in (``meta["calibration_dtype"]``)."""
    return graph.replace(meta={**graph.meta, "calibration_dtype": str(dtype).removeprefix(
        "torch.")})


def as_calibration(model: SpikingUNet, calibration: Calibration | Inputs) -> Calibration:
    """``calibration``, or a new :class:`Calibration` of ``model`` on those inputs."""
    if isinstance(calibration, Calibration):
        if calibration.model is not model:
            raise ValueError("the calibration is another model's")
        return calibration
    return Calibration(model, calibration)
