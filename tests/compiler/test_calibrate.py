"""Calibration: one float32 run of the graded graph gives both quantizers the choices a float64
run of their own graph gives; a choice near its boundary recalibrates in float64.

The references run the float graphs directly (``run_float_graph`` / ``run_float_graded``,
float64) and turn their observations into ranges here, not through :mod:`calibrate`."""

import copy
import math

import pytest
import torch

from sdm_neuro import SpikingUNet, UNetConfig
from sdm_neuro.compiler import calibrate as cal
from sdm_neuro.compiler.lower import lower
from sdm_neuro.compiler.lower_graded import lower_graded
from sdm_neuro.compiler.pipeline import build_integer_graph, calibration_inputs
from sdm_neuro.compiler.quantize_graded import build_graded_graph, quantize_graded
from sdm_neuro.compiler.quantize_graph import (PopulationStats, incoming_weight_max,
                                               neuron_choices, quantize)
from sdm_neuro.simulators.float_graph import run_float_graph
from sdm_neuro.simulators.graded_float import run_float_graded

CFG = UNetConfig(ch=8, ch_mult=(1, 2), num_res_blocks=2, img_ch=1, snn_steps=4, img_size=8)


def _inputs(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 1000, (n,), generator=g))


def _reference_stats(graph, inputs, run) -> dict:
    """float64 ranges of ``run`` (one call per batch), merged here."""
    merged = {}
    for x, t in inputs:
        seen = {}
        run(graph, x, t, observe=seen)
        for k, v in seen.items():
            old = merged.get(k, v)
            merged[k] = [max(a, b) if j != 1 else min(a, b) for j, (a, b) in enumerate(zip(old, v))]
    out = {}
    for k, v in merged.items():
        if len(v) == 1:
            out[k] = v[0]
            continue
        pop = next(p for p in graph.populations if p.name == k)
        bias = v[3]
        if pop.temb_block is not None:
            bias = max(bias, float(pop.bias.abs().max()
                                   + graph.host.temb_table[pop.temb_block].abs().max()))
        th = pop.threshold
        out[k] = PopulationStats(v[0] / th, v[1] / th, v[2] / th, bias / th)
    return out


def _f64(model):
    return copy.deepcopy(model).double()


@pytest.fixture(scope="module")
def model(randomized):
    torch.manual_seed(3)
    return randomized(SpikingUNet(CFG).eval(), 3)


@pytest.mark.parametrize("tsm", [False, True], ids=["sddpm", "tsm"])
def test_graded_run_observes_the_composed_populations(tsm, model, randomized):
    """Same populations, same ranges (float64 rounding apart): the composed quantizer may read
    the graded run (TSM included: its graded float graph carries the per-step gains)."""
    if tsm:
        torch.manual_seed(5)
        model = randomized(SpikingUNet(CFG.replace(tsm=True)).eval(), 5)
    inputs = [_inputs(6, 1)]
    composed = _reference_stats(lower(_f64(model)), inputs, run_float_graph)
    graded = _reference_stats(lower_graded(_f64(model)), inputs, run_float_graded)
    assert set(composed) <= set(graded) and composed
    for name, st in composed.items():
        for a, b in zip(st.__dict__.values(), graded[name].__dict__.values()):
            assert a == pytest.approx(b, rel=1e-12, abs=1e-12), name


def _same_integers(a, b) -> bool:
    def ints(g):
        out = [(p.name, p.lif) for p in g.populations]
        for p in getattr(g, "connections", None) or g.projections:
            out.append((p.weight_exp, None if p.weight_int is None else p.weight_int.tolist()))
        out += [(r.name, r.scale) for r in getattr(g, "relays", ())]
        return out
    return ints(a) == ints(b)


@pytest.mark.parametrize("which", ["random", "shipped"])
def test_float32_calibration_chooses_what_float64_does(which, model):
    """Both mappings, against a float64 run of each mapping's own graph."""
    if which == "shipped":
        from sdm_neuro.assets import default_model_path
        from sdm_neuro.checkpoint import load_model
        from sdm_neuro.data import load_dataset

        m, _ = load_model(default_model_path())
        inputs = calibration_inputs(load_dataset("digits", img_size=16).images)
    else:
        m, inputs = model, [_inputs(16, 2), _inputs(16, 5)]
    shared = cal.Calibration(m, inputs)  # one float run for both mappings
    composed, graded = build_integer_graph(m, shared), build_graded_graph(m, shared)
    assert set(shared._stats) == {torch.float32}
    assert composed.meta["calibration_dtype"] == graded.meta["calibration_dtype"] == "float32"
    ref = lower(_f64(m))
    ref_q = quantize(ref, neuron_choices(ref, _reference_stats(ref, inputs, run_float_graph),
                                         incoming_weight_max(ref)))
    assert _same_integers(composed, ref_q)
    ref_g = lower_graded(_f64(m))
    assert _same_integers(graded, quantize_graded(ref_g, _reference_stats(
        ref_g, inputs, lambda g, x, t, observe: run_float_graded(g, x, t, observe=observe))))


def test_a_choice_near_its_boundary_recalibrates_in_float64(model):
    graph = lower_graded(_f64(model))
    inputs = [_inputs(4, 7)]
    f32 = cal.measure(graph, inputs, torch.float32)
    f64 = cal.measure(graph, inputs, torch.float64)
    name = graph.populations[1].name
    edge = f32[name].v_max  # a choice whose boundary is the float32 range itself

    calibration = cal.Calibration(model, inputs)
    stats, dtype = calibration.ranges(lambda s: s[name].v_max >= edge)
    assert dtype == torch.float64 and stats == f64
    far = edge * (1 + 4 * cal.DECISION_MARGIN)
    stats, dtype = calibration.ranges(lambda s: s[name].v_max >= far)
    assert dtype == torch.float32 and stats == f32
    # float32 moved the ranges by far less than the margin
    for k, v in f32.items():
        a = [v] if isinstance(v, float) else list(v.__dict__.values())
        b = [f64[k]] if isinstance(v, float) else list(f64[k].__dict__.values())
        for x, y in zip(a, b):
            assert math.isclose(x, y, rel_tol=cal.DECISION_MARGIN / 64, abs_tol=1e-9), k


def test_tsm_calibrates_its_composed_mapping_on_the_graded_float_graph(randomized):
    torch.manual_seed(5)
    m = randomized(SpikingUNet(CFG.replace(tsm=True)).eval(), 5)
    inputs = [_inputs(16, 1)]
    graph = build_integer_graph(m, inputs)
    assert graph.meta["calibration_dtype"] == "float32"
    ref = lower(_f64(m))
    ref_q = quantize(ref, neuron_choices(ref, _reference_stats(ref, inputs, run_float_graph),
                                         incoming_weight_max(ref)))
    assert _same_integers(graph, ref_q)
