"""The Loihi 2 target against the integer simulator: every population's spikes of one denoising
call, run in Lava's own bit-accurate process models (LIFReset, Sparse, DelaySparse under
Loihi2SimCfg(select_tag='fixed_pt')), equal the hardware-timed simulation exactly. Lava's inputs
(the bias mantissas) and the eps read from its spikes come from the tests' own host code
(conftest.independent_bias / independent_decode), not from the simulator's; the comparison is
conftest's ``assert_lava_bit_exact``. Skips when Lava is not installed (fails under CI=true)."""

import sys

import pytest
import torch

from sdm_neuro import SpikingUNet, UNetConfig
from sdm_neuro.compiler.pipeline import build_integer_graph, calibration_inputs
from sdm_neuro.errors import ExportError
from sdm_neuro.export.lava_compat import lava_unavailable

if (_why := lava_unavailable()) is not None:
    pytest.skip(_why, allow_module_level=True)

from sdm_neuro.export.lava_process import run_child

pytestmark = pytest.mark.timeout(600)


@pytest.mark.parametrize("seed, cfg, threshold", [
    (0, UNetConfig(ch=4, ch_mult=(1, 2), num_res_blocks=1, img_ch=1, snn_steps=3, img_size=8), None),
    (1, UNetConfig(ch=2, ch_mult=(1, 1, 2), num_res_blocks=2, img_ch=2, snn_steps=2, img_size=8),
     0.8),  # threshold guidance
])
def test_random_small_configurations_are_bit_exact(randomized, host_reference,
                                                   assert_lava_bit_exact, seed, cfg, threshold):
    torch.manual_seed(seed)
    model = randomized(SpikingUNet(cfg).eval(), seed)
    if threshold is not None:
        model.set_threshold(threshold)
    images = torch.rand(64, cfg.img_ch, cfg.img_size, cfg.img_size) * 2 - 1
    graph = build_integer_graph(model, calibration_inputs(images, count=32, batch_size=16))
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, cfg.img_ch, cfg.img_size, cfg.img_size, generator=g) * 2 - 1
    assert_lava_bit_exact(graph, x, torch.tensor([7, 640]), host_reference)


def test_tsm_models_are_bit_exact_through_time_gated_relays(randomized, host_reference,
                                                            assert_lava_bit_exact,
                                                            tiny_config_ch4_t3):
    """SDM's TSM with threshold guidance: per-step weights through relays and clocks, per-step
    biases set by the host (one sample: Lava runs TSM one step at a time, about 40 s)."""
    from sdm_neuro.ir.graph import relayed

    cfg = tiny_config_ch4_t3.replace(tsm=True)
    torch.manual_seed(3)
    model = randomized(SpikingUNet(cfg).eval(), 3)
    model.set_threshold(0.9)
    graph = build_integer_graph(model, calibration_inputs(torch.rand(32, 1, 8, 8) * 2 - 1,
                                                          count=32, batch_size=16))
    assert all(relayed(p) for p in graph.projections if p.dst != "host")
    assert len(set(graph.host.pixel_gain)) > 1  # the stem's bias changes per step too
    x = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(3)) * 2 - 1
    assert_lava_bit_exact(graph, x, torch.tensor([870]), host_reference)


def test_split_matrix_with_a_negative_weight_exp_is_bit_exact(randomized, host_reference,
                                                              assert_lava_bit_exact,
                                                              tiny_config_ch4_t3):
    """A folded upsample matrix beyond the 8-bit range is split into several Sparse processes,
    and with weight_exp < 0 each floors its own sum in Lava: the split must keep the floor of
    the whole sum, as the simulator computes it. Forced here: large taps, weight_exp -3."""
    import dataclasses

    from sdm_neuro.export.lava_synapses import connection_matrix, weight_parts

    cfg = tiny_config_ch4_t3
    torch.manual_seed(0)
    model = randomized(SpikingUNet(cfg).eval(), 0)
    images = torch.rand(64, cfg.img_ch, cfg.img_size, cfg.img_size) * 2 - 1
    graph = build_integer_graph(model, calibration_inputs(images, count=32, batch_size=16))
    i, up = next((i, p) for i, p in enumerate(graph.projections)
                 if p.upsample > 1 and p.dst != "host")
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, cfg.img_ch, cfg.img_size, cfg.img_size, generator=g) * 2 - 1
    # taps of one sign mostly, so folded sums leave [-256, 254]; odd multiples of 2 so every
    # remainder class mod 8 occurs
    w = 2 * torch.randint(40, 128, up.weight.shape, generator=g)
    w[..., 0, 0] *= -1
    projs = list(graph.projections)
    projs[i] = dataclasses.replace(up, weight_int=w.to(torch.int16), weight_exp=-3)
    graph = graph.replace(projections=tuple(projs))
    m = connection_matrix(projs[i], graph.population(up.src).shape,
                          graph.population(up.dst).shape)
    assert len(weight_parts(m, -3)) > 1  # the case under test: a split matrix
    assert_lava_bit_exact(graph, x, torch.tensor([7, 640]), host_reference)


def test_a_hung_lava_run_is_killed_at_its_timeout():
    with pytest.raises(ExportError, match="did not finish within 1 s"):
        run_child([sys.executable, "-c", "import time; time.sleep(60)"], 1)
