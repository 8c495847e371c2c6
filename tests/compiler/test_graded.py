"""The graded mapping: lowering reproduces the model, quantization keeps its integer formats, the
integer simulator equals an independent int64 transcription, hardware timing equals ideal."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from sdm_neuro import SpikingUNet, UNetConfig
from sdm_neuro.compiler.lower_graded import lower_graded
from sdm_neuro.compiler.quantize_graded import build_graded_graph, quantize_graded
from sdm_neuro.compiler import schedule_graded as sched_mod
from sdm_neuro.compiler.schedule_graded import schedule_graded
from sdm_neuro.errors import CheckpointError, ConfigError
from sdm_neuro.ir.graded import GradedGraph
from sdm_neuro.simulators.graded import GradedSimulator, GradedTimedSimulator
from sdm_neuro.simulators.graded_float import run_float_graded
from sdm_neuro.simulators.integer import Counters

CONFIGS = {
    "sddpm": UNetConfig(ch=8, ch_mult=(1, 2), num_res_blocks=1, img_ch=1, snn_steps=4,
                        img_size=8),
    "3-levels": UNetConfig(ch=8, ch_mult=(1, 2, 2), num_res_blocks=2, img_ch=3, snn_steps=3,
                           img_size=8),
    "no-res-blocks": UNetConfig(ch=4, ch_mult=(1, 2), num_res_blocks=0, img_ch=1, snn_steps=2,
                                img_size=8),
}


def _inputs(cfg, n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, cfg.img_ch, cfg.img_size, cfg.img_size, generator=g)
    return x, torch.randint(0, cfg.diffusion_steps, (n,), generator=g)


def _quantized(cfg, randomized, threshold=1.0, seed=0):
    torch.manual_seed(seed)
    model = randomized(SpikingUNet(cfg), seed).eval()
    model.set_threshold(threshold)
    cal = [_inputs(cfg, 8, seed=s) for s in (1, 2)]
    return model, build_graded_graph(model, cal)


@pytest.mark.parametrize("name", sorted(CONFIGS) + ["tsm"])
@pytest.mark.parametrize("threshold", [1.0, 0.998])
def test_graded_lowering_reproduces_model(name, threshold, randomized):
    """(TSM: the float graph that calibrates its composed mapping.)"""
    cfg = CONFIGS[name] if name in CONFIGS else CONFIGS["3-levels"].replace(tsm=True)
    torch.manual_seed(0)
    model = randomized(SpikingUNet(cfg)).double().eval()
    model.set_threshold(threshold)
    graph = lower_graded(model)
    x, t = _inputs(cfg)
    model.record_spikes(True)
    with torch.no_grad():
        eps = model(x.double(), t)
    ref = model.recorded_spikes()
    eps_g, out = run_float_graded(graph, x.double(), t)
    assert sorted(ref) == sorted(p.name for p in graph.populations)
    for layer, s in ref.items():
        assert torch.equal(s.to(torch.float64), out[layer]), layer
    assert sum(int(s.sum()) for s in ref.values()) > 0
    torch.testing.assert_close(eps_g.double(), eps, rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_streamed_calibration_run_observes_and_returns_the_same(name, randomized):
    """keep=False (calibration: each output dropped after its last reader) gives the same eps
    and the same observed ranges, bit for bit, as the run that keeps every output."""
    cfg = CONFIGS[name]
    torch.manual_seed(0)
    graph = lower_graded(randomized(SpikingUNet(cfg)).double().eval())
    x, t = _inputs(cfg)
    seen_all, seen_streamed = {}, {}
    eps_all, out_all = run_float_graded(graph, x.double(), t, observe=seen_all)
    eps_s, out_s = run_float_graded(graph, x.double(), t, observe=seen_streamed, keep=False)
    assert torch.equal(eps_all, eps_s) and seen_all == seen_streamed
    assert len(out_all) == len(graph.nodes()) and set(out_s) == {graph.output}


def test_every_conv_is_one_shared_kernel(randomized):
    """One conv connection per conv of the model (the 1x1 shortcut split per skip input), each
    with the model's kernel shape; relays only for block outputs, shortcuts and upsamples."""
    cfg = CONFIGS["3-levels"]
    model = randomized(SpikingUNet(cfg)).eval()
    graph = lower_graded(model)
    convs = [c for c in graph.connections if c.kind == "conv"]
    n3 = sum(1 for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)
             and m.kernel_size == (3, 3) and n not in ("conv", "tail_conv"))
    assert sum(c.kernel == 3 for c in convs) == n3
    assert {r.kind for r in graph.relays} == {"sum", "upsample"}
    blocks = {n for n, _ in model.named_modules() if n.count(".") == 1 and "blocks" in n}
    sums = {r.name for r in graph.relays if r.kind == "sum" and ".shortcut" not in r.name}
    assert sums == blocks | {"conv_identity"}
    assert graph.output == "upblocks.{}".format(len(model.upblocks) - 1)


