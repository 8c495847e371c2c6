"""Calibration and quantization of a graded graph to Loihi 2 / Lava fixed point.

Units. Every scale is a power of two, so identities between units are exact shifts (weight 1,
``weight_exp`` k: ``floor(payload * 2**k)``), whatever each population's threshold:

* an IF population: membrane LSB ``q = unit / (64 V)`` and ``vth`` (carrying the threshold's
  fraction) as in the composed quantizer
  (:func:`~sdm_neuro.compiler.quantize_graph.choose_neuron`), with every
  incoming identity from a relay of scale r counted as a weight of 254 r (so its exponent
  ``log2(r / 64 q)`` stays <= 7);
* a relay: payload LSB ``r``, the finest that gives every incoming conv its 8-bit weight
  with a non-negative exponent (Lava's Conv has no exponent; the backend passes
  ``w << e``), coarsened when the calibrated range (with :data:`MARGIN`) would not fit the
  payload width (24 bits on Loihi 2: every graded model in Lava declares precision 24) or when a
  conv would need an exponent above 7. An upsample relay's payloads are spikes (scale 1).

Rounding and saturation, in integers: conv weights round to the nearest even 8-bit mantissa
(clipping counted per connection); identities floor (Sparse's arithmetic shift); IF biases
round to 13-bit mantissas (clipping counted by the simulator as ``bias_clip``). Nothing on a
relay saturates in Lava (GradedVec is int32; each Conv wraps its sum at 24 bits): the simulator
counts ``conv_wrap`` and ``relay_overflow`` (a payload outside the profile's width) instead.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from ..errors import ConfigError
from ..ir.fixed_point import ACT_SHIFT, WEIGHT_EXP_MAX, WEIGHT_EXP_MIN, WEIGHT_MAX
from ..ir.graded import Connection, GradedGraph
from ..ir.graph import NeuronParams
from ..models.unet import SpikingUNet
from .calibrate import Calibration, Inputs, Stats, as_calibration, stamped
from .lower_graded import check_graded_lowerable
from .quantize_graph import MARGIN, NeuronChoice, choose_neuron, quantize_weight

PAYLOAD_BITS = 24  # Loihi 2's graded payload as Lava and Intel's code use it (reference, sec. 5)


def _pow2(x: float, up: bool) -> float:
    """The power of two nearest to ``x`` from above (``up``) or below."""
    k = math.log2(x)
    return 2.0 ** (math.ceil(k) if up else math.floor(k))


def _shift(src_scale: float, dst_unit: float, where: str) -> int:
    """The exponent k of an identity: ``2**k = src_scale / dst_unit`` (both powers of two)."""
    k = round(math.log2(src_scale / dst_unit))
    if not WEIGHT_EXP_MIN <= k <= WEIGHT_EXP_MAX:
        raise ConfigError(f"{where}: identity needs weight_exp {k}, outside "
                          f"[{WEIGHT_EXP_MIN}, {WEIGHT_EXP_MAX}] (scales {src_scale:g} and "
                          f"{dst_unit:g}).")
    return k


def graded_choices(graph: GradedGraph, stats: Stats, payload_bits: int = PAYLOAD_BITS
                   ) -> tuple[dict[str, float], dict[str, NeuronChoice]]:
    """The quantizer's only use of ranges: every relay's payload LSB (float units) and every
    population's :class:`NeuronChoice`."""
    if any(c.gain for c in graph.connections):
        raise ConfigError("the graded mapping cannot quantize TSM convs (per-step gains on a "
                          "shared kernel); use --mapping composed.")
    payload_max = (1 << (payload_bits - 1)) - 1
    scale: dict[str, float] = {}          # relay -> float units of one payload LSB

    def unit_of(src: str) -> float:
        return relay_unit(src) if graph.is_relay(src) else 1.0  # a spike is 1

    def relay_unit(name: str) -> float:
        """A relay's payload LSB (needs only its conv sources' scales and its readers')."""
        if name in scale:
            return scale[name]
        node = graph.relay(name)
        if node.binary:
            scale[name] = 1.0
            return 1.0
        ins = graph.inputs(name)
        convs = [c for c in ins if c.kind == "conv"]
        unit = {c.src: unit_of(c.src) for c in (convs or ins)}
        # The unit is set by the convs: the finest at which each conv's largest weight is a
        # mantissa of 254 with an exponent >= 0. An identity adds a stream at that resolution
        # (its finer bits floor away) and never refines it: refining by every input would make
        # units finer at each block until payloads overflow.
        natural = [float(c.weight.abs().max()) * unit[c.src] / WEIGHT_MAX for c in convs]
        natural = [u for u in natural if u > 0] or [min(unit.values(), default=1.0)]
        r = _pow2(min(natural), up=False)
        # Coarser when: a conv would need an exponent above 7; the calibrated range would not
        # fit the payload width; or a relay reading it through an identity would need a shift
        # below -8 (finer bits it could never use).
        floor_r = max([max(natural) / 2**WEIGHT_EXP_MAX, stats[name] * MARGIN / payload_max]
                      + [relay_unit(c.dst) * 2.0**WEIGHT_EXP_MIN for c in graph.outputs(name)
                         if c.kind == "identity" and graph.is_relay(c.dst)])
        if r < floor_r:
            r = _pow2(floor_r, up=True)
        scale[name] = r
        return r

    for r in graph.relays:  # an upsample relay's payloads are spikes: 1.0
        relay_unit(r.name)
    neurons = {}
    for pop in graph.populations:
        wmaxes = [float(c.weight.abs().max()) if c.kind == "conv"
                  else WEIGHT_MAX * unit_of(c.src) for c in graph.inputs(pop.name)]
        neurons[pop.name] = choose_neuron(pop.name, pop.threshold, stats[pop.name], wmaxes)
    return scale, neurons


