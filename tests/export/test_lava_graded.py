"""The graded Loihi 2 mapping in Lava (export/lava_graded.py): LIFReset populations, GradedVec
relays, shared-kernel Conv, Sparse / DelaySparse identities and upsample fan-outs, run in Lava's
fixed-point models, equal exactly (every population's spikes, every relay's payloads):

* a numpy transcription of the hardware-timed integer semantics written here, independent of the
  project's simulator, on a small hand-built graph exercising every connection kind;
* the project's :class:`~sdm_neuro.simulators.graded.GradedTimedSimulator` on U-Nets quantized by
  ``build_graded_graph`` and scheduled by ``schedule_graded`` (random small configurations, with
  threshold guidance, and the shipped default model, whose 128-channel layer needs the Conv
  int32 patch of ``lava_compat``).

Lava tests skip when Lava is not installed (fail under CI=true, see conftest)."""

import dataclasses

import numpy as np
import pytest
import torch

from sdm_neuro.config import UNetConfig
from sdm_neuro.errors import ConfigError, ExportError
from sdm_neuro.export.lava_compat import lava_unavailable
from sdm_neuro.export.lava_graded import check_graded_deployable
from sdm_neuro.ir.graded import Connection, GradedGraph, Relay
from sdm_neuro.ir.graph import HostStages, NeuronParams, Population

_why = lava_unavailable()
needs_lava = pytest.mark.skipif(_why is not None, reason=_why or "")

T = 3


# ---------------------------------------------------------------------------------------------
# A hand-built quantized, scheduled graph: every connection kind, delays, a 24-bit conv wrap
# ---------------------------------------------------------------------------------------------

def _hand_graph(seed: int = 0) -> GradedGraph:
    g = torch.Generator().manual_seed(seed)

    def kernel(co, ci, k, lo=-60, hi=61):
        return torch.randint(lo, hi, (co, ci, k, k), generator=g).to(torch.int16) * 2

    def conv(src, dst, w, exp=0, stride=1):
        return Connection(src, dst, "conv", weight=w.double(), stride=stride, weight_int=w,
                          weight_exp=exp)

    def pop(name, shape, offset, vth, bias_exp=0, du=4095, dv=0):
        return Population(name, shape, 1.0, torch.zeros(T, shape[0], dtype=torch.float64),
                          scale=1.0, lif=NeuronParams(vth=vth, bias_exp=bias_exp, du=du, dv=dv),
                          offset=offset)

    def relay(name, shape, offset, kind="sum"):
        return Relay(name, shape, torch.zeros(T, shape[0], dtype=torch.float64), kind=kind,
                     scale=1.0, offset=offset)

    pops = (pop("p0", (2, 6, 6), 0, vth=25),
            pop("p1", (3, 6, 6), 2, vth=50),
            pop("p2", (5, 6, 6), 5, vth=60, bias_exp=2, du=1000, dv=300))  # a leaky one too
    relays = (relay("r1", (3, 6, 6), 1),              # conv of p0's spikes
              relay("rd", (3, 6, 6), 3, kind="delay"),  # r1 delayed by one step
              relay("r2", (5, 6, 6), 4),              # identity (channels 2..4) + graded 1x1
              relay("up", (3, 12, 12), 4, kind="upsample"),
              relay("r3", (2, 12, 12), 5),            # graded 3x3 conv of the upsample
              relay("r4", (4, 3, 3), 6))              # strided conv of p2's spikes
    conns = (
        conv("p0", "r1", kernel(3, 2, 3)),
        Connection("r1", "p1", "identity", weight_exp=-2),
        Connection("r1", "rd", "identity", weight_exp=-3, delay=1),  # floors to +-1 often
        Connection("r1", "r2", "identity", weight_exp=-1, dst_channel=2, delay=2),
        # weights << 8 times payloads of hundreds: sums beyond 2**23 wrap in Lava's Conv
        conv("rd", "r2", kernel(5, 3, 1, -127, 128), exp=9),
        Connection("r2", "p2", "identity", weight_exp=-12),
        Connection("p1", "up", "upsample", delay=1),
        conv("up", "r3", kernel(2, 3, 3), exp=1),
        conv("p2", "r4", kernel(4, 5, 3), stride=2),
    )
    order = ("p0", "r1", "p1", "rd", "r2", "up", "p2", "r3", "r4")
    cfg = UNetConfig(ch=2, ch_mult=(1,), num_res_blocks=1, img_ch=1, snn_steps=T, img_size=6)
    host = HostStages(torch.zeros(2, 1, 3, 3, dtype=torch.float64), (), {}, {},
                      torch.zeros(T, 4, dtype=torch.float64))
    return GradedGraph(cfg, pops, relays, conns, order, "r4", host, {})