def test_tsm_is_refused_with_the_way_out(randomized):
    cfg = CONFIGS["sddpm"].replace(tsm=True)
    model = randomized(SpikingUNet(cfg)).eval()
    with pytest.raises(ConfigError, match="composed"):
        build_graded_graph(model, [])  # before any work: no calibration set needed
    with pytest.raises(ConfigError, match="composed"):  # a float graph is not deployable
        quantize_graded(lower_graded(model.double()), {})


def test_quantized_formats(randomized):
    cfg = CONFIGS["3-levels"]
    _, g = _quantized(cfg, randomized, threshold=0.9)
    for r in g.relays:
        k = math.log2(r.scale) if r.kind == "sum" else 0.0
        assert k == int(k), r.name  # powers of two: identities are exact shifts
    for c in g.connections:
        if c.kind == "conv":
            w = c.weight_int
            assert w.dtype == torch.int16 and int(w.min()) >= -256 and int(w.max()) <= 254
            assert not bool((w % 2).any()) and 0 <= c.weight_exp <= 7
        elif c.kind == "identity":
            assert -8 <= c.weight_exp <= 7
    for p in g.populations:
        # the membrane LSB a power of two, vth = 2**m * 0.9 rounded: the threshold's fraction
        k = math.log2(p.scale * 64)
        assert k == int(k) and p.lif.vth == round(0.9 / (64 * p.scale)), p.name
        assert 0 <= p.lif.bias_exp <= 7
    assert g.meta["payload_bits"] == 24


def test_integer_sim_tracks_the_float_model(randomized):
    """Spikes agree with the float model's, and eps is as close as the composed mapping's (a
    randomized tiny model amplifies every flipped spike: both are ~0.4 off here)."""
    from sdm_neuro.compiler.pipeline import build_integer_graph
    from sdm_neuro.simulators.integer import IntegerSimulator

    cfg = CONFIGS["sddpm"]
    model, g = _quantized(cfg, randomized)
    composed = build_integer_graph(model, [_inputs(cfg, 8, seed=s) for s in (1, 2)])
    x, t = _inputs(cfg, 6, seed=5)
    model.record_spikes(True)
    with torch.no_grad():
        ref = model(x, t)
    spikes = model.recorded_spikes()
    cnt = Counters()
    eps, out = GradedSimulator(g)(x, t, cnt)
    agree = np.mean([float((s.bool() == out[k]).float().mean()) for k, s in spikes.items()])
    assert agree > 0.9
    err_composed = float((IntegerSimulator(composed)(x, t)[0] - ref).norm() / ref.norm())
    assert float((eps - ref).norm() / ref.norm()) < 1.25 * err_composed + 0.02
    assert cnt.calls == 1 and cnt.events["relay_overflow"] == 0
    assert set(cnt.payloads) == {r.name for r in g.relays}


