"""The integer simulator against an independent numpy int64 reimplementation of the quantized
graph (direct convolution loops, Lava's LIF formulas), and the float32-exactness bound."""

import numpy as np
import pytest
import torch

from sdm_neuro import SpikingUNet
from sdm_neuro.ir import HOST
from sdm_neuro.ir.graph import Projection
from sdm_neuro.compiler.pipeline import build_integer_graph, calibration_inputs
from sdm_neuro.simulators.float_graph import project
from sdm_neuro.simulators.integer import (
    FLOAT32_EXACT,
    Counters,
    IntegerSimulator,
    accumulation_bound,
    check_exact_accumulation,
)


def _np_conv(spk: np.ndarray, w: np.ndarray, stride: int, up: int) -> np.ndarray:
    """[N, Ci, H, W] int64 x [Co, Ci, k, k] int64 -> [N, Co, Ho, Wo], by explicit taps."""
    if up > 1:
        spk = spk.repeat(up, axis=2).repeat(up, axis=3)
    n, ci, h, wd = spk.shape
    co, _, k, _ = w.shape
    pad = k // 2
    xp = np.zeros((n, ci, h + 2 * pad, wd + 2 * pad), np.int64)
    xp[:, :, pad:pad + h, pad:pad + wd] = spk
    ho, wo = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
    out = np.zeros((n, co, ho, wo), np.int64)
    for dy in range(k):
        for dx in range(k):
            patch = xp[:, :, dy:dy + stride * ho:stride, dx:dx + stride * wo:stride]
            out += np.einsum("oc,nchw->nohw", w[:, :, dy, dx], patch)
    return out


def _np_lif(a_in, bias, vth, bias_exp):
    """Lava PyLifModelBitAcc with du=4095, dv=0, written from the formulas: u = a_in << 6,
    one wrap into (-2**23, 2**23], v += u + bias << exp, clip, spike v > vth << 6, reset."""
    steps = a_in.shape[0]
    u = np.zeros(a_in.shape[1:], np.int64)
    v = np.zeros(a_in.shape[1:], np.int64)
    out = np.zeros(a_in.shape, bool)
    for s in range(steps):
        x = u * (4096 - 4096)
        u = np.sign(x) * (np.abs(x) >> 12) + (a_in[s] << 6)
        u = np.where(u > 2**23, u - 2**24, u)
        u = np.where(u <= -(2**23), u + 2**24, u)
        v = np.clip(v + u + (bias[s] << bias_exp), -(2**23 - 1), 2**23 - 1)
        out[s] = v > (vth << 6)
        v[out[s]] = 0
    return out


def _reference(graph, x, t, independent_bias):
    steps, batch = graph.config.snn_steps, x.shape[0]
    biases = independent_bias(graph, x, t)
    spikes = {}
    for pop in graph.populations:
        c, h, w = pop.shape
        a_in = np.zeros((steps, batch, c, h, w), np.int64)
        for p in graph.inputs(pop.name):
            src = spikes[p.src].astype(np.int64)
            for s in range(steps):
                wi = p.weight_int[s] if p.weight_int.dim() == 5 else p.weight_int
                acc = _np_conv(src[s], wi.numpy().astype(np.int64), p.stride, p.upsample)
                e = p.weight_exp
                a_in[s] += acc << e if e >= 0 else acc >> -e
        spikes[pop.name] = _np_lif(a_in, biases[pop.name], pop.lif.vth, pop.lif.bias_exp)
    return spikes


@pytest.fixture
def graphs(randomized, tiny_config_ch4_t3):
    out = {}
    for tsm in (False, True):
        torch.manual_seed(1)
        model = randomized(SpikingUNet(tiny_config_ch4_t3.replace(tsm=tsm)).eval())
        images = torch.rand(64, 1, 8, 8) * 2 - 1
        out[tsm] = build_integer_graph(model, calibration_inputs(images, count=32,
                                                                 batch_size=16))
    return out


