"""Feed-forward SNNs through NIR: this project's float reference against Norse (``from_nir``) and
snnTorch (``import_from_nir``) on the files it writes, and against their own runs of the files
they write; quantization and the integer simulator on them.

Tolerance: the discretisations are the same equations (network.py's docstring), so the only
difference is arithmetic: the tools run float32, the reference float64. A spike can flip only
where the membrane came within rounding of the threshold; each test first asserts the float64
membranes kept ``MARGIN`` (1e-4 threshold, about 100x float32's rounding of these sums) away from
every threshold, then demands identical spikes. (The simulate and export commands on NIR files:
tests/cli/test_simulate.py, tests/cli/test_export.py.)"""

import nir
import numpy as np
import pytest
import torch

from sdm_neuro.errors import ConfigError
from sdm_neuro.ir.feedforward import run_float
from sdm_neuro.frontends.feedforward_nir import feedforward_from_nir
from sdm_neuro.run.feedforward import random_spikes, simulate_feedforward
from sdm_test_support import BATCH, STEPS, ff_inputs, ff_written

MARGIN = 1e-4



def _margin(net, x):
    observed = {}
    ref = run_float(net, x, observe=observed)
    return min(v[3] for v in observed.values()), ref


def _checked_reference(net, x):
    margin, ref = _margin(net, x)
    assert margin > MARGIN, f"a membrane came within {margin:.2e} of a threshold; pick a seed"
    assert all(float(s.sum()) > 0 for s in ref), "a silent layer tests nothing"
    return ref


def _clear_case(make, kind, **kw):
    """The first random network (seeds 0-19) whose float64 run keeps MARGIN: where rounding
    cannot decide a spike, exact agreement is the right expectation."""
    for seed in range(20):
        net = make(seed, kind, **kw)
        x = ff_inputs(net, seed)
        if _margin(net, x)[0] > MARGIN:
            return net, x
    raise AssertionError("no seed keeps the margin")



def _per_sample(run_one, x):
    """Norse and snnTorch flatten with NIR's batch-free start_dim 0: run one sample at a time."""
    return torch.cat([run_one(x[:, b:b + 1]) for b in range(x.shape[1])], 1)


def test_nir_round_trip_is_exact(make_feedforward, tmp_path):
    for kind in ("IF", "LIF", "LIF-r1"):
        net = make_feedforward(3, kind)
        path = ff_written(net, tmp_path, f"{kind}.nir")
        back = feedforward_from_nir(nir.read(path))  # plain nir.read, type checking on
        assert back.dt == net.dt and back.input_shape == net.input_shape
        assert [layer.name for layer in back.layers] == ["l0", "l1", "l2"]
        x = ff_inputs(net)
        for a, b in zip(run_float(net, x), run_float(back, x), strict=True):
            assert torch.equal(a, b)


@pytest.mark.parametrize("kind", ["IF", "LIF-r1"])
def test_norse_runs_our_nir_export(make_feedforward, tmp_path, kind):
    import norse.torch as norse
    from norse.torch.module.iaf import IAFCell
    from norse.torch.module.lif_box import LIFBoxCell

    # Norse starts a LIF at v = v_leak, NIR and Loihi at 0: no leak drive, so both start at 0
    net, x = _clear_case(make_feedforward, kind, leak=False)
    ref = _checked_reference(net, x)  # every layer spikes
    graph = nir.read(ff_written(net, tmp_path))
    neurons = [n for n in graph.nodes.values() if isinstance(n, (nir.IF, nir.LIF))]
    assert len(neurons) == 3
    if kind == "LIF-r1":  # the form Norse runs: r = 1 (it ignores r), a real leak, v_leak 0
        for n in neurons:
            assert isinstance(n, nir.LIF) and np.allclose(n.r, 1.0, rtol=1e-12, atol=0)
            assert not np.any(n.v_leak) and np.allclose(net.dt / n.tau, 0.1, rtol=1e-12)
    module = norse.from_nir(graph, dt=net.dt)
    cell = LIFBoxCell if kind == "LIF-r1" else IAFCell
    assert sum(isinstance(m, cell) for m in module.modules()) == 3

    def run_one(xb):
        state, out = None, []
        for t in range(xb.shape[0]):
            z, state = module(xb[t].float(), state)
            out.append(z.detach().reshape(1, 1, -1))
        return torch.cat(out)

    own = _per_sample(run_one, x).double()
    assert own.sum() > 0 and torch.equal(own, ref[-1].reshape(STEPS, BATCH, -1))


