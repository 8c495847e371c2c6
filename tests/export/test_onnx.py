"""ONNX export of the float denoiser, checked with onnxruntime (an independent runtime)."""

import hashlib
import json
import re
import shutil

import numpy as np
import onnxruntime as ort
import pytest
import torch

import sdm_neuro.export.onnx as onnx_export
from sdm_neuro import SpikingUNet, UNetConfig
from sdm_neuro.checkpoint import save_checkpoint
from sdm_neuro.cli import main as cli
from sdm_neuro.export.onnx import check_onnx, export_onnx

TINY = UNetConfig(ch=8, ch_mult=(1, 2), num_res_blocks=1, img_ch=1, snn_steps=2, img_size=8)


def _randomized(cfg: UNetConfig) -> SpikingUNet:
    torch.manual_seed(0)
    model = SpikingUNet(cfg).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):  # non-trivial folded BN: a fair spike rate
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.bias.uniform_(0.0, 0.5)
            if hasattr(m, "tsmp"):
                m.tsmp.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(model, ONNX file) per tsm, exported once for the module (an export takes ~20 s)."""
    cache = {}

    def get(tsm: bool):
        if tsm not in cache:
            model = _randomized(TINY.replace(tsm=tsm))
            folder = tmp_path_factory.mktemp(f"onnx_tsm{int(tsm)}")
            cache[tsm] = model, export_onnx(model, folder / "m.onnx")
        return cache[tsm]

    return get


class _Shifted(torch.nn.Module):
    """The model with ``shift`` added to eps: a PyTorch model the ONNX file does not match."""

    def __init__(self, model: SpikingUNet, shift: float) -> None:
        super().__init__()
        self.model, self.config, self.shift = model, model.config, shift

    def forward(self, x, t):
        return self.model(x, t) + self.shift


@pytest.mark.parametrize("tsm", [False, True])
def test_onnx_matches_pytorch(exported, tsm):
    model, path = exported(tsm)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x, t = torch.randn(5, 1, 8, 8), torch.tensor([0, 999, 3, 3, 500])  # a batch size not exported
    got = sess.run(None, {"x_t": x.numpy(), "t": t.numpy()})[0]
    with torch.no_grad():
        ref = model(x, t).numpy()
    assert got.shape == ref.shape and np.abs(got - ref).max() < 1e-4
    assert check_onnx(model, path).ok
    assert [p.name for p in path.parent.iterdir()] == ["m.onnx"]  # one file, no temporaries


def test_check_onnx_reports_a_mismatch_with_the_measured_difference(exported):
    model, path = exported(False)
    good = check_onnx(model, path)
    assert good.ok and good.max_abs_diff < 1e-4
    # eps shifted by 0.5: every output differs by 0.5 (up to float32 rounding of eps + 0.5)
    bad = check_onnx(_Shifted(model, 0.5), path)
    assert not bad.ok and bad.to_dict()["ok"] is False
    assert abs(bad.max_abs_diff - 0.5) < 1e-4 and abs(bad.p999_abs_diff - 0.5) < 1e-4
    assert bad.eps_range == pytest.approx(good.eps_range, abs=1e-6)  # a shift keeps the range
    # a difference within the bulk tolerance (1e-4) but beyond 5% of eps' range also fails
    small = 0.2 * good.eps_range
    assert small < 5e-5  # this model's eps is small: the near-zero tail init (gain 1e-5)
    near = check_onnx(_Shifted(model, small), path)
    assert not near.ok and near.p999_abs_diff < 1e-4
    # the runtimes' own difference is <= 5% of the range (good.ok), so the measured one is
    # the shift within that
    assert near.max_abs_diff == pytest.approx(small, abs=0.05 * good.eps_range)


def test_export_command_writes_a_bundle(tmp_path, capsys, monkeypatch):
    ckpt = save_checkpoint(tmp_path / "m.pt", TINY, _randomized(TINY).state_dict())
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
        tmp_path, capsys, monkeypatch, exported):
    model, onnx_file = exported(False)
    ckpt = save_checkpoint(tmp_path / "m.pt", TINY, model.state_dict())

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
                        lambda model, path, **kw: real_check(_Shifted(model, 0.5), path, **kw))
    code = cli(["export", str(ckpt), "--target", "onnx", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 7, err
    assert "denoiser.onnx: onnxruntime disagrees with PyTorch" in err
    assert "internal error" not in err
    measured = re.search(r"'max_abs_diff': ([0-9.e-]+)", err)
    assert measured and abs(float(measured.group(1)) - 0.5) < 1e-4
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]  # no temporary left
