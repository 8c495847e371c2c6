"""Lowering: the float deployment graph reproduces the PyTorch model (spikes and eps)."""

import pytest
import torch

from sdm_neuro import SpikingUNet, UNetConfig
from sdm_neuro.compiler import lower
from sdm_neuro.ir import HOST, DeployGraph
from sdm_neuro.ir.connectivity import fan_out
from sdm_neuro.simulators.float_graph import run_float_graph

CONFIGS = {
    "sddpm": UNetConfig(ch=8, ch_mult=(1, 2), num_res_blocks=1, img_ch=1, snn_steps=4,
                        img_size=8),
    "tsm-3-levels": UNetConfig(ch=8, ch_mult=(1, 2, 2), num_res_blocks=2, img_ch=3,
                               snn_steps=3, img_size=8, tsm=True),
    "no-res-blocks": UNetConfig(ch=4, ch_mult=(1, 2), num_res_blocks=0, img_ch=1, snn_steps=2,
                                img_size=8),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("threshold", [1.0, 0.998])
def test_lowered_graph_reproduces_model(name, threshold, randomized):
    cfg = CONFIGS[name]
    torch.manual_seed(0)
    model = randomized(SpikingUNet(cfg)).double().eval()
    model.set_threshold(threshold)
    graph = lower(model)
    assert [p.name for p in graph.populations] == [n for n, _ in model.neurons()]
    x = torch.randn(3, cfg.img_ch, 8, 8, dtype=torch.float64)
    t = torch.tensor([3, 500, 999])
    model.record_spikes(True)
    with torch.no_grad():
        eps = model(x, t)
    ref = model.recorded_spikes()
    eps_g, spikes = run_float_graph(graph, x, t)
    for layer, s in ref.items():
        assert torch.equal(s.to(torch.float64), spikes[layer]), layer
    assert sum(int(s.sum()) for s in ref.values()) > 0
    torch.testing.assert_close(eps_g, eps, rtol=0, atol=1e-9)


def test_every_analog_tensor_is_gone(randomized):
    """Projections only ever read populations; each population reads only earlier ones."""
    cfg = CONFIGS["tsm-3-levels"]
    graph = lower(randomized(SpikingUNet(cfg)).eval())
    order = {p.name: i for i, p in enumerate(graph.populations)}
    for proj in graph.projections:
        assert proj.src in order
        assert proj.dst == HOST or order[proj.src] < order[proj.dst]
    assert {p.temb_block is not None for p in graph.populations} == {True, False}
    assert [p.name for p in graph.populations if p.pixel_input] == ["neuron"]


def test_graph_round_trips(tmp_path, randomized):
    graph = lower(randomized(SpikingUNet(CONFIGS["sddpm"])).eval())
    back = DeployGraph.load(graph.save(tmp_path / "g.pt"))
    assert [p.name for p in back.populations] == [p.name for p in graph.populations]
    for a, b in zip(graph.projections, back.projections):
        assert (a.src, a.dst, a.stride, a.upsample) == (b.src, b.dst, b.stride, b.upsample)
        assert torch.equal(a.weight, b.weight)


@pytest.mark.parametrize("stride, upsample, hw", [(1, 1, (4, 4)), (2, 1, (4, 4)), (2, 1, (5, 6)),
                                              (1, 2, (4, 4)), (1, 3, (4, 4))])
def test_fan_out_counts_synapses_exactly_at_the_borders(stride, upsample, hw):
    """Against brute force: the output positions each input neuron reaches."""
    from sdm_neuro.ir.graph import Projection

    proj = Projection("a", "b", torch.ones(2, 3, 3, 3, dtype=torch.float64), stride=stride,
                      upsample=upsample)
    h, w = hw
    got = fan_out(proj, (3, h, w))
    from torch.nn import functional as F

    for c in range(3):
        for y in range(h):
            for x in range(w):
                s = torch.zeros(1, 3, h, w, dtype=torch.float64)
                s[0, c, y, x] = 1
                if upsample > 1:
                    s = F.interpolate(s, scale_factor=upsample, mode="nearest")
                taps = F.conv2d(s, torch.ones_like(proj.weight), stride=stride, padding=1)
                # without upsampling every (output, tap) pair is its own synapse; after it, taps
                # from one source block onto one output share a synapse: count outputs reached
                want = taps.sum() if upsample == 1 else (taps > 0).sum()
                assert got[c, y, x] == want, (c, y, x)
