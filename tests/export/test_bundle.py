"""The export bundle: NIR round trip, the export CLI, and simulate --bundle."""

import dataclasses
import json

import nir
import numpy as np
import pytest
import torch

from sdm_neuro import SpikingUNet, UNetConfig
from sdm_neuro.checkpoint import save_checkpoint
from sdm_neuro.cli import main as cli
from sdm_neuro.compiler.pipeline import build_integer_graph, calibration_inputs
from sdm_neuro.errors import ConstraintError, ExportError, UsageError
from sdm_neuro.export.bundle import NIR_FILE, read_bundle, write_bundle
from sdm_neuro.compiler.schedule import schedule

TINY = UNetConfig(ch=4, ch_mult=(1, 2), num_res_blocks=1, img_ch=1, snn_steps=2, img_size=8)


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


@pytest.mark.parametrize("tsm", [False, True])
def test_bundle_round_trip_is_exact(tmp_path, randomized, tsm):
    model = randomized(SpikingUNet(TINY.replace(tsm=tsm, snn_steps=3)).eval())
    graph = schedule(build_integer_graph(model, calibration_inputs(
        torch.rand(32, 1, 8, 8) * 2 - 1, batches=1, batch_size=16)))
    write_bundle(graph, tmp_path, {"target": "nir"})
    nir.read(tmp_path / NIR_FILE)  # plain NIR, type checking on
    back, manifest = read_bundle(tmp_path)
    assert back.config == graph.config
    for kind in ("populations", "projections"):
        for a, b in zip(getattr(graph, kind), getattr(back, kind), strict=True):
            for f in dataclasses.fields(a):
                assert _same(getattr(a, f.name), getattr(b, f.name)), (kind, f.name)
    for f in dataclasses.fields(graph.host):
        assert _same(getattr(graph.host, f.name), getattr(back.host, f.name)), f.name
    assert set(manifest["files"]) == {"network.nir", "host.npz"}


@pytest.fixture
def tiny_ckpt(tmp_path, randomized):
    """A randomized (not freshly initialised) tiny model: every layer spikes, not always."""
    torch.manual_seed(0)
    return save_checkpoint(tmp_path / "tiny.pt", TINY, randomized(SpikingUNet(TINY)).state_dict(),
                           meta={"dataset": "digits"})