def _reference_outputs(g: GradedGraph, x, t, bias_of):
    """Ideal-timing integer semantics, transcribed with numpy int64 loops and explicit taps."""
    steps, batch = g.config.snn_steps, x.shape[0]
    bias = bias_of(g, x, t)
    out = {}

    def conv(z, w, stride):  # z [N, C, H, W] int64, w int64, padding k // 2
        n, ci, h, wd = z.shape
        co, _, k, _ = w.shape
        pad = k // 2
        zp = np.zeros((n, ci, h + 2 * pad, wd + 2 * pad), dtype=np.int64)
        zp[:, :, pad:pad + h, pad:pad + wd] = z
        ho, wo = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
        y = np.zeros((n, co, ho, wo), dtype=np.int64)
        for dy in range(k):
            for dx in range(k):
                patch = zp[:, :, dy:dy + stride * ho:stride, dx:dx + stride * wo:stride]
                y += np.einsum("oc,nchw->nohw", w[:, :, dy, dx], patch)
        return ((y + 2**23) % 2**24) - 2**23  # Lava Conv's 24-bit wrap

    for name in g.order:
        node = g.node(name)
        acc = np.zeros((steps * batch, *node.shape), dtype=np.int64)
        for c in g.inputs(name):
            z = out[c.src].reshape(steps * batch, *out[c.src].shape[2:]).astype(np.int64)
            if c.kind == "conv":
                w = c.weight_int.numpy().astype(np.int64) * 2**c.weight_exp
                acc += conv(z, w, c.stride)
            elif c.kind == "upsample":
                acc += z.repeat(2, axis=2).repeat(2, axis=3)
            else:
                k = c.weight_exp
                part = z * 2**k if k >= 0 else np.floor_divide(z, 2**-k)
                acc[:, c.dst_channel:c.dst_channel + z.shape[1]] += part
        acc = acc.reshape(steps, batch, *node.shape)
        if g.is_relay(name):
            out[name] = acc
            continue
        vth, bexp = node.lif.vth, node.lif.bias_exp
        v = np.zeros(acc.shape[1:], dtype=np.int64)
        spikes = np.zeros(acc.shape, dtype=bool)
        for s in range(steps):
            u = acc[s] * 64
            u = np.where(u > 2**23, u - 2**24, u)
            u = np.where(u <= -2**23, u + 2**24, u)
            v = np.clip(v + u + bias[name][s] * 2**bexp, -(2**23 - 1), 2**23 - 1)
            spikes[s] = v > vth * 64
            v[spikes[s]] = 0
        out[name] = spikes
    return out


@pytest.mark.parametrize("name", ["sddpm", "3-levels"])
def test_integer_sim_equals_an_independent_transcription(name, randomized, host_reference):
    cfg = CONFIGS[name]
    _, g = _quantized(cfg, randomized, threshold=0.95 if name == "3-levels" else 1.0)
    x, t = _inputs(cfg, 2, seed=7)
    _, out = GradedSimulator(g)(x, t)
    ref = _reference_outputs(g, x, t, host_reference[0])
    for node in g.order:
        got = out[node].numpy()
        assert np.array_equal(got.astype(np.int64), ref[node].astype(np.int64)), node
    assert sum(int(ref[p.name].sum()) for p in g.populations) > 0


@pytest.mark.parametrize("name", ["sddpm", "3-levels"])
def test_hardware_timing_equals_ideal(name, randomized):
    cfg = CONFIGS[name]
    _, g = _quantized(cfg, randomized)
    sg = schedule_graded(g)
    x, t = _inputs(cfg, 2, seed=3)
    eps, out = GradedSimulator(g)(x, t)
    eps_t, out_t = GradedTimedSimulator(sg)(x, t)
    assert torch.equal(eps, eps_t)
    for node in g.order:
        assert torch.equal(out[node], out_t[node]), node