def _hand_bias(graph: GradedGraph, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """[T, B, C, H, W] bias mantissas, constant over the steps, different per neuron."""
    rng = np.random.default_rng(seed)
    return {p.name: np.broadcast_to(rng.integers(-1000, 2000, (1, batch, *p.shape)),
                                    (T, batch, *p.shape)).astype(np.int32)
            for p in graph.populations}


def _transcribe(graph: GradedGraph, bias: dict, b: int, wrapped: list | None = None
                ) -> dict[str, np.ndarray]:
    """The hardware-timed integer semantics for sample ``b``, written from the mapping's
    definition: connections deliver the source's output of step tau at tau + 1 + delay; a conv
    (PyTorch cross-correlation, padding k // 2) wraps at 24 bits; an identity delivers
    floor(payload * 2**k) into its channel range; an upsample copies each spike to its 2x2 block;
    a relay sends the sum of its inputs; a population is Lava's bit-accurate LIF, reset at its
    window start. Returns every node's whole-call output [L, C, H, W] (int64); ``wrapped``
    receives the number of conv sums that wrapped."""
    steps = graph.config.snn_steps
    length = max(n.offset for n in graph.nodes()) + steps
    out = {n.name: np.zeros((length, *n.shape), np.int64) for n in graph.nodes()}
    state = {p.name: (np.zeros(p.shape, np.int64), np.zeros(p.shape, np.int64))
             for p in graph.populations}

    def corr(x, w, stride):
        c, h, wd = x.shape
        co, _, k, _ = w.shape
        p = k // 2
        xp = np.pad(x, ((0, 0), (p, p), (p, p)))
        ho, wo = (h + 2 * p - k) // stride + 1, (wd + 2 * p - k) // stride + 1
        y = np.zeros((co, ho, wo), np.int64)
        for i in range(k):
            for j in range(k):
                patch = xp[:, i:i + stride * (ho - 1) + 1:stride,
                           j:j + stride * (wo - 1) + 1:stride]
                y += np.einsum("oc,chw->ohw", w[:, :, i, j], patch)
        if wrapped is not None:
            wrapped.append(int(((y < -(2**23)) | (y >= 2**23)).sum()))
        return ((y + 2**23) % 2**24) - 2**23

    def decay(x, d):  # Lava: sign(x) * ((|x| * (4096 - d)) >> 12)
        return np.sign(x) * ((np.abs(x) * (4096 - d)) >> 12)

    for tau in range(length):
        for node in graph.nodes():
            acc = np.zeros(node.shape, np.int64)
            for c in graph.inputs(node.name):
                when = tau - 1 - c.delay
                if when < 0:
                    continue
                z = out[c.src][when]
                if c.kind == "conv":
                    w = (c.weight_int.numpy().astype(np.int64) << c.weight_exp)
                    acc += corr(z, w, c.stride)
                elif c.kind == "upsample":
                    acc += z.repeat(2, axis=1).repeat(2, axis=2)
                else:
                    k = c.weight_exp
                    part = z << k if k >= 0 else z >> -k
                    acc[c.dst_channel:c.dst_channel + z.shape[0]] += part
            if graph.is_relay(node.name):
                out[node.name][tau] = acc
                continue
            p = node.lif
            u, v = state[node.name]
            if tau == node.offset:
                u, v = np.zeros_like(u), np.zeros_like(v)
            u = decay(u, p.du + 1) + (acc << 6)
            u = np.where(u > 2**23, u - 2**24, np.where(u <= -(2**23), u + 2**24, u))
            k = min(max(tau - node.offset, 0), steps - 1)
            v = decay(v, p.dv + 1) + u + (bias[node.name][k, b].astype(np.int64) << p.bias_exp)
            v = np.clip(v, -(2**23) + 1, 2**23 - 1)
            s = v > (p.vth << 6)
            v = np.where(s, 0, v)
            state[node.name] = (u, v)
            out[node.name][tau] = s
    return out


def test_the_transcription_follows_the_schedule_rule():
    """The hand graph is scheduled by the backend's own rule: dst = src + 1 + delay."""
    check_graded_deployable(_hand_graph())


@needs_lava
@pytest.mark.timeout(600)
def test_hand_built_graph_matches_the_numpy_transcription():
    from sdm_neuro.export.lava_graded import lava_graded_outputs

    graph = _hand_graph()
    batch = 2
    bias = _hand_bias(graph, batch)
    lava = lava_graded_outputs(graph, bias, timeout_s=500)
    wrapped = []
    want = [_transcribe(graph, bias, b, wrapped) for b in range(batch)]
    for node in graph.nodes():
        ref = np.stack([w[node.name][node.offset:node.offset + T] for w in want], axis=1)
        got = lava[node.name]
        assert got.dtype == (torch.int64 if graph.is_relay(node.name) else torch.bool)
        assert got.shape == (T, batch, *node.shape)
        assert np.array_equal(got.numpy().astype(np.int64), ref), node.name
        assert ref.any(), node.name  # every node carries something
    # the cases the graph is built for actually occurred
    spikes = {p.name: np.stack([w[p.name] for w in want]) for p in graph.populations}
    assert all(not s.all() for s in spikes.values())
    assert sum(wrapped) > 0                                   # Conv's 24-bit wrap
    assert any(np.isin(w["rd"], (-1, 1)).any() for w in want)  # payloads of +-1 pass (vth 0)


@needs_lava
@pytest.mark.timeout(600)
def test_convs_of_128_channels_or_more_run_exactly():
    """Lava's Conv model types its geometry int8: under numpy 2, 128 channels or more overflow
    inside the run (a deadlock, not an error) unless lava_compat's int32 patch is in place."""
    from sdm_neuro.export.lava_graded import lava_graded_outputs

    g = torch.Generator().manual_seed(1)
    w = torch.randint(-60, 61, (129, 130, 3, 3), generator=g).to(torch.int16) * 2
    p0 = Population("p0", (130, 2, 2), 1.0, torch.zeros(T, 130, dtype=torch.float64), scale=1.0,
                    lif=NeuronParams(vth=20, bias_exp=0))
    p1 = Population("p1", (129, 2, 2), 1.0, torch.zeros(T, 129, dtype=torch.float64), scale=1.0,
                    lif=NeuronParams(vth=30, bias_exp=0), offset=2)
    r = Relay("r", (129, 2, 2), torch.zeros(T, 129, dtype=torch.float64), scale=1.0, offset=1)
    conns = (Connection("p0", "r", "conv", weight=w.double(), weight_int=w, weight_exp=0),
             Connection("r", "p1", "identity", weight_exp=-3))
    cfg = UNetConfig(ch=2, ch_mult=(1,), num_res_blocks=1, img_ch=1, snn_steps=T, img_size=4)
    host = HostStages(torch.zeros(130, 1, 3, 3, dtype=torch.float64), (), {}, {},
                      torch.zeros(T, 129, dtype=torch.float64))
    graph = GradedGraph(cfg, (p0, p1), (r,), conns, ("p0", "r", "p1"), "r", host, {})
    bias = _hand_bias(graph, 1, seed=1)
    lava = lava_graded_outputs(graph, bias, timeout_s=500)
    want = _transcribe(graph, bias, 0)
    for node in graph.nodes():
        ref = want[node.name][node.offset:node.offset + T]
        assert ref.any() and not ref.all(), node.name
        assert np.array_equal(lava[node.name][:, 0].numpy().astype(np.int64), ref), node.name


# ---------------------------------------------------------------------------------------------
# Refusals
# ---------------------------------------------------------------------------------------------

def test_refuses_an_unscheduled_graph():
    g = _hand_graph()
    flat = g.replace(populations=tuple(dataclasses.replace(p, offset=0) for p in g.populations),
                     relays=tuple(dataclasses.replace(r, offset=0) for r in g.relays))
    with pytest.raises(ExportError, match="not scheduled"):
        check_graded_deployable(flat)
    conns = list(g.connections)
    conns[2] = dataclasses.replace(conns[2], delay=0)  # r1 -> rd no longer lines up
    with pytest.raises(ExportError, match="r1 -> rd: the graph is not scheduled"):
        check_graded_deployable(g.replace(connections=tuple(conns)))


def test_refuses_an_unquantized_graph():
    g = _hand_graph()
    pops = (dataclasses.replace(g.populations[0], lif=None),) + g.populations[1:]
    with pytest.raises(ExportError, match="not quantized"):
        check_graded_deployable(g.replace(populations=pops))
    conns = (dataclasses.replace(g.connections[0], weight_exp=None),) + g.connections[1:]
    with pytest.raises(ExportError, match="not quantized"):
        check_graded_deployable(g.replace(connections=conns))


def test_refuses_a_bias_that_changes_across_steps():
    from sdm_neuro.export.lava_graded import lava_graded_outputs

    g = _hand_graph()
    bias = _hand_bias(g, 1)
    bias["p1"] = bias["p1"].copy()
    bias["p1"][1] += 1  # what TSM would need: a bias_mant per SNN step
    with pytest.raises(ExportError, match="p1: its bias changes across SNN steps"):
        lava_graded_outputs(g, bias)


def test_tsm_models_are_refused_by_the_graded_lowering(micro_config):
    from sdm_neuro import SpikingUNet
    from sdm_neuro.compiler.quantize_graded import build_graded_graph

    model = SpikingUNet(micro_config.replace(tsm=True)).eval()
    with pytest.raises(ConfigError, match="TSM"):
        build_graded_graph(model, [(torch.zeros(1, 1, 4, 4), torch.tensor([0]))])


@needs_lava
def test_conv_geometry_is_retyped_to_int32_after_import_idempotently():
    from sdm_neuro.export.lava_compat import import_lava

    import_lava()
    import_lava()
    from lava.proc.conv.models import AbstractPyConvModel, PyConvModelFixed

    for name in ("kernel_size", "stride", "padding", "dilation", "groups"):
        assert getattr(PyConvModelFixed, name).d_type is np.int32, name
        assert getattr(AbstractPyConvModel, name).precision == 16


# ---------------------------------------------------------------------------------------------
# Against the project's hardware-timed simulator
# ---------------------------------------------------------------------------------------------

def _graded(model, seed: int, n_images: int = 32):
    from sdm_neuro.compiler.pipeline import calibration_inputs
    from sdm_neuro.compiler.quantize_graded import build_graded_graph
    from sdm_neuro.compiler.schedule_graded import schedule_graded

    cfg = model.config
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n_images, cfg.img_ch, cfg.img_size, cfg.img_size, generator=g) * 2 - 1
    calib = calibration_inputs(images, count=32, batch_size=16, seed=seed)
    return schedule_graded(build_graded_graph(model, calib))