def test_snntorch_runs_our_nir_export(make_feedforward, tmp_path):
    from snntorch.import_nir import import_from_nir

    # snnTorch takes one threshold per layer and no v_leak
    net, x = _clear_case(make_feedforward, "LIF", uniform=True, leak=False)
    ref = _checked_reference(net, x)
    graph = nir.read(ff_written(net, tmp_path))

    def run_one(xb):
        module = import_from_nir(graph)  # fresh hidden state per sample
        out = []
        for t in range(xb.shape[0]):
            z = module(xb[t].float())
            z = z[0] if isinstance(z, tuple) else z
            out.append(z.detach().reshape(1, 1, -1))
        return torch.cat(out)

    assert torch.equal(_per_sample(run_one, x).double(), ref[-1].reshape(STEPS, BATCH, -1))


def _snntorch_model(seed):
    import snntorch as snn

    torch.manual_seed(seed)
    # snnTorch's exporter writes v_reset = 0 whatever the model's reset: build what it writes
    reset = {"reset_mechanism": "zero", "reset_delay": False, "init_hidden": True}
    conv, lin = torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.Linear(4 * 6 * 6, 8)
    with torch.no_grad():
        conv.weight.mul_(2.0)
        lin.weight.mul_(3.0)
    return torch.nn.Sequential(
        conv, snn.Leaky(beta=torch.full((4, 6, 6), 0.8), threshold=torch.full((4, 6, 6), 0.7),
                        **reset),
        torch.nn.Flatten(), lin,
        snn.Leaky(beta=torch.full((8,), 0.9), threshold=torch.full((8,), 0.5), output=True,
                  **reset))


def _conv_int(z: np.ndarray, w: np.ndarray, stride, padding) -> np.ndarray:
    """[N, Ci, H, W] x [Co, Ci, kh, kw] int64 cross-correlation by explicit taps."""
    n, ci, h, wd = z.shape
    co, _, kh, kw = w.shape
    zp = np.zeros((n, ci, h + 2 * padding[0], wd + 2 * padding[1]), dtype=np.int64)
    zp[:, :, padding[0]:padding[0] + h, padding[1]:padding[1] + wd] = z
    ho = (zp.shape[2] - kh) // stride[0] + 1
    wo = (zp.shape[3] - kw) // stride[1] + 1
    out = np.zeros((n, co, ho, wo), dtype=np.int64)
    for dy in range(kh):
        for dx in range(kw):
            patch = zp[:, :, dy:dy + stride[0] * ho:stride[0], dx:dx + stride[1] * wo:stride[1]]
            out += np.einsum("oc,nchw->nohw", w[:, :, dy, dx], patch)
    return out


