"""Malformed input on the feed-forward (NIR) path: every case is refused with the documented
exception class (exit code) and a message naming the file, node, parameter or option and the
rule it broke; nothing is accepted silently and nothing is an internal error (exit 70)."""

import json
import os

import h5py
import nir
import numpy as np
import pytest
import torch

from sdm_neuro.cli import main as cli
from sdm_neuro.errors import CheckpointError, ConfigError, ExportError, UsageError
from sdm_neuro.frontends.feedforward_nir import MAX_TENSOR_ELEMENTS, MAX_TOTAL_ELEMENTS, feedforward_from_nir
from sdm_neuro.run.feedforward import load_input, network_input


def _nodes():
    """A valid two-layer network: Affine -> LIF -> Affine -> IF (Norse's r = 1, dt 1e-3)."""
    g = np.random.default_rng(0)
    return {
        "in": nir.Input(np.array([4])),
        "fc1": nir.Affine(weight=g.normal(0.3, 1, (3, 4)), bias=np.zeros(3)),
        "lif1": nir.LIF(tau=np.full(3, 5e-3), r=np.ones(3), v_leak=np.zeros(3),
                        v_threshold=np.ones(3), v_reset=np.zeros(3)),
        "fc2": nir.Affine(weight=g.normal(0.3, 1, (2, 3)), bias=np.zeros(2)),
        "if2": nir.IF(r=np.ones(2), v_threshold=np.ones(2), v_reset=np.zeros(2)),
        "out": nir.Output(np.array([2]))}


EDGES = [("in", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "if2"), ("if2", "out")]


def _write(path, nodes=None, edges=EDGES):
    nir.write(path, nir.NIRGraph(_nodes() if nodes is None else nodes, edges, type_check=False))
    return path


def _graph(nodes, edges=EDGES):
    return nir.NIRGraph(nodes, edges, type_check=False)


def _cli_fails(capsys, argv, code, *needles):
    rc = cli(argv)
    err = capsys.readouterr().err
    assert rc == code, err
    assert "internal error" not in err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def test_valid_file_is_accepted(tmp_path):
    """The base every malformed case below changes one thing of."""
    net = feedforward_from_nir(_write(tmp_path / "ok.nir"))
    assert [layer.name for layer in net.layers] == ["fc1>lif1", "fc2>if2"]


# --- 2. NaN / inf in parameters ------------------------------------------------------------

@pytest.mark.parametrize("node,attr", [("fc1", "weight"), ("fc1", "bias"), ("lif1", "tau"),
                                       ("lif1", "r"), ("lif1", "v_leak"),
                                       ("lif1", "v_threshold"), ("if2", "v_threshold"),
                                       ("if2", "r"), ("fc2", "weight")])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_parameter_is_refused(tmp_path, node, attr, bad):
    nodes = _nodes()
    getattr(nodes[node], attr).flat[1] = bad
    path = _write(tmp_path / "bad.nir", nodes)
    with pytest.raises(ConfigError) as e:
        feedforward_from_nir(path)
    msg = str(e.value)
    assert str(path) in msg and node in msg and f"{attr}: 1 of " in msg and "NaN or inf" in msg


def test_nan_parameter_cli_exit_code(tmp_path, capsys):
    nodes = _nodes()
    nodes["lif1"].tau[0] = np.nan
    path = _write(tmp_path / "nan.nir", nodes)
    _cli_fails(capsys, ["simulate", str(path), "--out", str(tmp_path / "o"), "--quiet"], 3,
               str(path), "'lif1'", "tau", "NaN or inf")
    assert not (tmp_path / "o").exists()


# --- 3. no edges, unknown node types ---------------------------------------------------------

def test_file_without_edges_is_refused(tmp_path, capsys):
    path = _write(tmp_path / "noedges.nir", edges=[])
    with pytest.raises(ConfigError, match="has no edges"):
        feedforward_from_nir(path)
    _cli_fails(capsys, ["simulate", str(path), "--out", str(tmp_path / "o"), "--quiet"], 3,
               str(path), "no edges")
    with pytest.raises(ConfigError, match="has no edges"):
        feedforward_from_nir(_graph({"in": nir.Input(np.array([4])), "out": nir.Output(np.array([4]))}, []))


def test_file_missing_its_edges_dataset_is_refused(tmp_path, capsys):
    path = _write(tmp_path / "nokey.nir")
    with h5py.File(path, "r+") as f:
        del f["node/edges"]
    _cli_fails(capsys, ["simulate", str(path), "--out", str(tmp_path / "o"), "--quiet"], 4,
               str(path), "'edges'")


