"""Sequential SNNs through NIR: this project's float reference against Norse (``from_nir``) and
snnTorch (``import_from_nir``) on the files it writes, and against their own runs of the files
they write; quantization and the integer simulator on them.

Tolerance: the discretisations are the same equations (network.py's docstring), so the only
difference is arithmetic: the tools run float32, the reference float64. A spike can flip only
where the membrane came within rounding of the threshold; each test first asserts the float64
membranes kept ``MARGIN`` (1e-4 threshold, about 100x float32's rounding of these sums) away from
every threshold, then demands identical spikes."""

import nir
import numpy as np
import pytest
import torch

from sdm_neuro.errors import ConfigError
from sdm_neuro.sequential.network import run_float
from sdm_neuro.sequential.nir_io import from_nir, to_nir
from sdm_neuro.sequential.simulate import random_spikes, simulate_sequential

MARGIN = 1e-4
STEPS, BATCH = 16, 3


def _inputs(net, seed=1):
    return random_spikes(net.input_shape, STEPS, BATCH, 0.3, seed)


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
        x = _inputs(net, seed)
        if _margin(net, x)[0] > MARGIN:
            return net, x
    raise AssertionError("no seed keeps the margin")


def _written(net, tmp_path, name="net.nir"):
    path = tmp_path / name
    nir.write(path, to_nir(net))
    return path


def _per_sample(run_one, x):
    """Norse and snnTorch flatten with NIR's batch-free start_dim 0: run one sample at a time."""
    return torch.cat([run_one(x[:, b:b + 1]) for b in range(x.shape[1])], 1)


def test_nir_round_trip_is_exact(make_sequential, tmp_path):
    for kind in ("IF", "LIF", "LIF-r1"):
        net = make_sequential(3, kind)
        path = _written(net, tmp_path, f"{kind}.nir")
        back = from_nir(nir.read(path))  # plain nir.read, type checking on
        assert back.dt == net.dt and back.input_shape == net.input_shape
        x = _inputs(net)
        for a, b in zip(run_float(net, x), run_float(back, x), strict=True):
            assert torch.equal(a, b)


@pytest.mark.parametrize("kind", ["IF", "LIF-r1"])
def test_norse_runs_our_nir_export(make_sequential, tmp_path, kind):
    import norse.torch as norse

    # Norse starts a LIF at v = v_leak, NIR and Loihi at 0: no leak drive, so both start at 0
    net, x = _clear_case(make_sequential, kind, leak=False)
    ref = _checked_reference(net, x)
    module = norse.from_nir(nir.read(_written(net, tmp_path)), dt=net.dt)

    def run_one(xb):
        state, out = None, []
        for t in range(xb.shape[0]):
            z, state = module(xb[t].float(), state)
            out.append(z.detach().reshape(1, 1, -1))
        return torch.cat(out)

    assert torch.equal(_per_sample(run_one, x).double(), ref[-1].reshape(STEPS, BATCH, -1))


def test_snntorch_runs_our_nir_export(make_sequential, tmp_path):
    from snntorch.import_nir import import_from_nir

    # snnTorch takes one threshold per layer and no v_leak
    net, x = _clear_case(make_sequential, "LIF", uniform=True, leak=False)
    ref = _checked_reference(net, x)
    graph = nir.read(_written(net, tmp_path))

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


def test_nir_written_by_snntorch_is_read_and_simulated(tmp_path):
    from snntorch import utils as snn_utils
    from snntorch.export_nir import export_to_nir

    model = _snntorch_model(0)
    path = tmp_path / "snntorch.nir"
    nir.write(path, export_to_nir(model, torch.zeros(1, 1, 6, 6), ignore_dims=[0]))
    net = from_nir(path)
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
    run = simulate_sequential(net, x)
    for name, layer in run.report["layers"].items():
        assert layer["spike_agreement"] > 0.9, (name, layer)
    assert sum(int(s.sum()) for s in run.int_spikes) > 0


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
    net = from_nir(path)
    assert [layer.neurons.kind for layer in net.layers] == ["IF", "IF"]
    x = random_spikes((20,), STEPS, BATCH, 0.4, 3)
    ref = _checked_reference(net, x)
    state, own = None, []
    with torch.no_grad():
        for t in range(STEPS):
            z, state = model(x[t].float(), state)
            own.append(z)
    assert torch.equal(torch.stack(own).double(), ref[-1])
    run = simulate_sequential(net, x)
    assert run.report["layers"][net.layers[-1].name]["spike_agreement"] > 0.9


def test_analog_input_runs_the_first_synapse_on_the_host(make_sequential):
    net = make_sequential(1, "IF")
    x = torch.rand(STEPS, BATCH, *net.input_shape, generator=torch.Generator().manual_seed(0),
                   dtype=torch.float64)
    run = simulate_sequential(net, x)
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
            from_nir(_graph(nodes, edges))


def test_per_neuron_tau_is_refused_for_fixed_point(make_sequential):
    from sdm_neuro.sequential.network import Layer, Neurons, SequentialSNN
    from sdm_neuro.sequential.quantize import quantize_sequential

    net = make_sequential(0, "LIF")
    layer = net.layers[2]
    a = torch.linspace(0.8, 0.9, layer.shape[0], dtype=torch.float64)
    n = layer.neurons
    bad = Layer(layer.name, layer.synapse, Neurons("LIF", n.threshold, a, n.gain, n.leak))
    net = SequentialSNN(net.input_shape, (*net.layers[:2], bad), net.dt)
    with pytest.raises(ConfigError, match="l2.*one dv per process"):
        quantize_sequential(net, _inputs(net))


