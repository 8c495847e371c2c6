"""Per-layer threshold guidance in the integer graphs: it moves vth alone (every integer weight
and bias stays), at a resolution of 1/V, and the integer spikes follow the float model's."""

import pytest
import torch

from sdm_neuro import SpikingUNet, UNetConfig
from sdm_neuro.compiler.calibrate import Calibration
from sdm_neuro.compiler.pipeline import build_integer_graph
from sdm_neuro.compiler.quantize_graded import build_graded_graph
from sdm_neuro.models.thresholds import ThresholdMap, apply_threshold_map
from sdm_neuro.simulators.graded import GradedSimulator
from sdm_neuro.simulators.integer import Counters, IntegerSimulator

CFG = UNetConfig(ch=8, ch_mult=(1, 2), num_res_blocks=1, img_ch=1, snn_steps=4, img_size=8)
GUIDANCE = ThresholdMap("test", (("downblocks.*", 0.8), ("upblocks.*", 1.2)))


def _inputs(n, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 1, 8, 8, generator=g),
            torch.randint(0, 1000, (n,), generator=g))


def _integer_spikes(graph, mapping, x, t):
    c = Counters()
    sim = IntegerSimulator(graph) if mapping == "composed" else GradedSimulator(graph)
    sim(x, t, c)
    return dict(c.spikes)


def _float_spikes(model, x, t):
    model.record_spikes(True)
    with torch.no_grad():
        model(x, t)
    out = {k: float(v.sum()) for k, v in model.recorded_spikes().items()}
    model.record_spikes(False)
    return out


def _integers(graph, mapping):
    if mapping == "composed":
        return [(p.weight_int, p.weight_exp) for p in graph.projections
                if p.weight_int is not None]
    return [(c.weight_int, c.weight_exp) for c in graph.connections]


@pytest.mark.parametrize("mapping", ["composed", "graded"])
def test_guidance_moves_vth_alone(mapping, randomized):
    build = build_integer_graph if mapping == "composed" else build_graded_graph
    model = randomized(SpikingUNet(CFG), 0).eval()
    cal = Calibration(model, [_inputs(8, s) for s in (1, 2)])
    plain = build(model, cal)
    apply_threshold_map(model, GUIDANCE)
    guided = build(model, cal)

    for (w0, e0), (w1, e1) in zip(_integers(plain, mapping), _integers(guided, mapping),
                                  strict=True):
        assert e0 == e1 and (w0 is None or torch.equal(w0, w1))
    for p0, p1 in zip(plain.populations, guided.populations, strict=True):
        assert p1.scale == p0.scale and p1.lif.bias_exp == p0.lif.bias_exp
        assert p0.lif.vth * 64 * p0.scale == 1.0  # threshold 1: vth = V
        assert p1.lif.vth == round(p0.lif.vth * p1.threshold)  # V x threshold, rounded
    changed = {p.name for p in guided.populations if p.threshold != 1.0}
    assert changed == {n for n, _ in model.neurons() if n.startswith(("downblocks", "upblocks"))}


@pytest.mark.parametrize("mapping", ["composed", "graded"])
def test_the_integer_spikes_follow_the_float_model(mapping, randomized):
    """The stem (its input is the pixel conv, the same at every threshold) at thresholds 0.8,
    1 and 1.2: it fires less as its threshold rises, in float and integer alike, and the integer
    count stays within a few percent of the float one."""
    build = build_integer_graph if mapping == "composed" else build_graded_graph
    model = randomized(SpikingUNet(CFG), 0).eval()
    cal = Calibration(model, [_inputs(8, s) for s in (1, 2)])
    build(model, cal)
    x, t = _inputs(6, 5)
    counts = []
    for level in (0.8, 1.0, 1.2):
        model.set_threshold(1.0)
        apply_threshold_map(model, ThresholdMap("stem", (("neuron", level),)))
        graph = build(model, cal)
        counts.append((_float_spikes(model, x, t)["neuron"],
                       _integer_spikes(graph, mapping, x, t)["neuron"]))
    floats, ints = zip(*counts)
    assert floats[0] > floats[1] > floats[2] and ints[0] > ints[1] > ints[2], counts
    for f, i in counts:
        assert abs(i - f) <= 0.02 * f, counts