def test_edge_to_a_missing_node_is_refused():
    with pytest.raises(ConfigError, match=r"edge \('if2', 'nowhere'\)"):
        feedforward_from_nir(_graph(_nodes(), [*EDGES[:-1], ("if2", "nowhere")]))


@pytest.mark.parametrize("kind", ["Bogus", "LI"])
def test_unknown_or_unsupported_node_type_is_refused(tmp_path, capsys, kind):
    path = _write(tmp_path / "unknown.nir")
    with h5py.File(path, "r+") as f:
        del f["node/nodes/fc2/type"]
        f["node/nodes/fc2"].create_dataset("type", data=kind, dtype=h5py.string_dtype())
    with pytest.raises(ConfigError, match=f"node 'fc2' is of type '{kind}'"):
        feedforward_from_nir(path)
    _cli_fails(capsys, ["export", str(path), "--out", str(tmp_path / "o")], 3, str(path),
               f"'{kind}'", "'fc2'")


def test_node_without_type_is_refused(tmp_path):
    path = _write(tmp_path / "notype.nir")
    with h5py.File(path, "r+") as f:
        del f["node/nodes/lif1/type"]
    with pytest.raises(CheckpointError, match=f"{path}: node 'lif1' has no 'type'"):
        feedforward_from_nir(path)


# --- 4. zero-size shapes ---------------------------------------------------------------------

def test_zero_size_shapes_are_refused():
    nodes = _nodes()
    nodes["fc1"] = nir.Affine(weight=np.zeros((0, 4)), bias=np.zeros(0))
    with pytest.raises(ConfigError, match=r"Affine 'fc1': weight of shape \(0, 4\)"):
        feedforward_from_nir(_graph(nodes))
    nodes = _nodes()
    nodes["in"] = nir.Input(np.array([0]))
    with pytest.raises(ConfigError, match=r"Input shape: \[0\]"):
        feedforward_from_nir(_graph(nodes))
    nodes = _nodes()  # a kernel larger than its input: an empty output map
    nodes["in"] = nir.Input(np.array([1, 3, 3]))
    nodes["fc1"] = nir.Conv2d(input_shape=(3, 3), weight=np.ones((3, 1, 5, 5)), stride=1,
                              padding=0, dilation=1, groups=1, bias=np.zeros(3))
    with pytest.raises(ConfigError, match=r"Conv2d 'fc1': output shape \(3, -1, -1\)"):
        feedforward_from_nir(_graph(nodes))


def test_fractional_or_zero_conv_stride_is_refused():
    for stride, needle in ((np.array([1.5, 1.5]), r"stride: \[1.5, 1.5\]"),
                           (np.array([0, 1]), r"stride: \[0, 1\]")):
        nodes = _nodes()
        nodes["in"] = nir.Input(np.array([1, 3, 3]))
        conv = nir.Conv2d(input_shape=(3, 3), weight=np.ones((3, 1, 1, 1)), stride=1,
                          padding=0, dilation=1, groups=1, bias=np.zeros(3))
        conv.stride = stride  # nir's own constructor would divide by it
        nodes["fc1"] = conv
        nodes["fc2"] = nir.Affine(weight=np.ones((2, 27)), bias=np.zeros(2))
        with pytest.raises(ConfigError, match=needle):
            feedforward_from_nir(_graph(nodes))


def test_bias_of_the_wrong_shape_is_refused():
    nodes = _nodes()
    nodes["fc2"] = nir.Affine(weight=np.ones((2, 3)), bias=np.zeros(5))
    with pytest.raises(ConfigError, match=r"Affine 'fc2': bias of shape \(5,\) does not fit 2"):
        feedforward_from_nir(_graph(nodes))


def test_non_numeric_weights_are_refused():
    nodes = _nodes()
    nodes["fc2"] = nir.Affine(weight=np.full((2, 3), "1"), bias=np.zeros(2))
    with pytest.raises(ConfigError, match=r"Affine 'fc2': weight: values of type <U1"):
        feedforward_from_nir(_graph(nodes))


# --- 5. sizes declared in the HDF5 file, files that are not regular -------------------------

