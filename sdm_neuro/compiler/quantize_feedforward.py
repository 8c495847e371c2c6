"""A :class:`FeedForwardSNN` in Loihi 2 / Lava fixed point, calibrated on input data.

Each layer becomes one Lava LIF process (one ``du``, ``dv``, ``vth``, ``bias_exp``) behind one
connection. Per-neuron thresholds and input gains are folded into the incoming weights and the
bias (exact for reset-to-zero neurons: v / threshold obeys the same equations with threshold 1),
so membranes are in threshold units and the LSB is ``q = 1 / (64 vth)``. The integer form is the
one a lava-dl netx file holds (:mod:`sdm_neuro.export.netx`): ``weight_exp = 0`` (netx has no
weight exponent: ``a_in`` is the plain sum of even 8-bit weights, so ``vth <= 254 / max|w|``) and
``bias_exp = 6`` (netx's fixed value: the bias is in ``a_in`` units). The retention ``a`` becomes
``dv = round(4096 (1 - a))`` (Lava decays v by ``(4096 - dv) / 4096``, rounding toward zero);
``du = 4095`` (no synaptic memory). A conv's folded gain must be uniform per output channel and
``a`` per layer, since Lava's conv and LIF hold nothing finer.

Input: binary spikes drive the first connection on chip like every other. Any other input is a
current: the host computes the first synapse in float and sends ``a_in = round(drive * vth)`` per
neuron and step (graded spikes into the first layer).
"""

from __future__ import annotations

import math
import torch

from .quantize_graph import MARGIN, even_round
from ..errors import CheckpointError, ConfigError
from ..ir.feedforward import Layer, QuantizedSNN, QuantLayer, FeedForwardSNN, is_spike_input, run_float
from ..ir.fixed_point import (BIAS_MAX, BIAS_MIN, DECAY_MAX, DECAY_UNITY, V_MAX, VTH_MAX, VTH_SHIFT,
                              WEIGHT_MAX, WEIGHT_MIN)
from ..ir.fixed_point import NETX_BIAS_EXP as BIAS_EXP


def _per_channel(x: torch.Tensor, layer: Layer, what: str) -> torch.Tensor:
    """``x`` [*shape] -> one value per output row (affine) or channel (conv)."""
    if layer.synapse.kind == "affine":
        return x.reshape(-1)
    flat = x.reshape(x.shape[0], -1)
    if not torch.allclose(flat, flat[:, :1].expand_as(flat), rtol=1e-12, atol=0):
        raise ConfigError(f"layer {layer.name!r}: {what} varies within a channel; a conv's "
                          f"weights are shared across positions, so it must be one value per "
                          f"output channel.")
    return flat[:, 0]