def _assert_matches_simulator(graph, x, t, bias_of, *, active=True, timeout_s=590):
    """Lava, fed the bias mantissas of the tests' independent transcription (``bias_of``, not
    the project's), against the hardware-timed simulator: every spike and payload equal."""
    from sdm_neuro.export.lava_graded import lava_graded_outputs
    from sdm_neuro.ir.host import decoder_tail
    from sdm_neuro.simulators.graded import GradedTimedSimulator

    eps_sim, out_sim = GradedTimedSimulator(graph)(x, t)
    out_lava = lava_graded_outputs(graph, bias_of(graph, x, t), timeout_s=timeout_s)
    relay = graph.relay(graph.output)
    eps_lava = decoder_tail(graph, out_lava[graph.output].double() * relay.scale
                            + relay.bias[:, None, :, None, None])
    assert set(out_lava) == set(out_sim)
    for name, want in out_sim.items():
        got = out_lava[name]
        if graph.is_relay(name):  # the simulator may hold payloads as integral floats
            assert got.dtype == torch.int64
            assert want.dtype == torch.int64 or (torch.equal(want, want.round())
                                                 and float(want.abs().max()) < 2**53), name
            want = want.to(torch.int64)
        else:
            assert got.dtype == want.dtype == torch.bool, name
        assert torch.equal(got, want), name
    # the host decoder on identical payloads: the same eps up to float32 vs float64
    assert torch.allclose(eps_lava.float(), eps_sim, rtol=0, atol=1e-5 * float(eps_sim.abs().max()))
    assert any(c.delay for c in graph.connections)  # DelaySparse exercised
    if active:  # a silent or saturated layer would test little
        for p in graph.populations:
            s = out_sim[p.name]
            assert 0 < int(s.sum()) < s.numel(), p.name
    return out_sim