def _lava_lif_reference(qnet, x):
    """Every layer's spikes from the quantized parameters alone, in int64 numpy, written from
    Lava's PyLifModelBitAcc as simulators/lif.py documents it (du 4095: u is this step's
    a_in << 6, wrapped once into 24 bits; v decays by (4096 - dv) / 4096 rounding toward zero,
    adds u and bias_mant << 6, saturates at 2**23 - 1; spike v > vth << 6, reset to 0)."""
    s = x.numpy().astype(np.int64)
    out = []
    for ql in qnet.layers:
        syn, shape = ql.layer.synapse, ql.layer.shape
        steps, batch = s.shape[:2]
        flat = s.reshape(steps * batch, *s.shape[2:])
        w = ql.weight_int.numpy().astype(np.int64)
        a_in = (flat.reshape(steps * batch, -1) @ w.T if syn.kind == "affine" else
                _conv_int(flat, w, syn.stride, syn.padding)).reshape(steps, batch, *shape)
        bias = ql.bias_mant.numpy() * 64
        v = np.zeros((batch, *shape), dtype=np.int64)
        spikes = np.zeros((steps, batch, *shape), dtype=bool)
        for t in range(steps):
            u = a_in[t] * 64
            u = np.where(u > 2**23, u - 2**24, u)
            u = np.where(u <= -2**23, u + 2**24, u)
            y = v * (4096 - ql.dv)
            v = np.clip(np.sign(y) * (np.abs(y) >> 12) + u + bias, -(2**23 - 1), 2**23 - 1)
            spikes[t] = v > ql.vth * 64
            v = np.where(spikes[t], 0, v)
        out.append(torch.from_numpy(spikes))
        s = spikes.astype(np.int64)
    return out


def _check_quantized_run(net, x, run):
    """What the integer run of a float network must satisfy: its spikes equal, bit for bit,
    Lava's arithmetic on the quantized parameters; those parameters are the float ones within
    the rounding that produced them (even weights: 1 LSB, bias and dv: half an LSB, nothing
    clipped); every layer spikes in both runs; and the float and integer spikes differ only
    as rarely as that rounding explains: the first layer sees the same input spikes in both, so
    at most 1% of its spikes differ; later layers also inherit earlier differences (5%)."""
    from sdm_neuro.compiler.quantize_feedforward import fold

    assert run.qnet.spike_input
    for a, b in zip(run.int_spikes, _lava_lif_reference(run.qnet, x), strict=True):
        assert torch.equal(a, b)
    for i, (ql, f, k) in enumerate(zip(run.qnet.layers, run.float_spikes, run.int_spikes,
                                       strict=True)):
        w, bias, _ = fold(ql.layer)
        assert float((ql.weight_int.double() - w * ql.vth).abs().max()) <= 1 + 1e-9
        assert float((ql.bias_mant.double() - bias * ql.vth).abs().max()) <= 0.5 + 1e-9
        a = float(ql.layer.neurons.retention.reshape(-1)[0])
        assert abs(ql.dv - 4096 * (1 - a)) <= 0.5
        assert run.report["layers"][ql.layer.name]["weights_clipped"] == 0
        assert float(f.sum()) > 0 and int(k.sum()) > 0, f"layer {i} is silent"
        agree = float((f == k.double()).double().mean())
        assert run.report["layers"][ql.layer.name]["spike_agreement"] == agree
        assert agree >= (0.99 if i == 0 else 0.95), (ql.layer.name, agree)


def test_nir_written_by_snntorch_is_read_and_simulated(tmp_path):
    from snntorch import utils as snn_utils
    from snntorch.export_nir import export_to_nir

    model = _snntorch_model(0)
    path = tmp_path / "snntorch.nir"
    nir.write(path, export_to_nir(model, torch.zeros(1, 1, 6, 6), ignore_dims=[0]))
    net = feedforward_from_nir(path)
    assert net.dt == pytest.approx(1e-4) and "snnTorch" in net.source
    x = random_spikes((1, 6, 6), STEPS, BATCH, 0.4, 2)
    ref = _checked_reference(net, x)

    def run_one(xb):
        snn_utils.reset(model)
        return torch.cat([model(xb[t].float())[0].detach().reshape(1, 1, -1)
                          for t in range(xb.shape[0])])

    with torch.no_grad():
        own = _per_sample(run_one, x)
    assert torch.equal(own.double(), ref[-1].reshape(STEPS, BATCH, -1))
    _check_quantized_run(net, x, simulate_feedforward(net, x))