def fold(layer: Layer) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(weights, bias per neuron, input gain per neuron) in threshold units."""
    n, shape, syn = layer.neurons, layer.shape, layer.synapse
    scale = torch.broadcast_to(n.gain / n.threshold, shape)
    rows = _per_channel(scale, layer, "the input gain r / threshold")
    w = syn.weight * rows.reshape(-1, *[1] * (syn.weight.dim() - 1))
    bias = (scale * syn.bias.reshape(-1, *[1] * (len(shape) - 1))
            + torch.broadcast_to(n.leak / n.threshold, shape))
    return w, bias, scale


def to_state(qnet: QuantizedSNN) -> dict:
    """The integer parameters, for ``torch.save`` (tensors and plain values only)."""
    return {"spike_input": qnet.spike_input, "report": qnet.report,
            "layers": [{"name": q.layer.name, "weight_int": q.weight_int,
                        "bias_mant": q.bias_mant, "vth": q.vth, "dv": q.dv}
                       for q in qnet.layers]}


_REPORT_KEYS = ("vth", "dv", "bias_exp", "weight_exp", "on_chip_synapse", "weights_clipped",
                "retention_float", "retention_int", "range_thresholds")


def _int_in(row: dict, key: str, lo: int, hi: int, at: str) -> int:
    v = row.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise CheckpointError(f"{at}: {key} is {v!r}; expected an integer in [{lo}, {hi}].")
    return v


def _int_tensor(row: dict, key: str, dtype: torch.dtype, shape: tuple[int, ...], lo: int,
                hi: int, at: str) -> torch.Tensor:
    t = row.get(key)
    if not isinstance(t, torch.Tensor) or t.layout != torch.strided or t.dtype != dtype \
            or tuple(t.shape) != tuple(shape):
        got = (f"{t.dtype} {tuple(t.shape)}" if isinstance(t, torch.Tensor)
               else type(t).__name__)
        raise CheckpointError(f"{at}: {key} is {got}; expected a {dtype} tensor of shape "
                              f"{tuple(shape)}.")
    if t.numel() and (int(t.min()) < lo or int(t.max()) > hi):
        raise CheckpointError(f"{at}: {key} has values in [{int(t.min())}, {int(t.max())}]; "
                              f"expected [{lo}, {hi}].")
    return t


def _layer_report(report: dict, name: str, expect: dict, at: str) -> dict:
    """The stored report row of one layer: plain finite scalars, agreeing with the integer
    parameters it describes (it is what reports print)."""
    row = report.get(name) if isinstance(report, dict) else None
    if not isinstance(row, dict) or set(_REPORT_KEYS) - set(row):
        raise CheckpointError(f"{at}: no complete report (keys {', '.join(_REPORT_KEYS)}).")
    for k, v in row.items():
        if not isinstance(v, (bool, int, float)) or not math.isfinite(v):
            raise CheckpointError(f"{at}: report {k} is {v!r}; expected a finite number.")
    for k, v in expect.items():
        if row[k] != v:
            raise CheckpointError(f"{at}: report {k} is {row[k]!r}, the parameters say {v!r}.")
    return dict(row)


def from_state(net: FeedForwardSNN, state: dict, *, source: str = "state") -> QuantizedSNN:
    """:func:`to_state`'s inverse for the float network ``net`` it was made from. Every value
    is checked (types, shapes, Lava's ranges, the report against the parameters): a
    :class:`CheckpointError` naming ``source``, the layer and the key otherwise."""
    rows = state.get("layers") if isinstance(state, dict) else None
    spike_input = state.get("spike_input") if isinstance(state, dict) else None
    report = state.get("report") if isinstance(state, dict) else None
    if not isinstance(rows, list) or not isinstance(spike_input, bool) \
            or not isinstance(report, dict) or not isinstance(report.get("layers"), dict):
        raise CheckpointError(f"{source}: not the integer parameters of a sequential network "
                              f"(expected keys layers [list], spike_input [bool], report "
                              f"[with layers]).")
    names = [r.get("name") if isinstance(r, dict) else None for r in rows]
    if names != [layer.name for layer in net.layers]:
        raise CheckpointError(f"{source}: its layers {names} are not the network's "
                              f"{[layer.name for layer in net.layers]}.")
    layers, out_report = [], {}
    for i, (r, layer) in enumerate(zip(rows, net.layers, strict=True)):
        at = f"{source}: layer {layer.name!r}"
        w, _, scale = fold(layer)
        w_int = _int_tensor(r, "weight_int", torch.int16, tuple(w.shape), WEIGHT_MIN,
                            WEIGHT_MAX, at)
        if bool((w_int % 2 != 0).any()):  # Lava's 8-bit weights are even (netx, truncation)
            raise CheckpointError(f"{at}: weight_int has odd values; expected even integers.")
        bias = _int_tensor(r, "bias_mant", torch.int64, layer.shape, BIAS_MIN, BIAS_MAX, at)
        vth, dv = _int_in(r, "vth", 1, VTH_MAX, at), _int_in(r, "dv", 0, DECAY_MAX, at)
        out_report[layer.name] = _layer_report(report["layers"], layer.name, {
            "vth": vth, "dv": dv, "bias_exp": BIAS_EXP, "weight_exp": 0,
            "on_chip_synapse": i > 0 or spike_input}, at)
        layers.append(QuantLayer(layer, w, w_int, bias, vth, dv, scale))
    return QuantizedSNN(net, tuple(layers), spike_input,
                        {"layers": out_report, "spike_input": spike_input})


def quantize_feedforward(net: FeedForwardSNN, calibration: torch.Tensor) -> QuantizedSNN:
    """Integer parameters for ``net`` from its float ranges on ``calibration`` [T, B, *in]."""
    observed: dict[str, tuple[float, ...]] = {}
    run_float(net, calibration, observe=observed)
    spike_input = is_spike_input(calibration)
    layers, report = [], {}
    for i, layer in enumerate(net.layers):
        n, shape = layer.neurons, layer.shape
        a = torch.broadcast_to(n.retention, shape)
        if not torch.allclose(a, a.reshape(-1)[:1].expand_as(a), rtol=1e-12, atol=0):
            raise ConfigError(f"layer {layer.name!r}: the membrane retention (tau) differs "
                              f"between neurons; Lava's LIF has one dv per process.")
        dv = round(DECAY_UNITY * (1 - float(a.reshape(-1)[0])))
        if not 0 <= dv <= DECAY_MAX:
            raise ConfigError(f"layer {layer.name!r}: retention {float(a.reshape(-1)[0]):.6g} "
                              f"per step gives dv = {dv}; Lava's dv is in [0, {DECAY_MAX}], so "
                              f"tau must be at least dt * {DECAY_UNITY} / {DECAY_MAX + 0.5}.")
        w, bias, scale = fold(layer)
        v_max, v_min, drive, _ = observed[layer.name]
        rng = max(1.0 + drive, v_max, -v_min) * MARGIN
        vth = min(VTH_MAX, math.floor(V_MAX / ((1 << VTH_SHIFT) * rng)))
        on_chip = i > 0 or spike_input
        wmax = float(w.abs().max()) if on_chip else 0.0
        if wmax > 0:  # the largest weight must be 254 at weight_exp 0
            vth = min(vth, math.floor(WEIGHT_MAX / wmax))
        bmax = float(bias.abs().max())
        if bmax > 0:  # the bias mantissa (<< 6) must fit 13 bits
            vth = min(vth, math.floor(BIAS_MAX / bmax))
        if vth < 1:
            raise ConfigError(f"layer {layer.name!r}: weights or bias too large for Loihi's "
                              f"ranges (largest weight {wmax:.3g}, bias {bmax:.3g} thresholds "
                              f"per step; both must stay below {WEIGHT_MAX} and "
                              f"{BIAS_MAX} LSBs at vth 1).")
        mant = torch.round(bias * vth).to(torch.int64)  # units of 2**BIAS_EXP LSBs = 1/vth
        if on_chip:
            w_int, clipped = even_round(w * vth, 1.0)
        else:  # host synapse: no chip weights
            w_int, clipped = torch.zeros_like(w, dtype=torch.int16), 0
        layers.append(QuantLayer(layer, w, w_int, mant, vth, dv, scale))
        report[layer.name] = {
            "vth": vth, "dv": dv, "bias_exp": BIAS_EXP, "weight_exp": 0,
            "on_chip_synapse": on_chip, "weights_clipped": clipped,
            "retention_float": float(a.reshape(-1)[0]), "retention_int": (DECAY_UNITY - dv) / DECAY_UNITY,
            "range_thresholds": rng}
    return QuantizedSNN(net, tuple(layers), spike_input, {"layers": report,
                                                          "spike_input": spike_input})