def _quantized(c: Connection, weight_int: torch.Tensor, weight_exp: int) -> Connection:
    """``c`` with its integer weights. The float kernel stays as float32: after quantization
    only its shape and an approximate view of the model's values are read (the integer form
    runs), and float64 would double the memory a sampler holds beside its own kernels."""
    return dataclasses.replace(c, weight=c.weight.float(), weight_int=weight_int,
                               weight_exp=weight_exp)


def quantize_graded(graph: GradedGraph, stats: Stats, *, payload_bits: int = PAYLOAD_BITS
                    ) -> GradedGraph:
    """Integer parameters for every population, relay and connection."""
    relay_scale, neurons = graded_choices(graph, stats, payload_bits)
    scale = {**relay_scale, **{p.name: 1.0 for p in graph.populations}}  # node -> output LSB
    conns = {id(c): c for c in graph.connections}
    pops, relays, report = {}, {}, {}

    def src_scale(c: Connection) -> float:
        return scale[c.src]

    for node in graph.nodes():
        ins = graph.inputs(node.name)
        if graph.is_relay(node.name):
            r = scale[node.name]
            if node.binary:
                relays[node.name] = dataclasses.replace(node, scale=r)
                continue
            clipped = 0
            for c in ins:
                if c.kind == "conv":
                    w, e, n = quantize_weight(c.weight * src_scale(c), r / (1 << ACT_SHIFT),
                                              exp_min=0)
                    conns[id(c)] = _quantized(c, w, e)
                    clipped += n
                else:
                    conns[id(c)] = dataclasses.replace(
                        c, weight_exp=_shift(src_scale(c), r, f"{c.src} -> {c.dst}"))
            relays[node.name] = dataclasses.replace(node, scale=r)
            report[node.name] = {"scale": r, "payload_max": stats[node.name] / r,
                                 "weights_clipped": clipped}
            continue
        n = neurons[node.name]
        unit = (1 << ACT_SHIFT) * n.q  # float value of one a_in unit
        clipped = 0
        for c in ins:
            if c.kind == "conv":
                w, e, k = quantize_weight(c.weight * src_scale(c), n.q, exp_min=0)
                conns[id(c)] = _quantized(c, w, e)
                clipped += k
            else:
                conns[id(c)] = dataclasses.replace(
                    c, weight_exp=_shift(src_scale(c), unit, f"{c.src} -> {c.dst}"))
        pops[node.name] = dataclasses.replace(node, scale=n.q, lif=NeuronParams(
            vth=n.vth, bias_exp=n.bias_exp))
        report[node.name] = {"vth": n.vth, "scale": n.q, "bias_exp": n.bias_exp,
                             "range_thresholds": n.range_thresholds, "weights_clipped": clipped,
                             "bias_clipped_expected": n.bias_clipped_expected}
    meta = {**graph.meta, "quantization": report, "payload_bits": payload_bits}
    return graph.replace(populations=tuple(pops[p.name] for p in graph.populations),
                         relays=tuple(relays[r.name] for r in graph.relays),
                         connections=tuple(conns[id(c)] for c in graph.connections), meta=meta)


def build_graded_graph(model: SpikingUNet, calibration: Calibration | Inputs,
                       *, payload_bits: int = PAYLOAD_BITS) -> GradedGraph:
    """Lower to the graded mapping (float64), calibrate on ``calibration`` (see
    :mod:`.calibrate`) and quantize. The host decoder keeps the model's own float32
    parameters."""
    check_graded_lowerable(model)
    calibration = as_calibration(model, calibration)
    graph = calibration.float_graph()
    tail = {k: v.float() for k, v in graph.host.tail.items()}
    graph = graph.replace(host=dataclasses.replace(graph.host, tail=tail))

    def choose(stats):
        scales, neurons = graded_choices(graph, stats, payload_bits)
        return scales, {k: (n.vth, n.bias_exp) for k, n in neurons.items()}

    stats, dtype = calibration.ranges(choose, graph)
    return stamped(quantize_graded(graph, stats, payload_bits=payload_bits), dtype)