def test_long_delays_become_chains_of_copies(randomized, monkeypatch):
    """With a delay limit of 1 step, every longer wait is a chain of delay relays; the timed
    windows still equal the ideal outputs."""
    cfg = CONFIGS["sddpm"]
    _, g = _quantized(cfg, randomized)
    monkeypatch.setattr(sched_mod, "MAX_DELAY", 1)
    sg = schedule_graded(g)
    copies = [r for r in sg.relays if r.kind == "delay"]
    assert copies and all(c.delay <= 1 for c in sg.connections)
    for c in sg.connections:  # every connection lines up: one step plus its delay
        assert sg.node(c.dst).offset == sg.node(c.src).offset + 1 + c.delay
        assert c.kind != "conv" or c.delay == 0
    x, t = _inputs(cfg, 2, seed=4)
    eps, out = GradedSimulator(g)(x, t)
    eps_t, out_t = GradedTimedSimulator(sg)(x, t)
    assert torch.equal(eps, eps_t)
    for node in g.order:
        assert torch.equal(out[node], out_t[node]), node


def test_timed_simulator_refuses_an_unscheduled_graph(randomized):
    _, g = _quantized(CONFIGS["no-res-blocks"], randomized)
    with pytest.raises(ConfigError, match="schedule"):
        GradedTimedSimulator(g)


def test_graph_round_trips_and_rejects_malformed(tmp_path, randomized):
    _, g = _quantized(CONFIGS["no-res-blocks"], randomized)
    back = GradedGraph.load(g.save(tmp_path / "g.pt"))
    x, t = _inputs(g.config, 2)
    assert torch.equal(GradedSimulator(g)(x, t)[0], GradedSimulator(back)(x, t)[0])
    d = g.to_dict()
    d["connections"][0] = {**d["connections"][0], "kind": "dense"}
    with pytest.raises(CheckpointError, match="unknown kind 'dense'"):
        GradedGraph.from_dict(d, source="bad.pt")
    d = g.to_dict()
    d["order"] = list(reversed(d["order"]))
    with pytest.raises(CheckpointError, match="not topological"):
        GradedGraph.from_dict(d, source="bad.pt")


def test_conv_wrap_and_relay_overflow_are_counted(randomized, host_reference):
    """Scale one conv's kernel past 24 bits: the simulator wraps like Lava's Conv and counts it,
    and its float64 path (sums too large for float32; a wrap implies it) still equals the
    transcription."""
    _, g = _quantized(CONFIGS["no-res-blocks"], randomized)
    i = next(i for i, c in enumerate(g.connections) if c.kind == "conv" and g.is_relay(c.dst))
    conns = list(g.connections)
    conns[i] = dataclasses.replace(conns[i], weight_int=torch.full_like(conns[i].weight_int, 254),
                                   weight_exp=7)
    g = g.replace(connections=tuple(conns), meta={**g.meta, "payload_bits": 8})
    x, t = _inputs(g.config, 2)
    cnt = Counters()
    _, out = GradedSimulator(g)(x, t, cnt)
    assert cnt.events["conv_wrap"] > 0 and cnt.events["relay_overflow"] > 0
    dst = out[conns[i].dst]
    assert float(dst.abs().max()) < 2**24
    ref = _reference_outputs(g, x, t, host_reference[0])
    for node in g.order:
        assert np.array_equal(out[node].numpy().astype(np.int64), ref[node].astype(np.int64)), node


@pytest.mark.parametrize("name", ["sddpm", "3-levels"])
def test_dropping_payloads_changes_no_result_or_count(name, randomized):
    """Without keep_payloads (what samplers and the energy report use) relays are freed after
    their last reader and UpSample copies are never made: eps, every population's spikes and
    every counter equal the run that keeps and counts every payload."""
    cfg = CONFIGS[name]
    _, g = _quantized(cfg, randomized)
    x, t = _inputs(cfg, 2, seed=5)
    full, lean = Counters(), Counters()
    eps, out = GradedSimulator(g)(x, t, full)
    sim = GradedSimulator(g, keep_payloads=False)
    assert sim.copies  # the configuration has UpSample copies to skip
    eps_lean, out_lean = sim(x, t, lean)
    assert torch.equal(eps, eps_lean)
    for p in g.populations:
        assert torch.equal(out[p.name], out_lean[p.name]), p.name
    assert set(out_lean) < set(out)
    assert full.to_dict() == lean.to_dict()