def test_huge_declared_weight_is_refused_before_reading(tmp_path, capsys):
    path = _write(tmp_path / "huge.nir")
    with h5py.File(path, "r+") as f:  # 40000 x 40000 float32 (6.4 GB), never written: tiny file
        del f["node/nodes/fc1/weight"]
        f["node/nodes/fc1"].create_dataset("weight", shape=(40000, 40000), dtype="f4",
                                           chunks=(1000, 1000), compression="gzip")
    assert path.stat().st_size < 1 << 20
    with pytest.raises(CheckpointError) as e:
        feedforward_from_nir(path)
    assert str(path) in str(e.value) and "/node/nodes/fc1/weight" in str(e.value)
    assert "(40000, 40000)" in str(e.value) and f"{MAX_TENSOR_ELEMENTS:,}" in str(e.value)
    _cli_fails(capsys, ["simulate", str(path), "--out", str(tmp_path / "o"), "--quiet"], 4,
               "/node/nodes/fc1/weight")


def test_total_declared_size_is_limited(tmp_path):
    path = _write(tmp_path / "many.nir")
    side = int(np.sqrt(MAX_TENSOR_ELEMENTS))  # each at the per-tensor limit, three exceed total
    assert 3 * side * side > MAX_TOTAL_ELEMENTS
    with h5py.File(path, "r+") as f:
        for k in range(3):
            f.create_dataset(f"extra{k}", shape=(side, side), dtype="f4", chunks=(256, 256),
                             compression="gzip")
    with pytest.raises(CheckpointError, match=f"more than {MAX_TOTAL_ELEMENTS:,} elements in all"):
        feedforward_from_nir(path)


def test_dataset_stored_outside_the_file_is_refused(tmp_path):
    path = _write(tmp_path / "external.nir")
    with h5py.File(path, "r+") as f:
        del f["node/nodes/fc1/bias"]
        f["node/nodes/fc1"].create_dataset("bias", shape=(3,), dtype="f8",
                                           external=[("/dev/zero", 0, 24)])
    with pytest.raises(CheckpointError, match="'/node/nodes/fc1/bias' is stored outside"):
        feedforward_from_nir(path)
    path = _write(tmp_path / "link.nir")
    with h5py.File(path, "r+") as f:
        del f["node/nodes/fc1/bias"]
        f["node/nodes/fc1/bias"] = h5py.ExternalLink("/dev/zero", "/x")
    with pytest.raises(CheckpointError, match="/node/nodes/fc1/bias is a ExternalLink"):
        feedforward_from_nir(path)


def test_nir_file_that_is_a_pipe_or_a_device_is_refused(tmp_path, capsys):
    fifo = tmp_path / "pipe.nir"
    os.mkfifo(fifo)
    with pytest.raises(CheckpointError, match="is a named pipe"):
        feedforward_from_nir(fifo)
    _cli_fails(capsys, ["simulate", str(fifo), "--out", str(tmp_path / "o"), "--quiet"], 4,
               str(fifo), "named pipe")
    with pytest.raises(CheckpointError, match="/dev/zero: is a device"):
        feedforward_from_nir("/dev/zero")
    with pytest.raises(CheckpointError, match="is a directory"):
        feedforward_from_nir(tmp_path)


def test_not_an_hdf5_file_is_refused(tmp_path):
    path = tmp_path / "text.nir"
    path.write_text("not hdf5")
    with pytest.raises(CheckpointError, match=f"{path}: not an HDF5 file"):
        feedforward_from_nir(path)


# --- 6. --input X.npy ------------------------------------------------------------------------

def _save_raw(path, arr):
    with open(path, "wb") as f:
        np.save(f, arr, allow_pickle=True)
    return path


INPUTS = {
    "strings": (np.full((2, 4), "a"), "elements of type <U1"),
    "bytes": (np.full((2, 4), b"a"), "elements of type |S1"),
    "structured": (np.zeros((2, 4), dtype=[("a", "f4"), ("b", "i4")]), "records"),
    "objects": (np.array([[1, None, 2, 3]] * 2, dtype=object), "elements of type object"),
    "complex": (np.ones((2, 4), dtype=np.complex64), "elements of type complex64"),
    "zero batch": (np.zeros((0, 4)), "zero-length axis"),
    "zero steps": (np.zeros((0, 2, 4)), "zero-length axis"),
    "nan": (np.array([[0, np.nan, 1, 0]] * 2), "NaN or inf"),
    "inf": (np.array([[0, 1, np.inf, 0]] * 2), "NaN or inf"),
    "wrong shape": (np.ones((2, 5)), "[B, 4] or [T, B, 4]"),
    "too many dims": (np.ones((1, 1, 2, 4)), "[B, 4] or [T, B, 4]"),
    "scalar": (np.float64(1.0), "[B, 4] or [T, B, 4]"),
}


