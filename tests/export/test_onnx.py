"""ONNX export of the float denoiser, checked with onnxruntime (an independent runtime). The
exported models are tests/conftest.py's ``onnx_exported``; the export command: tests/cli."""

import numpy as np
import onnxruntime as ort
import pytest
import torch

from sdm_neuro.export.onnx import check_onnx
from sdm_test_support import Shifted



@pytest.mark.parametrize("tsm", [False, True])
def test_onnx_matches_pytorch(onnx_exported, tsm):
    model, path = onnx_exported(tsm)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x, t = torch.randn(5, 1, 8, 8), torch.tensor([0, 999, 3, 3, 500])  # a batch size not exported
    got = sess.run(None, {"x_t": x.numpy(), "t": t.numpy()})[0]
    with torch.no_grad():
        ref = model(x, t).numpy()
    assert got.shape == ref.shape and np.abs(got - ref).max() < 1e-4
    assert check_onnx(model, path).ok
    assert [p.name for p in path.parent.iterdir()] == ["m.onnx"]  # one file, no temporaries


def test_check_onnx_reports_a_mismatch_with_the_measured_difference(onnx_exported):
    model, path = onnx_exported(False)
    good = check_onnx(model, path)
    assert good.ok and good.max_abs_diff < 1e-4
    # eps shifted by 0.5: every output differs by 0.5 (up to float32 rounding of eps + 0.5)
    bad = check_onnx(Shifted(model, 0.5), path)
    assert not bad.ok and bad.to_dict()["ok"] is False
    assert abs(bad.max_abs_diff - 0.5) < 1e-4 and abs(bad.p999_abs_diff - 0.5) < 1e-4
    assert bad.eps_range == pytest.approx(good.eps_range, abs=1e-6)  # a shift keeps the range
    # a difference within the bulk tolerance (1e-4) but beyond 5% of eps' range also fails
    small = 0.2 * good.eps_range
    assert small < 5e-5  # this model's eps is small: the near-zero tail init (gain 1e-5)
    near = check_onnx(Shifted(model, small), path)
    assert not near.ok and near.p999_abs_diff < 1e-4
    # the runtimes' own difference is <= 5% of the range (good.ok), so the measured one is
    # the shift within that
    assert near.max_abs_diff == pytest.approx(small, abs=0.05 * good.eps_range)