def test_nir_written_by_norse_is_read_and_simulated(tmp_path):
    import norse.torch as norse

    torch.manual_seed(0)
    model = norse.SequentialState(
        torch.nn.Linear(20, 12), norse.IAFCell(norse.IAFParameters(v_th=torch.full((12,), 0.8))),
        torch.nn.Linear(12, 5), norse.IAFCell(norse.IAFParameters(v_th=torch.full((5,), 0.6))))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.mul_(2.0)
    path = tmp_path / "norse.nir"
    nir.write(path, norse.to_nir(model, torch.zeros(20)))
    net = feedforward_from_nir(path)
    assert [layer.neurons.kind for layer in net.layers] == ["IF", "IF"]
    x = random_spikes((20,), STEPS, BATCH, 0.4, 3)
    ref = _checked_reference(net, x)
    state, own = None, []
    with torch.no_grad():
        for t in range(STEPS):
            z, state = model(x[t].float(), state)
            own.append(z)
    assert torch.equal(torch.stack(own).double(), ref[-1])
    _check_quantized_run(net, x, simulate_feedforward(net, x))


def test_analog_input_runs_the_first_synapse_on_the_host(make_feedforward):
    net = make_feedforward(1, "IF")
    x = torch.rand(STEPS, BATCH, *net.input_shape, generator=torch.Generator().manual_seed(0),
                   dtype=torch.float64)
    run = simulate_feedforward(net, x)
    assert not run.qnet.spike_input and run.report["input"].startswith("current")
    first = run.report["layers"][net.layers[0].name]
    assert first["spike_agreement"] > 0.95 and first["rate_integer"] > 0


def _graph(nodes, edges):
    return nir.NIRGraph(nodes, edges, type_check=False)


def test_unsupported_graphs_name_the_node():
    w = np.ones((3, 4))
    inp, out = nir.Input(np.array([4])), nir.Output(np.array([3]))
    aff = nir.Affine(weight=w, bias=np.zeros(3))
    good_if = nir.IF(r=np.ones(3), v_threshold=np.ones(3), v_reset=np.zeros(3))
    cases = {
        "LI": ({"input": inp, "a": aff, "li": nir.LI(tau=np.ones(3), r=np.ones(3),
                                                       v_leak=np.zeros(3)), "output": out},
               [("input", "a"), ("a", "li"), ("li", "output")]),
        "'a' has 1 inputs and 2 outputs": (
            {"input": inp, "a": aff, "n": good_if, "m": good_if, "output": out},
            [("input", "a"), ("a", "n"), ("a", "m"), ("n", "output")]),
        "v_reset = 0.5": ({"input": inp, "a": aff, "n": nir.IF(r=np.ones(3),
                                                                v_threshold=np.ones(3),
                                                                v_reset=np.full(3, 0.5)),
                           "output": out}, [("input", "a"), ("a", "n"), ("n", "output")]),
        "output must be spiking": ({"input": inp, "a": aff, "output": out},
                                   [("input", "a"), ("a", "output")]),
    }
    for needle, (nodes, edges) in cases.items():
        with pytest.raises(ConfigError, match=needle):
            feedforward_from_nir(_graph(nodes, edges))


def test_per_neuron_tau_is_refused_for_fixed_point(make_feedforward):
    from sdm_neuro.ir.feedforward import Layer, Neurons, FeedForwardSNN
    from sdm_neuro.compiler.quantize_feedforward import quantize_feedforward

    net = make_feedforward(0, "LIF")
    layer = net.layers[2]
    a = torch.linspace(0.8, 0.9, layer.shape[0], dtype=torch.float64)
    n = layer.neurons
    bad = Layer(layer.name, layer.synapse, Neurons("LIF", n.threshold, a, n.gain, n.leak))
    net = FeedForwardSNN(net.input_shape, (*net.layers[:2], bad), net.dt)
    with pytest.raises(ConfigError, match="l2.*one dv per process"):
        quantize_feedforward(net, ff_inputs(net))
