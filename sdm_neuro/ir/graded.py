"""The graded deployment graph: the U-Net as Loihi 2 is meant to run it, with shared convolution
kernels and graded spikes (``../shared/reference/lava-graded-and-conv.md``).

Beside the composed :class:`~sdm_neuro.ir.graph.DeployGraph` (every analog tensor composed away,
one explicit synapse matrix per pair of spiking layers), this mapping keeps the model's layers:

* :class:`~sdm_neuro.ir.graph.Population` - an IF layer (a Lava ``LIFReset``), as in the composed
  graph; its inputs are integer sums of binary spikes and graded payloads.
* :class:`Relay` - an analog tensor held as an integer payload sent every step as a graded spike
  (a Lava ``GradedVec`` with ``vth = 0``): the residual stream after every block (the skips of
  the decoder are these tensors read again later), the 2x nearest upsample of a layer's spikes,
  and the delayed copies the schedule inserts. A relay sums its inputs and adds no constant and no
  delay, so the constant part of an analog tensor (BatchNorm shifts, conv biases) is carried
  here as ``bias`` and folded into whatever reads the relay: value = payload * scale + bias.
* :class:`Connection` - one of the model's convolutions with its own (shared) kernel
  (``kind = "conv"``, a Lava ``Conv``), an identity from a relay into a relay or an IF layer
  (``"identity"``, a ``Sparse`` / ``DelaySparse`` with one synapse per neuron, the only
  connection that can carry a delay), or the fan-out of a 2x nearest upsample (``"upsample"``).

Fixed point (filled by :mod:`sdm_neuro.compiler.quantize_graded`): a conv stores 8-bit even
weights ``weight_int`` with ``weight_exp >= 0`` (Lava's Conv ignores ``weight_exp``: the backend
passes ``weight_int << weight_exp``, recipe R1 of the reference); an identity has weight 1 and
``weight_exp`` k, i.e. ``floor(payload * 2**k)`` (Sparse's arithmetic shift).
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
from .graph import HostStages, NeuronParams, Population

MAPPINGS = ("composed", "graded")  # the two Loihi 2 mappings: DeployGraph, GradedGraph
GRADED_FORMAT = "sdm-neuro-graded-graph"
GRADED_VERSION = 1
CONNECTION_KINDS = ("conv", "identity", "upsample")
RELAY_KINDS = ("sum", "upsample", "delay")


@dataclass(frozen=True, eq=False)
class Relay:
    name: str                          # the tensor it holds, e.g. "downblocks.0" (a block output)
    shape: tuple[int, int, int]        # (C, H, W)
    bias: torch.Tensor                 # [T_snn, C] float64 constant the payload leaves out
    kind: str = "sum"                  # "sum", "upsample" (0/1 payloads), "delay" (a copy)
    scale: float | None = None         # float units of one payload LSB (after quantization)
    offset: int = 0                    # hardware-timed mode: first global step of its window

    @property
    def neurons(self) -> int:
        c, h, w = self.shape
        return c * h * w

    @property
    def binary(self) -> bool:
        """Whether its payloads are 0/1 spikes (an upsample copy), not integers."""
        return self.kind == "upsample"


@dataclass(frozen=True, eq=False)
class Connection:
    src: str                           # a population or relay
    dst: str                           # a population or relay
    kind: str                          # "conv", "identity" or "upsample"
    weight: torch.Tensor | None = None  # conv: [C_dst, C_src, k, k] float64 (model units;
    #                                    float32 once quantized: weight_int is what runs)
    stride: int = 1
    dst_channel: int = 0               # identity: first destination channel (skip concatenation)
    weight_int: torch.Tensor | None = None  # conv: int16 even mantissas in [-256, 254]
    weight_exp: int | None = None      # conv: >= 0; identity: k of floor(payload * 2**k)
    delay: int = 0                     # identity: extra synaptic delay in hardware timing
    gain: tuple[float, ...] = ()       # conv: SDM's TSM gain per SNN step, float graphs only
    #                                    (calibration): the graded quantizer refuses it

    @property
    def kernel(self) -> int:
        return self.weight.shape[-1] if self.weight is not None else 1

    @property
    def padding(self) -> int:
        return self.kernel // 2

    def effective_weight(self) -> torch.Tensor:
        """The integer kernel Lava's Conv computes with: ``weight_int << weight_exp`` (int64)."""
        return self.weight_int.to(torch.int64) << self.weight_exp


