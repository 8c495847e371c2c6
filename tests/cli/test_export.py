"""``sdm-neuro export``: the U-Net bundle for Loihi 2 / NIR (overwrite, changed files, profile
violations, TSM relays, reference-format checkpoints), the ONNX target checked against PyTorch,
and a feed-forward NIR file's constraint counts."""

import hashlib
import json
import re
import shutil

import numpy as np
import pytest
import torch

import sdm_neuro.export.onnx as onnx_export
from sdm_neuro import SpikingUNet
from sdm_neuro.checkpoint import save_checkpoint
from sdm_neuro.cli import main as cli
from sdm_neuro.errors import ConstraintError, ExportError, UsageError
from sdm_neuro.export.bundle import read_bundle
from sdm_test_support import Shifted, ff_inputs, ff_written





# ---------------------------------------------------------------------------------------------
# U-Net bundles (Loihi 2, NIR)
# ---------------------------------------------------------------------------------------------

def test_export_refuses_to_overwrite_and_detects_a_changed_file(tmp_path, randomized_checkpoint,
                                                                 capsys):
    out = tmp_path / "bundle"
    assert cli(["export", str(randomized_checkpoint), "--target", "nir", "--out", str(out)]) == 0
    assert cli(["export", str(randomized_checkpoint), "--target", "nir", "--out",
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


def test_constraint_violations_have_their_own_exit_code(tmp_path, randomized_checkpoint, capsys):
    out = tmp_path / "bundle"
    code = cli(["export", str(randomized_checkpoint), "--profile", "xylo", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == ConstraintError.exit_code and "neurons is 4,352, limit 1,000" in err
    assert not out.exists()
    # an explicit profile is enforced for the NIR target too
    assert cli(["export", str(randomized_checkpoint), "--target", "nir", "--profile", "xylo",
                "--out", str(out)]) == ConstraintError.exit_code and not out.exists()
    assert cli(["export", str(randomized_checkpoint), "--profile", "xylo", "--allow-violations",
                "--out", str(out)]) == 0
    assert not json.loads((out / "manifest.json").read_text())["constraints"]["fits"]


def test_loihi2_export_takes_tsm_with_relays_counted(tmp_path, randomized, tiny_config_ch4):
    from sdm_neuro.ir.graph import relayed

    cfg = tiny_config_ch4.replace(tsm=True)
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


def test_export_of_a_reference_format_checkpoint(tmp_path, tiny_config_ch4):
    """The SDDPM trainer's layout (net_model / ema_model / optim / step / x_T): no config or
    dataset inside, so the image size and the calibration set come from the command line."""
    torch.manual_seed(0)
    sd = SpikingUNet(tiny_config_ch4).state_dict()
    path = tmp_path / "ckpt.pt"
    torch.save({"net_model": sd, "ema_model": sd, "optim": {}, "step": 10,
                "x_T": torch.randn(2, 1, 8, 8)}, path)
    out = tmp_path / "bundle"
    assert cli(["export", str(path), "--img-size", "8", "--snn-steps", "2", "--dataset",
                "digits", "--calibration-images", "5", "--out", str(out)]) == 0
    graph, manifest = read_bundle(out)
    assert manifest["checkpoint"]["kind"] == "reference" and graph.config.ch == 4
    calib = manifest["quantization"]["calibration"]
    assert (calib["images"], calib["batch_size"], calib["seed"]) == (5, 32, 0)
    assert calib["dtype"] in ("float32", "float64")


# ---------------------------------------------------------------------------------------------
# the ONNX target
# ---------------------------------------------------------------------------------------------


def test_export_command_writes_a_bundle(tmp_path, capsys, monkeypatch, tiny_config, onnx_model):
    ckpt = save_checkpoint(tmp_path / "m.pt", tiny_config, onnx_model(tiny_config).state_dict())
    out = tmp_path / "bundle"
    assert cli(["export", str(ckpt), "--target", "onnx", "--out", str(out)]) == 0
    man = json.loads((out / "manifest.json").read_text())
    assert man["checkpoint_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert man["target"] == "onnx" and man["check_against_pytorch"]["ok"]
    assert man["model_config"]["ch"] == 8
    # an existing bundle is not overwritten without --force
    assert cli(["export", str(ckpt), "--target", "onnx", "--out", str(out)]) == 2
    assert f"--out {out}: output directory exists and is not empty; pass --force" in \
        capsys.readouterr().err
    first = tmp_path / "first.onnx"
    shutil.copyfile(out / "denoiser.onnx", first)  # --force replaces it: no second export
    monkeypatch.setattr(onnx_export, "export_onnx",
                        lambda model, path, **kwargs: shutil.copyfile(first, path))
    assert cli(["export", str(ckpt), "--target", "onnx", "--out", str(out), "--force"]) == 0
    assert json.loads((out / "manifest.json").read_text())["check_against_pytorch"]["ok"]


def test_export_fails_with_exit_code_7_and_no_bundle_when_onnxruntime_disagrees(
        tmp_path, capsys, monkeypatch, onnx_exported, tiny_config):
    model, onnx_file = onnx_exported(False)
    ckpt = save_checkpoint(tmp_path / "m.pt", tiny_config, model.state_dict())

    def export_copy(model, path, **kwargs):  # the module's export of these very weights
        return shutil.copyfile(onnx_file, path)

    monkeypatch.setattr(onnx_export, "export_onnx", export_copy)
    out = tmp_path / "bundle"
    # the real check passes on this file and model ...
    assert cli(["export", str(ckpt), "--target", "onnx", "--out", str(out)]) == 0
    assert json.loads((out / "manifest.json").read_text())["check_against_pytorch"]["ok"]
    shutil.rmtree(out)
    # ... and fails, exit code 7, when PyTorch's eps differs by 0.5
    real_check = onnx_export.check_onnx
    monkeypatch.setattr(onnx_export, "check_onnx",
                        lambda model, path, **kw: real_check(Shifted(model, 0.5), path, **kw))
    code = cli(["export", str(ckpt), "--target", "onnx", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 7, err
    assert "denoiser.onnx: onnxruntime disagrees with PyTorch" in err
    assert "internal error" not in err
    measured = re.search(r"'max_abs_diff': ([0-9.e-]+)", err)
    assert measured and abs(float(measured.group(1)) - 0.5) < 1e-4
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]  # no temporary left


# ---------------------------------------------------------------------------------------------
# feed-forward NIR files
# ---------------------------------------------------------------------------------------------

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


def test_feedforward_constraint_counts_are_exact(make_feedforward, tmp_path):
    from sdm_neuro.hardware_profiles.constraints import check_feedforward
    from sdm_neuro.hardware_profiles.profile import get_profile
    from sdm_neuro.compiler.quantize_feedforward import quantize_feedforward

    net = make_feedforward(0, "IF")
    qnet = quantize_feedforward(net, ff_inputs(net))
    (tmp_path / "tiny.toml").write_text(PROFILE)
    placement = check_feedforward(qnet, get_profile(tmp_path / "tiny.toml"))
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
    assert main(["export", str(ff_written(net, tmp_path)), "--profile",
                 str(tmp_path / "tiny.toml"), "--num", "2", "--out", str(out)]) == 8
    assert not out.exists()
