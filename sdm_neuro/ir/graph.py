"""The deployment graph: a typed, frozen IR of a denoiser as neuromorphic hardware runs it.

* :class:`Population` - one spiking layer (one Lava LIF process: du, dv, vth are per process),
  with its constant per-step, per-channel bias current and the per-call inputs the host sets
  (the time embedding of ResBlock ``neuron2`` layers, the pixel conv of the stem).
* :class:`Projection` - synapses from one population's spikes to another population (or to the
  host decoder): a conv (optionally after a 2x nearest upsample), weights with BatchNorm, 1x1
  shortcuts and skip concatenations already composed in, one gain per SNN step (SDM's TSM).
* :class:`HostStages` - the float work left to the host: the pixel conv, the time-embedding
  lookup table, the decoder tail (and the sampler update, done by the caller).

Weights are float64 after lowering; quantization fills the integer fields (``weight_int``,
``weight_exp``, ``NeuronParams``) and returns a new graph.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import UNetConfig
from ..errors import CheckpointError
from ..formats import check_format
from .fixed_point import NO_LEAK_DV, NO_SYNAPTIC_MEMORY_DU

GRAPH_FORMAT = "sdm-neuro-deploy-graph"
GRAPH_VERSION = 1
HOST = "host"  # the destination of projections read by the host decoder


@dataclass(frozen=True)
class NeuronParams:
    """Lava LIF process parameters (``PyLifModelBitAcc``): IF neurons are ``du = 4095`` (no
    synaptic memory) and ``dv = 0`` (no leak); ``bias_exp`` is per process here."""

    vth: int
    bias_exp: int
    du: int = NO_SYNAPTIC_MEMORY_DU
    dv: int = NO_LEAK_DV


@dataclass(frozen=True, eq=False)
class Population:
    name: str                          # the reference module name, e.g. "downblocks.0.neuron1"
    shape: tuple[int, int, int]        # (C, H, W)
    threshold: float                   # float firing threshold (threshold guidance changes it)
    bias: torch.Tensor                 # [T_snn, C] float64 constant input current per step
    temb_block: str | None = None      # this ResBlock's temb projection adds per call
    pixel_input: bool = False          # the stem: the pixel conv adds per call, per neuron
    scale: float | None = None         # float units of one membrane LSB (after quantization)
    lif: NeuronParams | None = None
    offset: int = 0                    # hardware-timed mode: first global step of its window

    @property
    def neurons(self) -> int:
        c, h, w = self.shape
        return c * h * w


@dataclass(frozen=True, eq=False)
class Projection:
    src: str
    dst: str                           # a population name or HOST
    weight: torch.Tensor               # [C_dst, C_src, k, k] float64
    stride: int = 1
    upsample: int = 1                  # 2: nearest x2 upsample of the spikes before the conv
    gain: tuple[float, ...] = ()       # per SNN step multiplier (TSM); () means all ones
    weight_int: torch.Tensor | None = None   # int16, even values in [-256, 254]
    weight_exp: int | None = None
    delay: int = 0                     # extra synaptic delay in hardware-timed mode

    @property
    def kernel(self) -> int:
        return self.weight.shape[-1]

    @property
    def padding(self) -> int:
        return self.kernel // 2

    def gain_at(self, step: int) -> float:
        return self.gain[step] if self.gain else 1.0


@dataclass(frozen=True, eq=False)
class HostStages:
    """Float parameters of the host-side work."""

    pixel_weight: torch.Tensor         # [C, img_ch, 3, 3] float64, BatchNorm folded (its bias
    pixel_gain: tuple[float, ...]      # is the stem population's); TSM gain per step (() = 1)
    temb_table: dict[str, torch.Tensor]  # block -> [diffusion_steps, C] float32 (the MLP, per t)
    tail: dict[str, torch.Tensor]      # tail_bn / tail_conv / T_output_layer / last_bn tensors
    tail_bias: torch.Tensor            # [T_snn, C] float64 constant part of the decoder input


@dataclass(frozen=True, eq=False)
class DeployGraph:
    config: UNetConfig
    populations: tuple[Population, ...]    # topological order
    projections: tuple[Projection, ...]
    host: HostStages
    meta: dict[str, Any] = field(default_factory=dict)

    def population(self, name: str) -> Population:
        for p in self.populations:
            if p.name == name:
                return p
        raise KeyError(name)

    def inputs(self, dst: str) -> list[Projection]:
        return [p for p in self.projections if p.dst == dst]

    def nodes(self) -> list[Population]:
        """Everything that runs a window (the populations; the graded graph adds relays)."""
        return list(self.populations)

    @property
    def quantized(self) -> bool:
        return all(p.lif is not None for p in self.populations)

    def replace(self, **changes: Any) -> DeployGraph:
        return dataclasses.replace(self, **changes)

    # -- serialization -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        def pop(p: Population) -> dict[str, Any]:
            d = {f.name: getattr(p, f.name) for f in dataclasses.fields(p)}
            d["lif"] = dataclasses.asdict(p.lif) if p.lif else None
            d["shape"] = list(p.shape)
            return d

        def proj(p: Projection) -> dict[str, Any]:
            d = {f.name: getattr(p, f.name) for f in dataclasses.fields(p)}
            d["gain"] = list(p.gain)
            return d

        h = self.host
        return {"format": GRAPH_FORMAT, "format_version": GRAPH_VERSION,
                "config": self.config.to_dict(), "meta": self.meta,
                "populations": [pop(p) for p in self.populations],
                "projections": [proj(p) for p in self.projections],
                "host": {"pixel_weight": h.pixel_weight, "pixel_gain": list(h.pixel_gain), "temb_table": h.temb_table,
                         "tail": h.tail, "tail_bias": h.tail_bias}}

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str = "graph") -> DeployGraph:
        check_format(d.get("format"), d.get("format_version"), expected=GRAPH_FORMAT,
                     supported_max=GRAPH_VERSION, where=source,
                     what=f"a deployment graph of format version {GRAPH_VERSION}",
                     error=CheckpointError)
        try:
            pops = tuple(Population(**{**p, "shape": tuple(p["shape"]),
                                       "lif": NeuronParams(**p["lif"]) if p["lif"] else None})
                         for p in d["populations"])
            projs = tuple(Projection(**{**p, "gain": tuple(p["gain"])})
                          for p in d["projections"])
            h = d["host"]
            host = HostStages(h["pixel_weight"], tuple(h["pixel_gain"]),
                              dict(h["temb_table"]), dict(h["tail"]), h["tail_bias"])
            return cls(UNetConfig.from_dict(d["config"], source=source), pops, projs, host,
                       dict(d.get("meta") or {}))
        except (KeyError, TypeError) as e:
            raise CheckpointError(f"{source}: malformed deployment graph ({e}).") from None

    def save(self, path: str | Path) -> Path:
        from ..fileio import write_atomic

        payload = self.to_dict()
        return write_atomic(path, lambda tmp: torch.save(payload, tmp))

    @classmethod
    def load(cls, path: str | Path) -> DeployGraph:
        from ..checkpoint import load_torch_file

        return cls.from_dict(load_torch_file(Path(path)), source=str(path))


def relayed(proj: Projection) -> bool:
    """Whether ``proj`` has per-step weights (TSM gains that differ), so that on Loihi 2 it runs
    through time-gated relays (one more step of latency; :mod:`sdm_neuro.export.lava_runtime`)."""
    w = proj.weight_int
    return w is not None and w.dim() == 5 and not bool((w == w[:1]).all())


def latency(proj: Projection) -> int:
    """Time steps from a spike to its delivery, before the synaptic delay."""
    return 2 if relayed(proj) else 1


def is_scheduled(graph) -> bool:
    """Whether the schedule pass gave the graph (either mapping) its offsets and delays."""
    return any(n.offset for n in graph.nodes())


def call_length(graph) -> int:
    """Time steps of one denoising call on a scheduled graph (either mapping): the last window's
    end."""
    return max(n.offset for n in graph.nodes()) + graph.config.snn_steps



def graph_table(graph: DeployGraph, stats: dict[str, dict] | None = None):
    """A rich Table, one row per population: shape, inputs, synapses, integer parameters and
    (when ``stats`` is given, e.g. simulate's per-layer report) activity and agreement."""
    from rich.table import Table

    from .connectivity import synapses  # connectivity imports this module

    shapes = {p.name: p.shape for p in graph.populations}
    table = Table(title=f"deployment graph: {len(graph.populations)} populations, "
                        f"{len(graph.projections)} projections", title_justify="left")
    for col in ("population", "C x H x W", "neurons", "in", "synapses", "vth", "bias_exp",
                "w_exp", "offset", "max delay"):
        table.add_column(col, justify="left" if col == "population" else "right")
    if stats:
        table.add_column("spike rate", justify="right")
        table.add_column("agree", justify="right")
    for pop in graph.populations:
        ins = graph.inputs(pop.name)
        syn = sum(synapses(p, shapes[p.src]) for p in ins)
        exps = sorted({p.weight_exp for p in ins if p.weight_exp is not None})
        row = [pop.name, " x ".join(map(str, pop.shape)), f"{pop.neurons:,}", str(len(ins)),
               f"{syn:,}", str(pop.lif.vth) if pop.lif else "-",
               str(pop.lif.bias_exp) if pop.lif else "-",
               ",".join(map(str, exps)) or "-", str(pop.offset),
               str(max((p.delay for p in ins), default=0))]
        if stats:
            st = stats.get(pop.name, {})
            agree = st.get("spike_agreement_with_float")
            row += [f"{st.get('spike_rate', 0):.3f}", "-" if agree is None else f"{agree:.3f}"]
        table.add_row(*row)
    return table