@pytest.mark.parametrize("tsm", [False, True])
def test_simulator_matches_independent_int64_reference(graphs, host_reference, tsm):
    graph = graphs[tsm]
    x = torch.rand(3, 1, 8, 8) * 2 - 1
    t = torch.tensor([0, 400, 999])
    counters = Counters()
    _, spikes = IntegerSimulator(graph)(x, t, counters)
    ref = _reference(graph, x, t, host_reference[0])
    total = 0
    for name, s in ref.items():
        assert np.array_equal(spikes[name].numpy(), s), name
        total += int(s.sum())
    assert total > 0 and counters.spikes[graph.populations[0].name] > 0
    assert sum(counters.synops.values()) > 0


def test_float32_accumulation_exact_at_the_bound():
    """The largest accumulation the simulator runs in float32 (all inputs spiking, every
    weight -256: |sum| = 2**24 - 256) is exact; one more tap of 256 would need float64."""
    cin = (FLOAT32_EXACT // 256 - 1) // 9  # 7281 input channels x 9 taps x 256 < 2**24
    w = torch.full((2, cin, 3, 3), -256, dtype=torch.int16)
    w[1] = 254
    proj = Projection("a", "b", w.double(), weight_int=w, weight_exp=0)
    assert accumulation_bound(proj) == 256 * 9 * cin < FLOAT32_EXACT
    assert check_exact_accumulation(proj) == torch.float32
    spk = torch.ones(1, 1, cin, 3, 3)
    got = project(proj, spk, w.float()).to(torch.int64)
    want = _np_conv(spk[0].numpy().astype(np.int64), w.numpy().astype(np.int64), 1, 1)
    assert np.array_equal(got[0].numpy(), want)
    assert int(got[0, 0, 0, 1, 1]) == -256 * 9 * cin
    big = Projection("a", "b", w.double(), weight_int=torch.full((1, cin + 1, 3, 3), -256,
                                                                  dtype=torch.int16))
    assert check_exact_accumulation(big) == torch.float64


def test_host_projections_stay_float(graphs):
    assert all(p.weight_int is None for p in graphs[False].projections if p.dst == HOST)
    assert all(p.weight_int is not None for p in graphs[False].projections if p.dst != HOST)


@pytest.mark.parametrize("tsm", [False, True])
def test_hardware_timed_mode_equals_ideal_mode(graphs, tsm):
    from sdm_neuro.simulators.timed import TimedSimulator
    from sdm_neuro.ir.graph import call_length, relayed
    from sdm_neuro.compiler.schedule import schedule

    graph = graphs[tsm]
    timed = schedule(graph)
    offsets = {p.name: p.offset for p in timed.populations}
    for p in timed.projections:  # every path into a population lines up (TSM: + relay step)
        if p.dst != HOST:
            assert relayed(p) == tsm
            assert offsets[p.src] + (2 if tsm else 1) + p.delay == offsets[p.dst]
    assert call_length(timed) == max(offsets.values()) + graph.config.snn_steps
    x = torch.rand(3, 1, 8, 8) * 2 - 1
    t = torch.tensor([0, 400, 999])
    c_ideal, c_timed = Counters(), Counters()
    eps_i, spk_i = IntegerSimulator(graph)(x, t, c_ideal)
    eps_t, spk_t = TimedSimulator(timed)(x, t, c_timed)
    assert torch.equal(eps_i, eps_t)
    for name in spk_i:
        assert torch.equal(spk_i[name], spk_t[name]), name
    assert dict(c_ideal.synops) == dict(c_timed.synops)


@pytest.mark.parametrize("tsm", [False, True])
def test_upsample_kernel_equals_conv_after_nearest_upsample(tsm: bool) -> None:
    """The folded 4x4 transposed-conv kernel gives exactly conv3x3(upsample2x(s)) on binary
    spikes."""
    from sdm_neuro.simulators.integer import conv_upsampled, upsample_kernel

    g = torch.Generator().manual_seed(3)
    w = (torch.randint(-128, 128, ((2,) if tsm else ()) + (5, 3, 3, 3), generator=g) * 2)
    s = (torch.rand(4, 3, 6, 7, generator=g) < 0.4).double()
    kernel = upsample_kernel(w.double())
    for k in range(2 if tsm else 1):
        wk, kk = (w[k], kernel[k]) if tsm else (w, kernel)
        ref = torch.nn.functional.conv2d(
            torch.nn.functional.interpolate(s, scale_factor=2, mode="nearest"), wk.double(),
            padding=1)
        assert torch.equal(conv_upsampled(s, kk), ref)


@pytest.mark.parametrize("tsm", [False, True])
def test_timed_layer_by_layer_equals_a_global_step_loop(graphs, host_reference, tsm):
    """Every population's spikes at every global step (outside the windows too) and the
    any-step events equal a loop over global steps written here in numpy int64, sharing no
    helper with the simulator: at step tau a projection delivers its source's step
    tau - latency - delay (latency 1, 2 through TSM's relays; numpy convs, Lava's shifts), then
    every IF population updates as Lava's LIF with du 4095, dv 0 (u = a_in << 6 wrapped once
    into (-2**23, 2**23], v += u + bias << bias_exp clipped to 24 bits, spike v > vth << 6,
    reset to 0), with LIFReset zeroing u and v at its window start."""
    from sdm_neuro.compiler.schedule import schedule
    from sdm_neuro.ir.graph import call_length
    from sdm_neuro.simulators.timed import TimedSimulator

    graph = schedule(graphs[tsm])
    x = torch.rand(2, 1, 8, 8) * 2 - 1
    t = torch.tensor([30, 900])
    sim = TimedSimulator(graph)
    sim.record = True
    counters = Counters()
    sim(x, t, counters)
    steps, length, batch = graph.config.snn_steps, call_length(graph), 2
    assert all((p.lif.du, p.lif.dv) == (4095, 0) for p in graph.populations)
    biases = host_reference[0](graph, x, t)
    hist = {p.name: np.zeros((length, batch, *p.shape), bool) for p in graph.populations}
    v = {p.name: np.zeros((batch, *p.shape), np.int64) for p in graph.populations}
    offset = {p.name: p.offset for p in graph.populations}
    wraps = saturations = 0
    for tau in range(length):
        drive = {p.name: np.zeros((batch, *p.shape), np.int64) for p in graph.populations}
        for p in graph.projections:
            relayed = p.weight_int is not None and p.weight_int.dim() == 5
            when = tau - (2 if relayed else 1) - p.delay
            if p.dst == HOST or when < 0:
                continue
            k = min(max(when - offset[p.src], 0), steps - 1)
            wi = p.weight_int[k] if relayed else p.weight_int
            acc = _np_conv(hist[p.src][when].astype(np.int64), wi.numpy().astype(np.int64),
                           p.stride, p.upsample)
            drive[p.dst] += acc << p.weight_exp if p.weight_exp >= 0 else acc >> -p.weight_exp
        for pop in graph.populations:
            if tau == pop.offset:
                v[pop.name][:] = 0  # (u forgets every step at du 4095)
            k = min(max(tau - pop.offset, 0), steps - 1)
            u = drive[pop.name] << 6
            wrapped = (u > 2**23) | (u <= -(2**23))
            wraps += int(wrapped.sum())
            u = np.where(u > 2**23, u - 2**24, np.where(u <= -(2**23), u + 2**24, u))
            vv = v[pop.name] + u + (biases[pop.name][k] << pop.lif.bias_exp)
            saturations += int((np.abs(vv) > 2**23 - 1).sum())
            vv = np.clip(vv, -(2**23 - 1), 2**23 - 1)
            hist[pop.name][tau] = vv > (pop.lif.vth << 6)
            v[pop.name] = np.where(hist[pop.name][tau], 0, vv)
    outside = 0
    for pop in graph.populations:
        assert np.array_equal(sim.history[pop.name].numpy(), hist[pop.name]), pop.name
        window = slice(pop.offset, pop.offset + steps)
        outside += int(hist[pop.name].sum() - hist[pop.name][window].sum())
    assert counters.events.get("u_wrap (any step)", 0) == wraps
    assert counters.events.get("v_saturate (any step)", 0) == saturations
    assert set(counters.events) <= {"u_wrap (any step)", "v_saturate (any step)",
                                    "bias_clip"}
    assert outside > 0  # the out-of-window dynamics were exercised