def test_cli_simulates_and_exports_a_nir_file(make_sequential, tmp_path):
    import json

    from sdm_neuro.cli import main

    net = make_sequential(0, "LIF")
    src = _written(net, tmp_path)
    out = tmp_path / "sim"
    assert main(["simulate", str(src), "--time-steps", "12", "--num", "2", "--out", str(out),
                 "--quiet"]) == 0
    rep = json.loads((out / "simulate.json").read_text())
    assert rep["dt"] == net.dt and list(rep["layers"]) == ["0.conv>0.lif", "1.conv>1.lif",
                                                         "2.affine>2.lif"]
    assert (out / "rates.png").stat().st_size > 0 and (out / "spikes.npz").is_file()
    exp = tmp_path / "exp"
    assert main(["export", str(src), "--target", "nir", "--time-steps", "12", "--num", "2",
                 "--out", str(exp)]) == 0
    manifest = json.loads((exp / "manifest.json").read_text())
    assert set(manifest["files"]) == {"network.nir", "quantized.pt"}
    back = from_nir(exp / "network.nir")
    for a, b in zip(run_float(net, _inputs(net)), run_float(back, _inputs(net)), strict=True):
        assert torch.equal(a, b)
    # the bundle simulates exactly as the file it was exported from (same input, seed 0), and
    # with its stored integer parameters on any other input
    out2 = tmp_path / "sim2"
    assert main(["simulate", "--bundle", str(exp), "--time-steps", "12", "--num", "2",
                 "--out", str(out2), "--quiet"]) == 0
    with np.load(out / "spikes.npz") as a, np.load(out2 / "spikes.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for k in a.files:
            assert np.array_equal(a[k], b[k]), k
    out3 = tmp_path / "sim3"
    assert main(["simulate", "--bundle", str(exp), "--time-steps", "12", "--num", "2",
                 "--seed", "7", "--out", str(out3), "--quiet"]) == 0
    rep3 = json.loads((out3 / "simulate.json").read_text())
    assert {k: v["vth"] for k, v in rep3["layers"].items()} == \
        {k: v["vth"] for k, v in rep["layers"].items()}
    (exp / "quantized.pt").write_bytes(b"changed")
    assert main(["simulate", "--bundle", str(exp), "--out", str(tmp_path / "x"), "--quiet"]) == 4


def test_cli_bad_nir_file_fails_cleanly(tmp_path):
    from sdm_neuro.cli import main

    bad = tmp_path / "bad.nir"
    bad.write_bytes(b"not hdf5")
    out = tmp_path / "out"
    assert main(["simulate", str(bad), "--out", str(out), "--quiet"]) == 4
    assert not out.exists()


def _dense(ql):
    """The layer's integer synapses as a dense [targets, sources] matrix, by unit impulses."""
    from torch.nn import functional as F

    s = ql.layer.synapse
    n_in = int(np.prod(s.in_shape))
    eye = torch.eye(n_in, dtype=torch.float64).reshape(n_in, *s.in_shape)
    w = ql.weight_int.double()
    out = eye.flatten(1) @ w.T if s.kind == "affine" else F.conv2d(eye, w, None, s.stride,
                                                                   s.padding)
    return out.reshape(n_in, -1).T


PROFILE = """name = "tiny"
title = "t"
kind = "neuromorphic"
process = "p"
description = "d"
[limits]
neurons_per_core = { value = 50, tag = "datasheet", source = "m" }
fan_in_per_neuron_max = { value = 1, tag = "datasheet", source = "m" }
fan_out_per_neuron_max = { value = 1, tag = "datasheet", source = "m" }
cores_per_chip = { value = 4, tag = "datasheet", source = "m" }
[energy]
synop_pj = { value = 1.0, tag = "estimated", source = "m" }
"""


def test_sequential_constraint_counts_are_exact(make_sequential, tmp_path):
    from sdm_neuro.hardware_profiles.constraints import check_sequential
    from sdm_neuro.hardware_profiles.profile import get_profile
    from sdm_neuro.sequential.quantize import quantize_sequential

    net = make_sequential(0, "IF")
    qnet = quantize_sequential(net, _inputs(net))
    (tmp_path / "tiny.toml").write_text(PROFILE)
    placement = check_sequential(qnet, get_profile(tmp_path / "tiny.toml"))
    msgs = {str(v) for v in placement.violations}
    for i, ql in enumerate(qnet.layers):
        nz = _dense(ql) != 0
        fin = int(nz.sum(1).max())
        assert f"{ql.layer.name}: fan-in (source neurons per neuron) is {fin:,}, limit 1" in msgs
        if i > 0:
            fout = int(nz.sum(0).max())
            prev = qnet.layers[i - 1].layer.name
            assert f"{prev}: fan-out (targets per neuron) is {fout:,}, limit 1" in msgs
    want = {ql.layer.name: -(-int(np.prod(ql.layer.shape)) // 50) for ql in qnet.layers}
    assert placement.cores == want and placement.chips == -(-sum(want.values()) // 4)
    # the CLI: a violation of an asked-for profile is exit code 8 and no output
    from sdm_neuro.cli import main

    out = tmp_path / "exp"
    assert main(["export", str(_written(net, tmp_path)), "--profile",
                 str(tmp_path / "tiny.toml"), "--num", "2", "--out", str(out)]) == 8
    assert not out.exists()