@dataclass(frozen=True, eq=False)
class GradedGraph:
    config: UNetConfig
    populations: tuple[Population, ...]
    relays: tuple[Relay, ...]
    connections: tuple[Connection, ...]
    order: tuple[str, ...]             # every population and relay, in topological order
    output: str                        # the relay the host decoder reads
    host: HostStages
    meta: dict[str, Any] = field(default_factory=dict)

    mapping = "graded"

    def node(self, name: str) -> Population | Relay:
        for n in self.populations:
            if n.name == name:
                return n
        for n in self.relays:
            if n.name == name:
                return n
        raise KeyError(name)

    def population(self, name: str) -> Population:
        return next(p for p in self.populations if p.name == name)

    def relay(self, name: str) -> Relay:
        return next(r for r in self.relays if r.name == name)

    def is_relay(self, name: str) -> bool:
        return any(r.name == name for r in self.relays)

    def inputs(self, dst: str) -> list[Connection]:
        return [c for c in self.connections if c.dst == dst]

    def outputs(self, src: str) -> list[Connection]:
        return [c for c in self.connections if c.src == src]

    def nodes(self) -> list[Population | Relay]:
        return [self.node(n) for n in self.order]

    @property
    def quantized(self) -> bool:
        return (all(p.lif is not None for p in self.populations)
                and all(c.weight_exp is not None for c in self.connections
                        if c.kind != "upsample"))

    def replace(self, **changes: Any) -> GradedGraph:
        return dataclasses.replace(self, **changes)

    # -- serialization -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        def fields(x) -> dict[str, Any]:
            d = {f.name: getattr(x, f.name) for f in dataclasses.fields(x)}
            if "shape" in d:
                d["shape"] = list(d["shape"])
            if d.get("lif") is not None:
                d["lif"] = dataclasses.asdict(d["lif"])
            return d

        h = self.host
        return {"format": GRADED_FORMAT, "format_version": GRADED_VERSION,
                "config": self.config.to_dict(), "meta": self.meta, "output": self.output,
                "order": list(self.order),
                "populations": [fields(p) for p in self.populations],
                "relays": [fields(r) for r in self.relays],
                "connections": [fields(c) for c in self.connections],
                "host": {"pixel_weight": h.pixel_weight, "pixel_gain": list(h.pixel_gain),
                         "temb_table": h.temb_table, "tail": h.tail, "tail_bias": h.tail_bias}}

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str = "graph") -> GradedGraph:
        check_format(d.get("format"), d.get("format_version"), expected=GRADED_FORMAT,
                     supported_max=GRADED_VERSION, where=source,
                     what=f"a graded deployment graph of format version {GRADED_VERSION}",
                     error=CheckpointError)
        try:
            pops = tuple(Population(**{**p, "shape": tuple(p["shape"]),
                                       "lif": NeuronParams(**p["lif"]) if p["lif"] else None})
                         for p in d["populations"])
            relays = tuple(Relay(**{**r, "shape": tuple(r["shape"])}) for r in d["relays"])
            conns = tuple(Connection(**c) for c in d["connections"])
            h = d["host"]
            host = HostStages(h["pixel_weight"], tuple(h["pixel_gain"]),
                              dict(h["temb_table"]), dict(h["tail"]), h["tail_bias"])
            graph = cls(UNetConfig.from_dict(d["config"], source=source), pops, relays, conns,
                        tuple(d["order"]), d["output"], host, dict(d.get("meta") or {}))
        except (KeyError, TypeError) as e:
            raise CheckpointError(f"{source}: malformed graded deployment graph ({e}).") from None
        check_graded(graph, source)
        return graph

    def save(self, path: str | Path) -> Path:
        from ..fileio import write_atomic

        payload = self.to_dict()
        return write_atomic(path, lambda tmp: torch.save(payload, tmp))

    @classmethod
    def load(cls, path: str | Path) -> GradedGraph:
        from ..checkpoint import load_torch_file

        return cls.from_dict(load_torch_file(Path(path)), source=str(path))


def check_graded(graph: GradedGraph, source: str = "graph") -> None:
    """Structural checks: known kinds, every endpoint a node, ``order`` topological."""
    names = [p.name for p in graph.populations] + [r.name for r in graph.relays]
    if sorted(names) != sorted(graph.order) or len(set(names)) != len(names):
        raise CheckpointError(f"{source}: graded graph order does not list every node once.")
    pos = {n: i for i, n in enumerate(graph.order)}
    for r in graph.relays:
        if r.kind not in RELAY_KINDS:
            raise CheckpointError(f"{source}: relay {r.name}: unknown kind {r.kind!r} "
                                  f"(one of {', '.join(RELAY_KINDS)}).")
    for c in graph.connections:
        where = f"{source}: connection {c.src} -> {c.dst}"
        if c.kind not in CONNECTION_KINDS:
            raise CheckpointError(f"{where}: unknown kind {c.kind!r} "
                                  f"(one of {', '.join(CONNECTION_KINDS)}).")
        if c.src not in pos or c.dst not in pos:
            raise CheckpointError(f"{where}: an endpoint is not a node of the graph.")
        if pos[c.src] >= pos[c.dst]:
            raise CheckpointError(f"{where}: the graph order is not topological.")
    if graph.output not in pos or not graph.is_relay(graph.output):
        raise CheckpointError(f"{source}: the host output {graph.output!r} is not a relay.")


def graded_table(graph: GradedGraph, stats: dict[str, dict] | None = None):
    """A rich Table, one row per node in order: kind, shape, inputs, integer parameters and
    (with ``stats``, e.g. simulate's per-layer report) activity and agreement."""
    from rich.table import Table

    table = Table(title=f"graded graph: {len(graph.populations)} IF layers, "
                        f"{len(graph.relays)} relays, {len(graph.connections)} connections",
                  title_justify="left")
    for col in ("node", "kind", "C x H x W", "neurons", "in", "vth / scale", "bias_exp",
                "offset", "max delay"):
        table.add_column(col, justify="left" if col == "node" else "right")
    if stats:
        table.add_column("rate", justify="right")
        table.add_column("agree", justify="right")
    for node in graph.nodes():
        ins = graph.inputs(node.name)
        relay = isinstance(node, Relay)
        row = [node.name, f"relay:{node.kind}" if relay else "IF",
               " x ".join(map(str, node.shape)), f"{node.neurons:,}", str(len(ins)),
               (f"{node.scale:.3g}" if node.scale else "-") if relay else
               (str(node.lif.vth) if node.lif else "-"),
               "-" if relay or not node.lif else str(node.lif.bias_exp), str(node.offset),
               str(max((c.delay for c in ins), default=0))]
        if stats:
            st = stats.get(node.name, {})
            rate = st.get("payload_rate" if relay else "spike_rate", 0)
            agree = st.get("spike_agreement_with_float")
            row += [f"{rate:.3f}", "-" if agree is None else f"{agree:.3f}"]
        table.add_row(*row)
    return table