@pytest.mark.parametrize("case", list(INPUTS))
def test_bad_input_array_is_refused(tmp_path, case):
    arr, needle = INPUTS[case]
    path = _save_raw(tmp_path / "x.npy", arr)
    net = feedforward_from_nir(_write(tmp_path / "ok.nir"))
    with pytest.raises(UsageError) as e:
        network_input(net, path, steps=4, batch=2, rate=0.2, seed=0)
    assert str(path) in str(e.value) and needle in str(e.value)


def test_input_whose_header_lies_about_its_size_is_refused(tmp_path, capsys):
    lie = tmp_path / "lie.npy"
    with open(lie, "wb") as f:  # declares 300000000 x 4 float64 (9.6 GB), holds 96 bytes
        np.lib.format.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False,
                                                 "shape": (300_000_000, 4)})
        f.write(np.ones((3, 4)).tobytes())
    with pytest.raises(UsageError, match=r"its header declares \(300000000, 4\) float64 "
                                         r"\(9,600,000,000 bytes of data\), the file holds 96"):
        load_input(lie, (4,), 4)
    data = _save_raw(tmp_path / "x.npy", np.ones((3, 4))).read_bytes()
    trunc = tmp_path / "t.npy"
    trunc.write_bytes(data[:-8])  # the header's shape, one element short
    with pytest.raises(UsageError, match=r"\(3, 4\) float64 \(96 bytes of data\), the file "
                                         r"holds 88"):
        load_input(trunc, (4,), 4)
    src = _write(tmp_path / "ok.nir")
    _cli_fails(capsys, ["simulate", str(src), "--input", str(trunc), "--out",
                        str(tmp_path / "o"), "--quiet"], 2, str(trunc), "96 bytes")


def test_input_that_is_not_npy_or_not_a_file_is_refused(tmp_path):
    bad = tmp_path / "x.npy"
    bad.write_bytes(b"\x93NUMPY\x01\x00garbage")
    with pytest.raises(UsageError, match=f"{bad}: not a .npy array"):
        load_input(bad, (4,), 4)
    fifo = tmp_path / "fifo.npy"
    os.mkfifo(fifo)
    with pytest.raises(UsageError, match=f"{fifo}: is a named pipe"):
        load_input(fifo, (4,), 4)
    with pytest.raises(UsageError, match="no such file"):
        load_input(tmp_path / "missing.npy", (4,), 4)


def test_input_run_size_is_checked_before_allocating(tmp_path):
    net = feedforward_from_nir(_write(tmp_path / "ok.nir"))
    path = _save_raw(tmp_path / "x.npy", np.ones((2, 4)))
    with pytest.raises(UsageError, match=f"{path}: 1000000000 time steps x 2 samples"):
        network_input(net, path, steps=10**9, batch=2, rate=0.2, seed=0)
    with pytest.raises(UsageError, match="--time-steps x --num: 1000000 time steps x 100000"):
        network_input(net, None, steps=10**6, batch=10**5, rate=0.2, seed=0)