@needs_lava
@pytest.mark.timeout(900)
@pytest.mark.parametrize("seed, config, threshold", [
    (0, "micro_config", None),
    pytest.param(1, "tiny_config_ch4_t3", None, marks=pytest.mark.slow),  # a minute in Lava
    (3, "micro_config", 0.8),  # threshold guidance
])
def test_random_unets_match_the_timed_simulator(request, randomized, host_reference, seed,
                                               config, threshold):
    from sdm_neuro import SpikingUNet

    cfg = request.getfixturevalue(config)
    torch.manual_seed(seed)
    model = randomized(SpikingUNet(cfg).eval(), seed)
    if threshold is not None:
        model.set_threshold(threshold)
    graph = _graded(model, seed)
    x = torch.rand(2, cfg.img_ch, cfg.img_size, cfg.img_size,
                   generator=torch.Generator().manual_seed(seed)) * 2 - 1
    _assert_matches_simulator(graph, x, torch.tensor([7, 640]), host_reference[0])


@pytest.mark.slow
@needs_lava
@pytest.mark.timeout(1500)
def test_default_model_matches_the_timed_simulator_for_one_sample(host_reference):
    """The shipped model (32 channels, 16 x 16, 128-channel decoder layers: the Conv patch is
    needed), one sample, one call."""
    from sdm_neuro.assets import default_model_path
    from sdm_neuro.checkpoint import load_model

    model, _ = load_model(default_model_path())
    graph = _graded(model, 0)
    assert max(n.shape[0] for n in graph.nodes()) >= 128
    cfg = model.config
    x = torch.rand(1, cfg.img_ch, cfg.img_size, cfg.img_size,
                   generator=torch.Generator().manual_seed(0)) * 2 - 1
    _assert_matches_simulator(graph, x, torch.tensor([500]), host_reference[0], timeout_s=1100)
