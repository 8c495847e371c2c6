"""ONNX export of the float denoiser, checked with onnxruntime (an independent runtime)."""

import hashlib
import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

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


@pytest.mark.parametrize("tsm", [False, True])
def test_onnx_matches_pytorch(tmp_path, tsm):
    model = _randomized(TINY.replace(tsm=tsm))
    path = export_onnx(model, tmp_path / "m.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x, t = torch.randn(5, 1, 8, 8), torch.tensor([0, 999, 3, 3, 500])  # a batch size not exported
    got = sess.run(None, {"x_t": x.numpy(), "t": t.numpy()})[0]
    with torch.no_grad():
        ref = model(x, t).numpy()
    assert got.shape == ref.shape and np.abs(got - ref).max() < 1e-4
    assert check_onnx(model, path).ok
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # one file, no temporaries


def test_export_command_writes_a_bundle(tmp_path, capsys):
    ckpt = save_checkpoint(tmp_path / "m.pt", TINY, _randomized(TINY).state_dict())
    out = tmp_path / "bundle"
    assert cli(["export", str(ckpt), "--target", "onnx", "--out", str(out)]) == 0
    man = json.loads((out / "manifest.json").read_text())
    assert man["checkpoint_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert man["target"] == "onnx" and man["check_against_pytorch"]["ok"]
    assert man["model_config"]["ch"] == 8
    # an existing bundle is not overwritten without --force
    assert cli(["export", str(ckpt), "--target", "onnx", "--out", str(out)]) == 2
    assert cli(["export", str(ckpt), "--target", "onnx", "--out", str(out), "--force"]) == 0