def test_graded_input_beyond_lavas_range_is_refused(tmp_path):
    from sdm_neuro.compiler.quantize_feedforward import quantize_feedforward
    from sdm_neuro.simulators.feedforward import run_integer

    net = feedforward_from_nir(_write(tmp_path / "ok.nir"))
    calib = torch.rand(4, 2, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    qnet = quantize_feedforward(net, calib)
    assert not qnet.spike_input
    with pytest.raises(UsageError, match="layer 'fc1>lif1': the input drives it with"):
        run_integer(qnet, calib * 1e12)
    # a network quantized for 0/1 spikes does not take a current (its weights are on chip)
    qspk = quantize_feedforward(net, (calib > 0.5).double())
    with pytest.raises(UsageError, match="values other than 0 and 1"):
        run_integer(qspk, calib)


def test_netx_run_refuses_input_it_would_cast(tmp_path):
    """run_netx hands Lava int8 spikes: a current or a wrong shape is refused before Lava."""
    from sdm_neuro.export.netx import run_netx
    from sdm_neuro.compiler.quantize_feedforward import quantize_feedforward

    net = feedforward_from_nir(_write(tmp_path / "ok.nir"))
    qnet = quantize_feedforward(net, torch.ones(4, 2, 4, dtype=torch.float64))
    with pytest.raises(UsageError, match="values other than 0 and 1"):
        run_netx(qnet, torch.full((4, 2, 4), 0.5, dtype=torch.float64), path=tmp_path / "n.net")
    with pytest.raises(UsageError, match=r"shape \(4, 2, 5\); the network runs \[T, B, 4\]"):
        run_netx(qnet, torch.ones(4, 2, 5, dtype=torch.float64), path=tmp_path / "n.net")


# --- 7. options out of range, in the library functions ---------------------------------------

@pytest.mark.parametrize("kw,needle", [
    ({"steps": 0}, "--time-steps must be an integer >= 1, got 0"),
    ({"steps": -3}, "--time-steps must be an integer >= 1, got -3"),
    ({"steps": 2.5}, "--time-steps must be an integer >= 1, got 2.5"),
    ({"batch": 0}, "--num must be an integer >= 1, got 0"),
    ({"rate": float("nan")}, "--rate must be a spike probability in (0, 1], got nan"),
    ({"rate": 0.0}, "--rate must be a spike probability in (0, 1], got 0.0"),
    ({"seed": -1}, "--seed must be an integer in [0, 2**63), got -1"),
])
def test_bad_run_options_are_refused(tmp_path, kw, needle):
    net = feedforward_from_nir(_write(tmp_path / "ok.nir"))
    args = {"steps": 4, "batch": 2, "rate": 0.2, "seed": 0, **kw}
    with pytest.raises(UsageError) as e:
        network_input(net, None, **args)
    assert needle in str(e.value)


def test_time_steps_zero_with_an_input_file_is_refused(tmp_path):
    net = feedforward_from_nir(_write(tmp_path / "ok.nir"))
    path = _save_raw(tmp_path / "x.npy", np.ones((2, 4)))
    with pytest.raises(UsageError, match="--time-steps must be an integer >= 1, got 0"):
        network_input(net, path, steps=0, batch=2, rate=0.2, seed=0)


@pytest.mark.parametrize("dt", [0.0, -1e-3, float("nan"), float("inf"), "1e-3"])
def test_bad_dt_is_refused(tmp_path, dt):
    path = _write(tmp_path / "ok.nir")
    with pytest.raises(UsageError, match=r"--dt must be a finite time step > 0, got "):
        feedforward_from_nir(path, dt=dt)


def test_bad_dt_in_the_file_metadata_is_refused(tmp_path):
    for dt, needle in ((float("nan"), r"\[nan\]"), (-1.0, r"\[-1\]"), ("x", r"\[x\]")):
        path = tmp_path / "meta.nir"
        nir.write(path, nir.NIRGraph(_nodes(), EDGES, type_check=False,
                                     metadata={"sdm_neuro": {"dt": dt}}))
        with pytest.raises(ConfigError, match=f"{path}: metadata sdm_neuro.dt is .*{needle}"):
            feedforward_from_nir(path)


def test_tau_equal_to_dt_is_refused_with_the_layer():
    """tau == dt forgets the membrane every step: retention 0, dv 4096, beyond Lava's 4095."""
    from sdm_neuro.compiler.quantize_feedforward import quantize_feedforward

    net = feedforward_from_nir(_graph(_nodes()), dt=5e-3)
    with pytest.raises(ConfigError, match=r"layer 'fc1>lif1': retention 0 per step gives "
                                          r"dv = 4096"):
        quantize_feedforward(net, torch.ones(2, 1, 4, dtype=torch.float64))


# --- 8. a bundle's quantized.pt, with the manifest's hashes updated ---------------------------

@pytest.fixture(scope="module")
def bundle_src(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bundle")
    src = _write(tmp / "net.nir")
    assert cli(["export", str(src), "--target", "nir", "--time-steps", "8", "--num", "2",
                "--out", str(tmp / "B")]) == 0
    return tmp / "B"


def _tampered(bundle, tmp_path, state=None, raw=None):
    """A copy of ``bundle`` with quantized.pt replaced and the manifest's hash updated."""
    import shutil

    from sdm_neuro.fileio import sha256_file

    out = tmp_path / "T"
    shutil.copytree(bundle, out)
    q = out / "quantized.pt"
    if raw is not None:
        q.write_bytes(raw)
    else:
        torch.save(state, q)
    man = json.loads((out / "manifest.json").read_text())
    man["files"]["quantized.pt"]["sha256"] = sha256_file(q)
    (out / "manifest.json").write_text(json.dumps(man))
    return out


def _state(bundle):
    return torch.load(bundle / "quantized.pt", weights_only=True)


def _bad_states(bundle):
    def edit(fn):
        s = _state(bundle)
        fn(s)
        return s

    def row(i, key, value):
        return lambda s: s["layers"][i].__setitem__(key, value)

    return {
        "not a dict": (["x"], "not the integer parameters"),
        "no layers": ({"spike_input": True, "report": {"layers": {}}},
                      "not the integer parameters"),
        "renamed": (edit(row(0, "name", "zz")), "its layers ['zz', 'fc2>if2']"),
        "weights float": (edit(lambda s: s["layers"][0].__setitem__(
            "weight_int", s["layers"][0]["weight_int"].float())),
            "layer 'fc1>lif1': weight_int is torch.float32"),
        "weights shape": (edit(row(1, "weight_int", torch.zeros(2, 2, dtype=torch.int16))),
                          "layer 'fc2>if2': weight_int is torch.int16 (2, 2)"),
        "weights range": (edit(row(1, "weight_int", torch.full((2, 3), 300, dtype=torch.int16))),
                          "weight_int has values in [300, 300]; expected [-256, 254]"),
        "weights odd": (edit(row(1, "weight_int", torch.full((2, 3), 3, dtype=torch.int16))),
                        "weight_int has odd values"),
        "bias range": (edit(row(0, "bias_mant", torch.full((3,), 5000))),
                       "bias_mant has values in [5000, 5000]; expected [-4096, 4095]"),
        "vth zero": (edit(row(0, "vth", 0)), "layer 'fc1>lif1': vth is 0"),
        "dv string": (edit(row(0, "dv", "410")), "layer 'fc1>lif1': dv is '410'"),
        "report disagrees": (edit(lambda s: s["report"]["layers"]["fc2>if2"].__setitem__(
            "vth", 7)), "layer 'fc2>if2': report vth is 7, the parameters say"),
        "report nan": (edit(lambda s: s["report"]["layers"]["fc1>lif1"].__setitem__(
            "range_thresholds", float("nan"))), "report range_thresholds is nan"),
    }


def test_bundle_with_malformed_quantized_parameters_is_refused(bundle_src, tmp_path, capsys):
    from sdm_neuro.export.feedforward_bundle import read_feedforward_bundle

    read_feedforward_bundle(bundle_src)  # the untouched bundle reads
    for case, (state, needle) in _bad_states(bundle_src).items():
        b = _tampered(bundle_src, tmp_path / case.replace(" ", "_"), state)
        with pytest.raises(ExportError) as e:
            read_feedforward_bundle(b)
        assert str(b / "quantized.pt") in str(e.value) and needle in str(e.value), (case, e)
    b = _tampered(bundle_src, tmp_path / "cli", _bad_states(bundle_src)["weights odd"][0])
    _cli_fails(capsys, ["simulate", "--bundle", str(b), "--out", str(tmp_path / "o"),
                        "--quiet"], 7, str(b / "quantized.pt"), "odd values")


def test_bundle_with_truncated_quantized_parameters_is_refused(bundle_src, tmp_path, capsys):
    data = (bundle_src / "quantized.pt").read_bytes()
    b = _tampered(bundle_src, tmp_path, raw=data[:len(data) // 2])
    _cli_fails(capsys, ["simulate", "--bundle", str(b), "--out", str(tmp_path / "o"),
                        "--quiet"], 7, str(b / "quantized.pt"), "truncated or corrupted")


def test_bundle_whose_manifest_omits_quantized_pt_is_refused(bundle_src, tmp_path):
    from sdm_neuro.export.feedforward_bundle import read_feedforward_bundle

    b = _tampered(bundle_src, tmp_path, raw=(bundle_src / "quantized.pt").read_bytes())
    man = json.loads((b / "manifest.json").read_text())
    del man["files"]["quantized.pt"]
    (b / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(ExportError, match="does not list quantized.pt"):
        read_feedforward_bundle(b)


def test_layer_names_metadata_must_match_the_layers(tmp_path):
    path = tmp_path / "names.nir"
    nir.write(path, nir.NIRGraph(_nodes(), EDGES, type_check=False, metadata={
        "sdm_neuro": {"layer_names": json.dumps(["only one"])}}))
    with pytest.raises(ConfigError, match="metadata sdm_neuro.layer_names .* 2 distinct names"):
        feedforward_from_nir(path)
