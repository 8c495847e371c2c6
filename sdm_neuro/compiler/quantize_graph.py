"""Quantization to Loihi 2 / Lava fixed point, calibrated on data.

Per population (one LIF process, so one ``vth``): the membrane LSB ``q`` (float units) is set so
that the largest membrane value and input current seen in calibration, with a margin, fit the
24-bit ``v`` and ``u``: ``V = (2**23 - 1) / (64 R)`` with R the range in membrane units, rounded
down to a power of two, and ``q = unit / (64 V)`` (the threshold compare is ``v > vth << 6``),
where ``unit`` is the power of two nearest the threshold. The threshold itself is
``vth = round(V * threshold / unit)``: a threshold of 1 (or any power of two) is ``vth = V``,
and threshold guidance (0.998, a per-layer map) moves ``vth`` alone, at a resolution of 1 / V
of the threshold, while every weight and bias stays the integer it is at threshold 1. (Scaling
``q`` with the threshold instead would move 8-bit weights by 0.2%, under half an LSB for most.)
Per projection (one ``weight_exp``): 8-bit weights, even integers in [-256, 254] so Lava's
truncation is a no-op; ``W ~= W_int * 64 * 2**exp * q`` (the LIF adds ``a_in << 6``), with the
smallest exponent that fits the largest weight. Per population ``bias_exp`` fits the largest bias
current (constant + time embedding over all t + pixel conv on the calibration images) in the
13-bit mantissa.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from ..errors import ConfigError
from ..ir.fixed_point import (ACT_SHIFT, BIAS_EXP_MAX, BIAS_MAX, V_MAX, VTH_MAX, VTH_SHIFT,
                              WEIGHT_EXP_RANGE, WEIGHT_MAX, WEIGHT_MIN)
from ..ir.graph import DeployGraph, NeuronParams

MARGIN = 1.25  # headroom over the calibrated ranges (a quantization choice, not a format limit)


def threshold_unit(threshold: float) -> float:
    """The membrane unit of a population: the power of two nearest its threshold. Ranges are
    measured in it and its LSB is a power of two fraction of it, so neither moves with threshold
    guidance (a threshold within a factor sqrt(2) of it)."""
    if not (math.isfinite(threshold) and threshold > 0):
        raise ConfigError(f"a threshold must be a finite number > 0 (got {threshold}).")
    return 2.0 ** round(math.log2(threshold))


@dataclass(frozen=True)
class PopulationStats:
    """Float calibration statistics of one population, in its :func:`threshold_unit`."""

    v_max: float        # largest membrane value before the threshold test
    v_min: float
    drive_max: float    # largest |input current| in one step
    bias_max: float     # largest |per-call bias current|


def even_round(w: torch.Tensor, lsb: float) -> tuple[torch.Tensor, int]:
    """Even integers nearest to ``w / lsb``, clipped to [-256, 254]; and how many clipped."""
    q = 2 * torch.round(w / (2 * lsb))
    clipped = int(((q < WEIGHT_MIN) | (q > WEIGHT_MAX)).sum())
    return q.clamp(WEIGHT_MIN, WEIGHT_MAX).to(torch.int16), clipped


def quantize_weight(weight: torch.Tensor, q: float, gain: tuple[float, ...] = (), *,
                    exp_min: int = WEIGHT_EXP_RANGE[0]) -> tuple[torch.Tensor, int, int]:
    """``weight`` (float, per-step ``gain`` for TSM) onto a destination whose membrane LSB is
    ``q``: ``(w_int, weight_exp, clipped)`` with ``weight * gain ~= w_int * 64 * 2**exp * q``.
    The exponent is the smallest that clips nothing (``top``) or one or two below it, which clip
    the few largest weights for a finer step: whichever has the least squared weight error.
    ``exp_min``: the smallest exponent allowed (0 for a Lava Conv, which has none)."""
    wmax = float(weight.abs().max()) * max(map(abs, gain or (1.0,)))
    top = (exp_min if wmax == 0 else
           min(WEIGHT_EXP_RANGE[1], max(exp_min, math.ceil(
               math.log2(wmax / (WEIGHT_MAX * (1 << ACT_SHIFT) * q))))))
    target = torch.stack([weight * g for g in gain]) if gain else weight
    best = None
    for exp in range(top, max(exp_min, top - 2) - 1, -1):
        lsb = (1 << ACT_SHIFT) * q * 2.0**exp
        if gain:  # TSM: one integer weight set per SNN step
            parts = [even_round(weight * g, lsb) for g in gain]
            w_int, clipped = torch.stack([w for w, _ in parts]), sum(c for _, c in parts)
        else:
            w_int, clipped = even_round(weight, lsb)
        err = float(((w_int.double() * lsb - target) ** 2).sum())
        if best is None or err < best[0]:
            best = (err, w_int, exp, clipped)
    return best[1], best[2], best[3]


@dataclass(frozen=True)
class NeuronChoice:
    """The fixed point of one population: ``vth``, membrane LSB ``q``, ``bias_exp``."""

    vth: int
    q: float
    bias_exp: int
    range_thresholds: float
    bias_clipped_expected: bool


def choose_neuron(name: str, threshold: float, st: PopulationStats, wmaxes: list[float]
                  ) -> NeuronChoice:
    """``vth``, ``q`` and ``bias_exp`` of one population whose incoming weights have the float
    magnitudes ``wmaxes`` (each must fit 254 << 7 membrane LSBs); ``st`` in its unit.

    Everything but ``vth`` follows from the ranges and the unit alone, so threshold guidance
    within the unit leaves every integer weight and bias as it is. The range's ``1.0 +`` is the
    unit standing for the threshold (v reaches threshold + drive before it fires): guidance up
    to the MARGIN above the unit fits the membrane still."""
    try:
        unit = threshold_unit(threshold)
    except ConfigError as e:
        raise ConfigError(f"population {name}: {e}") from None
    frac = threshold / unit  # in [0.71, 1.42): what vth carries
    rng = max(1.0 + st.drive_max, st.v_max, -st.v_min, st.drive_max) * MARGIN
    # (vth = V * frac stays under VTH_MAX: V <= 2**16 once a power of two, frac < 1.42)
    vu = min(VTH_MAX, math.floor(V_MAX / ((1 << VTH_SHIFT) * rng)))
    # The largest weight must fit 254 * 64 * 2**7 membrane LSBs: bounds V from above.
    for wmax in wmaxes:
        if wmax > 0:
            vu = min(vu, math.floor(unit * WEIGHT_MAX * 2 ** WEIGHT_EXP_RANGE[1] / wmax))
    # The bias (13-bit mantissa << at most 7) is the tightest range on Loihi: the largest
    # bias current must fit 4095 << 7 membrane LSBs, which also bounds V.
    if st.bias_max > 0:
        vu = min(vu, math.floor(BIAS_MAX * 2**BIAS_EXP_MAX
                                / ((1 << VTH_SHIFT) * st.bias_max)))
    # A power of two: every population's membrane LSB is then 2**-k, so equal float weights
    # reaching different populations (the identity residual path) quantize to equal integers,
    # which the simulator computes once, whatever their thresholds. Costs < 1 bit of v.
    vu = 2 ** math.floor(math.log2(vu)) if vu >= 1 else 0
    if vu < 1:
        raise ConfigError(f"population {name}: weights too large for 8-bit weights "
                          f"with weight_exp <= {WEIGHT_EXP_RANGE[1]}.")
    q = unit / ((1 << VTH_SHIFT) * vu)
    vth = max(1, round(vu * frac))
    bias_lsb = st.bias_max * unit / q
    bias_exp = min(BIAS_EXP_MAX, max(0, math.ceil(math.log2(max(bias_lsb, 1) / BIAS_MAX))))
    return NeuronChoice(vth, q, bias_exp, rng, bias_lsb > BIAS_MAX * 2**BIAS_EXP_MAX)


def incoming_weight_max(graph: DeployGraph) -> dict[str, list[float]]:
    """Per population, the largest |float weight| (times its TSM gain) of each projection in."""
    out: dict[str, list[float]] = {p.name: [] for p in graph.populations}
    for p in graph.projections:
        if p.dst in out:
            out[p.dst].append(float(p.weight.abs().max()) * max(map(abs, p.gain or (1.0,))))
    return out


def neuron_choices(graph: DeployGraph, stats: dict[str, PopulationStats],
                   wmaxes: dict[str, list[float]]) -> dict[str, NeuronChoice]:
    """Every population's :class:`NeuronChoice`: the only use the quantizer makes of ranges
    (``wmaxes``: :func:`incoming_weight_max`)."""
    return {p.name: choose_neuron(p.name, p.threshold, stats[p.name], wmaxes[p.name])
            for p in graph.populations}


def quantize(graph: DeployGraph, choices: dict[str, NeuronChoice]) -> DeployGraph:
    """Integer parameters for every population and projection (host projections stay float),
    from the populations' :func:`neuron_choices`."""
    pops, projs, report = [], list(graph.projections), {}
    for pop in graph.populations:
        incoming = [i for i, p in enumerate(projs) if p.dst == pop.name]
        n = choices[pop.name]
        clipped_w = 0
        for i in incoming:
            p = projs[i]
            w_int, exp, clipped = quantize_weight(p.weight, n.q, p.gain)
            clipped_w += clipped
            projs[i] = dataclasses.replace(p, weight_int=w_int, weight_exp=exp)
        pops.append(dataclasses.replace(pop, scale=n.q, lif=NeuronParams(vth=n.vth,
                                                                        bias_exp=n.bias_exp)))
        report[pop.name] = {"vth": n.vth, "scale": n.q, "bias_exp": n.bias_exp,
                            "range_thresholds": n.range_thresholds,
                            "weights_clipped": clipped_w,
                            "bias_clipped_expected": n.bias_clipped_expected}
    meta = {**graph.meta, "quantization": report}
    return graph.replace(populations=tuple(pops), projections=tuple(projs), meta=meta)