def test_simulate_bundle_gives_the_checkpoints_samples(tmp_path, tiny_ckpt, capsys):
    out = tmp_path / "bundle"
    assert cli(["export", str(tiny_ckpt), "--target", "loihi2", "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["target"] == "loihi2" and manifest["constraints"]["fits"]
    assert manifest["checkpoint"]["sha256"] and manifest["timing"]["call_length"] > 2
    common = ["--sampler", "ddim", "--steps", "3", "--num", "3", "--batch", "3", "--quiet"]
    assert cli(["simulate", str(tiny_ckpt), *common, "--out", str(tmp_path / "a")]) == 0
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
    tiny_ckpt.unlink()
    assert cli(["simulate", "--bundle", str(out), *common, "--out", str(tmp_path / "c")]) == 0
    assert np.array_equal(np.load(tmp_path / "c" / "samples.npy"), a)
    assert not (tmp_path / "c" / "float_samples.npy").exists()


def test_export_refuses_to_overwrite_and_detects_a_changed_file(tmp_path, tiny_ckpt, capsys):
    out = tmp_path / "bundle"
    assert cli(["export", str(tiny_ckpt), "--target", "nir", "--out", str(out)]) == 0
    assert cli(["export", str(tiny_ckpt), "--target", "nir", "--out",
                str(out)]) == UsageError.exit_code
    assert "--force" in capsys.readouterr().err
    data = bytearray((out / "host.npz").read_bytes())
    data[-1] ^= 1  # same size, other content
    (out / "host.npz").write_bytes(bytes(data))
    with pytest.raises(ExportError, match="host.npz: SHA-256 differs from manifest.json"):
        read_bundle(out)
    with open(out / "host.npz", "ab") as f:
        f.write(b"x")
    with pytest.raises(ExportError, match=r"host.npz: [0-9,]+ bytes, manifest.json lists"):
        read_bundle(out)
    assert cli(["simulate", "--bundle", str(out), "--out", str(tmp_path / "s"),
                "--quiet"]) == ExportError.exit_code
    assert "host.npz" in capsys.readouterr().err and not (tmp_path / "s").exists()


def test_constraint_violations_have_their_own_exit_code(tmp_path, tiny_ckpt, capsys):
    out = tmp_path / "bundle"
    code = cli(["export", str(tiny_ckpt), "--profile", "xylo", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == ConstraintError.exit_code and "neurons is 4,352, limit 1,000" in err
    assert not out.exists()
    # an explicit profile is enforced for the NIR target too
    assert cli(["export", str(tiny_ckpt), "--target", "nir", "--profile", "xylo", "--out",
                str(out)]) == ConstraintError.exit_code and not out.exists()
    assert cli(["export", str(tiny_ckpt), "--profile", "xylo", "--allow-violations",
                "--out", str(out)]) == 0
    assert not json.loads((out / "manifest.json").read_text())["constraints"]["fits"]


def test_loihi2_export_takes_tsm_with_relays_counted(tmp_path, randomized):
    from sdm_neuro.ir.graph import relayed

    cfg = TINY.replace(tsm=True)
    model = randomized(SpikingUNet(cfg))  # per-step gains 0.7..1.3
    ckpt = save_checkpoint(tmp_path / "tsm.pt", cfg, model.state_dict(),
                           meta={"dataset": "digits"})
    assert cli(["export", str(ckpt), "--out", str(tmp_path / "l")]) == 0
    graph, manifest = read_bundle(tmp_path / "l")
    assert all(relayed(p) for p in graph.projections if p.dst != "host")
    cores = manifest["constraints"]["cores_per_population"]
    relays = [k for k in cores if k.endswith("(TSM relays)")]
    assert relays and "TSM clocks" in cores
    assert "relays" in manifest["timing"]["tsm"]


def test_export_of_a_reference_format_checkpoint(tmp_path):
    """The SDDPM trainer's layout (net_model / ema_model / optim / step / x_T): no config or
    dataset inside, so the image size and the calibration set come from the command line."""
    torch.manual_seed(0)
    sd = SpikingUNet(TINY).state_dict()
    path = tmp_path / "ckpt.pt"
    torch.save({"net_model": sd, "ema_model": sd, "optim": {}, "step": 10,
                "x_T": torch.randn(2, 1, 8, 8)}, path)
    out = tmp_path / "bundle"
    assert cli(["export", str(path), "--img-size", "8", "--snn-steps", "2", "--dataset",
                "digits", "--out", str(out)]) == 0
    graph, manifest = read_bundle(out)
    assert manifest["checkpoint"]["kind"] == "reference" and graph.config.ch == 4


def test_energy_report_of_a_bundle_equals_that_of_its_checkpoint(tmp_path, tiny_ckpt):
    out = tmp_path / "bundle"
    assert cli(["export", str(tiny_ckpt), "--target", "nir", "--out", str(out)]) == 0
    common = ["--profile", "loihi2", "--calls", "2", "--batch", "2", "--quiet"]
    assert cli(["energy-report", str(tiny_ckpt), *common, "--out", str(tmp_path / "a")]) == 0
    assert cli(["energy-report", "--bundle", str(out), *common, "--out",
                str(tmp_path / "b")]) == 0
    a, b = (json.loads((tmp_path / d / "energy.json").read_text()) for d in ("a", "b"))
    assert b["bundle"] == str(out) and a["layers"] == b["layers"]
    assert a["profiles"] == b["profiles"]
    tiny_ckpt.unlink()  # without the float model the report cannot count the ANN baseline
    assert cli(["energy-report", "--bundle", str(out), *common, "--out",
                str(tmp_path / "c")]) == UsageError.exit_code
