"""The quantization rules the README states, each checked against numbers this file computes
itself (from the float graph and Lava's documented limits), not against the quantizer's own
report: power-of-two thresholds whose calibrated range fits the 24-bit membrane, bias exponents
at most 7 and no larger than needed, even 8-bit weights, and the least-squares weight exponent;
and the integer simulator's batch-size invariance."""

import math

import numpy as np
import pytest
import torch

from sdm_neuro import SpikingUNet
from sdm_neuro.compiler.pipeline import build_integer_graph, calibration_inputs
from sdm_neuro.simulators.integer import Counters, IntegerSimulator


@pytest.fixture(scope="module", params=[False, True], ids=["sddpm", "tsm"])
def quantized(request, randomized, tiny_config_ch4_t3):
    torch.manual_seed(4)
    model = randomized(SpikingUNet(tiny_config_ch4_t3.replace(tsm=request.param)).eval(), 4)
    images = torch.rand(96, 1, 8, 8) * 2 - 1
    calib = calibration_inputs(images, count=32, batch_size=16)
    return build_integer_graph(model, calib), calib


def test_vth_is_a_power_of_two_within_17_bits(quantized):
    graph, _ = quantized
    for pop in graph.populations:
        vth = pop.lif.vth
        assert vth >= 1 and vth & (vth - 1) == 0, (pop.name, vth)
        assert vth <= 2**17 - 1
        # the membrane LSB is the float threshold over 64 vth (spike: v > vth << 6)
        assert pop.scale == pytest.approx(pop.threshold / (64 * vth), rel=1e-12)


def test_calibrated_range_fits_the_24_bit_state(quantized):
    """On the calibration data itself nothing wraps or saturates: u stays in its 24 bits and v
    never reaches the saturation limit (the range has a margin)."""
    graph, calib = quantized
    sim = IntegerSimulator(graph)
    counters = Counters()
    spikes = 0
    for x, t in calib:
        _, spk = sim(x, t, counters)
        spikes += sum(int(s.sum()) for s in spk.values())
    assert spikes > 0
    assert counters.events.get("u_wrap", 0) == 0
    assert counters.events.get("v_saturate", 0) == 0
    assert counters.events.get("bias_clip", 0) == 0


def test_bias_exp_is_at_most_7_and_no_larger_than_needed(quantized):
    """bias_exp in [0, 7]; for a population without pixel input the per-call bias current over
    every t fits the 13-bit mantissa at bias_exp, and its bound (the largest constant part plus
    the largest time embedding, which the quantizer sizes for) would not at bias_exp - 1."""
    graph, _ = quantized
    checked = 0
    for pop in graph.populations:
        e = pop.lif.bias_exp
        assert 0 <= e <= 7, pop.name
        if pop.pixel_input:
            continue
        cur = pop.bias.double()[:, None, :]  # [T, 1, C]
        bound = float(pop.bias.abs().max())
        if pop.temb_block is not None:
            table = graph.host.temb_table[pop.temb_block].double()
            cur = cur + table[None]  # every t
            bound += float(table.abs().max())
        assert float(cur.abs().max()) / pop.scale / 2**e <= 4095 + 0.5, pop.name
        if e > 0:
            assert bound / pop.scale / 2 ** (e - 1) > 4095, pop.name
            checked += 1
    assert checked > 0  # some population needed an exponent: the minimality was tested


def test_weights_are_even_8_bit_integers(quantized):
    graph, _ = quantized
    for p in graph.projections:
        if p.dst == "host":
            assert p.weight_int is None  # the host decoder stays float
            continue
        w = p.weight_int
        assert w.dtype == torch.int16
        assert int(w.min()) >= -256 and int(w.max()) <= 254, (p.src, p.dst)
        assert not bool((w % 2).any()), (p.src, p.dst)
        assert -8 <= p.weight_exp <= 7


def _even_round(w: np.ndarray, lsb: float) -> np.ndarray:
    return np.clip(2 * np.round(w / (2 * lsb)), -256, 254)


def test_weight_exp_has_the_least_squared_error(quantized):
    """Against the exponents the README names: the smallest that clips nothing and the two
    below it (finer steps that clip the largest weights), each error computed here."""
    graph, _ = quantized
    pops = {p.name: p for p in graph.populations}
    chose_finer = 0
    for p in graph.projections:
        if p.dst == "host":
            continue
        q = pops[p.dst].scale
        w = p.weight.double().numpy()
        target = np.stack([w * g for g in p.gain]) if p.gain else w
        top = math.ceil(math.log2(np.abs(target).max() / (254 * 64 * q)))

        def err(e):
            lsb = 64 * q * 2.0**e
            return float(((_even_round(target, lsb) * lsb - target) ** 2).sum())  # noqa: B023

        errors = {e: err(e) for e in range(max(-8, top - 2), min(top, 7) + 1)}
        assert p.weight_exp in errors
        assert errors[p.weight_exp] == min(errors.values()), (p.src, p.dst, errors)
        # and the integers are those of the chosen exponent
        lsb = 64 * q * 2.0**p.weight_exp
        assert np.array_equal(p.weight_int.numpy(), _even_round(target, lsb).astype(np.int16))
        chose_finer += p.weight_exp < top
    assert chose_finer > 0  # clipping a few weights for a finer step happened somewhere


def test_integer_simulator_is_batch_size_invariant_with_mixed_t(quantized):
    """Each sample's spikes and eps are the same whether it runs alone, in a batch of 2 or of
    5 with other samples at other t."""
    graph, _ = quantized
    sim = IntegerSimulator(graph)
    g = torch.Generator().manual_seed(9)
    x = torch.rand(5, 1, 8, 8, generator=g) * 2 - 1
    t = torch.tensor([999, 3, 500, 3, 250])
    eps_all, spk_all = sim(x, t)
    assert sum(int(s.sum()) for s in spk_all.values()) > 0
    for lo, hi in ((0, 1), (1, 3), (3, 5), (4, 5)):
        eps, spk = sim(x[lo:hi], t[lo:hi])
        assert torch.equal(eps, eps_all[lo:hi]), (lo, hi)
        for name, s in spk.items():
            assert torch.equal(s, spk_all[name][:, lo:hi]), (name, lo, hi)


def test_calibration_set_is_count_images_in_batches_and_the_default_is_unchanged():
    """``--calibration-images N``: N images in batches of at most 32, the last one partial; the
    default (128) draws exactly what the 4 x 32 calibration of earlier bundles drew, transcribed
    here from the DDPM forward process (linear betas 1e-4..0.02 over 1000 steps)."""
    from sdm_neuro.errors import UsageError

    images = torch.rand(50, 1, 8, 8) * 2 - 1
    got = calibration_inputs(images, count=70, seed=3)
    assert [len(t) for _, t in got] == [32, 32, 6]
    assert all(x.shape == (len(t), 1, 8, 8) for x, t in got)
    with pytest.raises(UsageError, match="at least one image"):
        calibration_inputs(images, count=0)

    abar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)
    gen = torch.Generator().manual_seed(0)
    default = calibration_inputs(images)
    assert len(default) == 4
    for x, t in default:
        idx = torch.randint(50, (32,), generator=gen)
        want_t = torch.randint(1000, (32,), generator=gen)
        noise = torch.randn((32, 1, 8, 8), generator=gen)
        a = abar[want_t].view(-1, 1, 1, 1)
        want = (a.sqrt() * images[idx] + (1 - a).sqrt() * noise).float()
        assert torch.equal(t, want_t)
        assert torch.allclose(x, want, atol=1e-6)
