"""``sdm-neuro simulate``: a U-Net export bundle simulates as its checkpoint does (and a malformed
one is refused with exit code 7); feed-forward NIR files and their bundles: the CLI's --dt,
--input, node names, and a bad file."""

import json
import shutil

import nir
import numpy as np
import pytest
import torch

from sdm_neuro.cli import main as cli
from sdm_neuro.errors import ExportError
from sdm_neuro.ir.feedforward import run_float
from sdm_neuro.export.bundle import NIR_FILE
from sdm_neuro.frontends.feedforward_nir import feedforward_from_nir
from sdm_test_support import ff_inputs, ff_written, set_nir_field

# ---------------------------------------------------------------------------------------------
# U-Net bundles
# ---------------------------------------------------------------------------------------------

def test_simulate_bundle_gives_the_checkpoints_samples(tmp_path, randomized_checkpoint, capsys):
    out = tmp_path / "bundle"
    assert cli(["export", str(randomized_checkpoint), "--target", "loihi2", "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["target"] == "loihi2" and manifest["constraints"]["fits"]
    assert manifest["checkpoint"]["sha256"] and manifest["timing"]["call_length"] > 2
    common = ["--sampler", "ddim", "--steps", "3", "--num", "3", "--batch", "3", "--quiet"]
    assert cli(["simulate", str(randomized_checkpoint), *common, "--out", str(tmp_path / "a")]) == 0
    assert cli(["simulate", "--bundle", str(out), *common, "--out", str(tmp_path / "b")]) == 0
    a, b = (np.load(tmp_path / d / "samples.npy") for d in ("a", "b"))
    assert np.array_equal(a, b)
    # the equality is not vacuous: every population spikes somewhere and nowhere always, and
    # the bundle's run has the checkpoint's spike counts, population by population
    layers_a, layers_b = (json.loads((tmp_path / d / "simulate.json").read_text())["layers"]
                          for d in ("a", "b"))
    assert layers_a.keys() == layers_b.keys() and len(layers_a) == 19
    for name, layer in layers_a.items():
        assert 0 < layer["spike_rate"] < 1, (name, layer["spike_rate"])
        assert layer["spikes_per_call"] == layers_b[name]["spikes_per_call"], name
    # the bundle alone (its checkpoint gone) still simulates, without the float comparison
    randomized_checkpoint.unlink()
    assert cli(["simulate", "--bundle", str(out), *common, "--out", str(tmp_path / "c")]) == 0
    assert np.array_equal(np.load(tmp_path / "c" / "samples.npy"), a)
    assert not (tmp_path / "c" / "float_samples.npy").exists()


# A malformed bundle: the micro model's bundle (tests/conftest.py) with one value changed and
# its hashes updated to match, as tests/export/test_bundle_malformed.py changes it.

@pytest.fixture
def bundle(tmp_path, micro_bundle):
    out = tmp_path / "b"
    shutil.copytree(micro_bundle[0], out)
    return out





def test_cli_exit_code_of_a_malformed_bundle(bundle, tmp_path, capsys):
    set_nir_field(bundle, "downblocks.0.neuron2", "vth", 1 << 20)
    code = cli(["simulate", "--bundle", str(bundle), "--num", "1", "--steps", "1",
                "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert code == ExportError.exit_code, err
    assert str(bundle / NIR_FILE) in err and "downblocks.0.neuron2: vth" in err
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------------------------
# feed-forward NIR files
# ---------------------------------------------------------------------------------------------





def test_cli_simulates_and_exports_a_nir_file(make_feedforward, tmp_path):
    import json

    from sdm_neuro.cli import main

    net = make_feedforward(0, "LIF")
    src = ff_written(net, tmp_path)
    out = tmp_path / "sim"
    assert main(["simulate", str(src), "--time-steps", "12", "--num", "2", "--out", str(out),
                 "--quiet"]) == 0
    rep = json.loads((out / "simulate.json").read_text())
    assert rep["dt"] == net.dt and list(rep["layers"]) == ["l0", "l1", "l2"]  # the net's
    assert (out / "rates.png").stat().st_size > 0 and (out / "spikes.npz").is_file()
    exp = tmp_path / "exp"
    assert main(["export", str(src), "--target", "nir", "--time-steps", "12", "--num", "2",
                 "--out", str(exp)]) == 0
    manifest = json.loads((exp / "manifest.json").read_text())
    assert set(manifest["files"]) == {"network.nir", "quantized.pt"}
    back = feedforward_from_nir(exp / "network.nir")
    for a, b in zip(run_float(net, ff_inputs(net)), run_float(back, ff_inputs(net)), strict=True):
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
    assert main(["simulate", "--bundle", str(exp), "--out", str(tmp_path / "x"), "--quiet"]) == 7


def test_cli_bad_nir_file_fails_cleanly(tmp_path):
    from sdm_neuro.cli import main

    bad = tmp_path / "bad.nir"
    bad.write_bytes(b"not hdf5")
    out = tmp_path / "out"
    assert main(["simulate", str(bad), "--out", str(out), "--quiet"]) == 4
    assert not out.exists()


# --- CLI claims: bundles of files with their own node names, --dt, --input --------------------

def _nir_file(path, layers, in_size):
    """A NIR file of Affine -> neuron layers with the given node names: ``layers`` is a list of
    (synapse name, weight, neuron name, neuron node)."""
    nodes, edges, prev = {"in": nir.Input(np.array([in_size]))}, [], "in"
    for syn, w, neu, node in layers:
        nodes[syn] = nir.Affine(weight=np.asarray(w, dtype=np.float64), bias=np.zeros(len(w)))
        nodes[neu] = node
        edges += [(prev, syn), (syn, neu)]
        prev = neu
    nodes["out"] = nir.Output(np.array([len(layers[-1][1])]))
    edges.append((prev, "out"))
    nir.write(path, nir.NIRGraph(nodes, edges))
    return path


def _if(n, th=1.0):
    return nir.IF(r=np.ones(n), v_threshold=np.full(n, th), v_reset=np.zeros(n))


def _lif(n, tau, th=1.0):
    return nir.LIF(tau=np.full(n, tau), r=np.ones(n), v_leak=np.zeros(n),
                   v_threshold=np.full(n, th), v_reset=np.zeros(n))


def _rep(path):
    import json

    return json.loads((path / "simulate.json").read_text())


def test_bundle_of_a_file_with_its_own_node_names_simulates(tmp_path):
    """A bundle exported by sdm-neuro from a file whose nodes are not named as the writer
    names them simulates (the layer names survive network.nir), exactly as the file does."""
    from sdm_neuro.cli import main

    rng = np.random.default_rng(0)
    src = _nir_file(tmp_path / "named.nir", [
        ("fc1", rng.normal(0.3, 1.0, (6, 10)), "lif1", _lif(6, 2e-3, 0.8)),
        ("fc2", rng.normal(0.3, 1.0, (3, 6)), "spk2", _if(3))], 10)
    opts = ["--time-steps", "12", "--num", "3", "--seed", "4", "--quiet"]
    assert main(["simulate", str(src), *opts, "--out", str(tmp_path / "direct")]) == 0
    direct = np.load(tmp_path / "direct" / "spikes.npz")
    assert sorted(direct.files) == ["float:fc1>lif1", "float:fc2>spk2", "integer:fc1>lif1",
                                    "integer:fc2>spk2"]
    assert all(direct[k].sum() > 0 for k in direct.files)
    for target in ("nir", "loihi2"):
        exp, out = tmp_path / f"exp-{target}", tmp_path / f"sim-{target}"
        assert main(["export", str(src), "--target", target, "--time-steps", "12", "--num", "3",
                     "--seed", "4", "--out", str(exp)]) == 0
        assert {"fc1", "lif1", "fc2", "spk2"} <= set(nir.read(exp / "network.nir").nodes)
        assert main(["simulate", "--bundle", str(exp), *opts, "--out", str(out)]) == 0
        assert list(_rep(out)["layers"]) == ["fc1>lif1", "fc2>spk2"]
        with np.load(out / "spikes.npz") as b:
            assert sorted(b.files) == sorted(direct.files)
            for k in direct.files:
                assert np.array_equal(direct[k], b[k]), (target, k)


def test_cli_dt_sets_the_discretisation(tmp_path):
    """``--dt`` is the Euler step of a LIF: retention 1 - dt/tau (dv = 4096 dt/tau) and gain
    r dt/tau. One neuron, tau 10 ms, weight 3, threshold 1, input 1 every step: v grows by
    0.3, 0.27, ... with dt 1 ms (spikes every 4th step) and by 0.75, 0.5625 with 2.5 ms (every
    2nd step)."""
    from sdm_neuro.cli import main

    src = _nir_file(tmp_path / "one.nir", [("fc", [[3.0]], "lif", _lif(1, 0.01))], 1)
    np.save(tmp_path / "ones.npy", np.ones((1, 1)))
    for dt, dv, count in ((1e-3, 410, 8), (2.5e-3, 1024, 16)):  # dv = round(4096 * dt / tau)
        v, n = 0.0, 0
        for _ in range(32):  # the documented Euler step, by hand
            v = (1 - dt / 0.01) * v + dt / 0.01 * 3.0
            n, v = (n + 1, 0.0) if v > 1 else (n, v)
        assert n == count
        out = tmp_path / f"dt{dt}"
        assert main(["simulate", str(src), "--dt", str(dt), "--input", str(tmp_path / "ones.npy"),
                     "--time-steps", "32", "--out", str(out), "--quiet"]) == 0
        rep = _rep(out)
        layer = rep["layers"]["fc>lif"]
        assert rep["dt"] == dt and layer["dv"] == dv
        assert layer["retention_float"] == pytest.approx(1 - dt / 0.01, abs=1e-15)
        assert layer["rate_float"] == layer["rate_integer"] == count / 32


def test_cli_input_file_is_the_input(tmp_path):
    """``--input``: zeros give no spike anywhere, a strong input spikes every layer; [B, *in]
    is held every step, so it equals the [T, B, *in] file that repeats it; a [T, B, *in] file
    sets the number of steps."""
    from sdm_neuro.cli import main

    src = _nir_file(tmp_path / "two.nir", [("a", np.full((3, 4), 0.3), "n", _if(3)),
                                            ("b", np.full((2, 3), 0.5), "m", _if(2))], 4)
    held = np.array([[1, 1, 0, 0], [1, 1, 1, 1]], dtype=np.float32)
    files = {"zeros": np.zeros((2, 4)), "held": held, "seq": np.repeat(held[None], 12, 0),
             "short": np.repeat(held[None], 5, 0)}
    spikes = {}
    for name, arr in files.items():
        np.save(tmp_path / f"{name}.npy", arr)
        out = tmp_path / name
        assert main(["simulate", str(src), "--input", str(tmp_path / f"{name}.npy"),
                     "--time-steps", "12", "--out", str(out), "--quiet"]) == 0
        spikes[name] = dict(np.load(out / "spikes.npz"))
        rep = _rep(out)
        assert (rep["time_steps"], rep["batch"]) == (5 if name == "short" else 12, 2)
    assert all(not s.any() for s in spikes["zeros"].values())
    # layer n: drive 0.6 (two inputs) spikes every 2nd step, 1.2 (four) every step
    n = spikes["held"]["float:a>n"]
    assert n[:, 0].sum() == 3 * 6 and n[:, 1].sum() == 3 * 12
    assert all(s.sum() > 0 for s in spikes["held"].values())
    for k in spikes["held"]:
        assert np.array_equal(spikes["held"][k], spikes["seq"][k]), k
        assert np.array_equal(spikes["held"][k][:5], spikes["short"][k]), k
