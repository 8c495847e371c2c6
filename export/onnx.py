"""ONNX export of the float denoiser (one call: inputs ``x_t`` [B, C, H, W] float32 and ``t`` [B]
int64, output ``eps``), checked against PyTorch with onnxruntime.

Uses PyTorch's exporter (``torch.onnx.export(dynamo=True)``) with a dynamic batch dimension;
the SNN steps are unrolled into the graph (T_snn is fixed per model).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from sdm_neuro.errors import ExportError
from sdm_neuro.models.unet import SpikingUNet

# ONNX Runtime's convolutions sum in another order than oneDNN's: membrane values within float
# rounding of a threshold can spike in one and not the other, which moves eps by a small amount
# at a few pixels. Agreement is therefore judged on the bulk (the 99.9th percentile of |diff|)
# and on the largest difference relative to eps' range.
BULK_TOL = 1e-4
MAX_REL_TOL = 0.05


@dataclass(frozen=True)
class OnnxCheck:
    cases: int
    max_abs_diff: float
    p999_abs_diff: float
    eps_range: float

    @property
    def ok(self) -> bool:
        return self.p999_abs_diff <= BULK_TOL and self.max_abs_diff <= MAX_REL_TOL * self.eps_range

    def to_dict(self) -> dict:
        return {"cases": self.cases, "max_abs_diff": self.max_abs_diff,
                "p999_abs_diff": self.p999_abs_diff, "eps_range": self.eps_range,
                "tolerances": {"p999_abs": BULK_TOL, "max_rel_to_range": MAX_REL_TOL},
                "ok": self.ok}


def export_onnx(model: SpikingUNet, path: str | Path, *, opset: int | None = None) -> Path:
    """Write ``model`` as ONNX to ``path`` atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    x = torch.zeros(2, cfg.img_ch, cfg.img_size, cfg.img_size)
    t = torch.zeros(2, dtype=torch.int64)
    batch = torch.export.Dim("batch", min=1)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        quiet = logging.getLogger("torch.onnx")
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # the exporter's progress lines and torchvision notes
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                torch.onnx.export(model.eval(), (x, t), str(tmp), input_names=["x_t", "t"],
                                  output_names=["eps"], dynamo=True, opset_version=opset,
                                  external_data=False,  # one self-contained file (< 2 GB)
                                  dynamic_shapes={"x": {0: batch}, "t": {0: batch}})
        finally:
            quiet.setLevel(level)
        os.replace(tmp, path)
    except Exception as e:
        tmp.unlink(missing_ok=True)
        raise ExportError(f"ONNX export of the denoiser failed: {type(e).__name__}: {e}") from e
    return path


def check_onnx(model: SpikingUNet, path: str | Path, *, seed: int = 0) -> OnnxCheck:
    """Run the ONNX file with onnxruntime and the model with PyTorch on random inputs at several
    batch sizes and t (including the ends of the schedule)."""
    import numpy as np
    import onnxruntime as ort

    cfg = model.config
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(seed)
    diffs, scale = [], 0.0
    for batch, ts in ((1, [0]), (3, [999, 500, 1]), (4, [250] * 4)):
        t = torch.tensor([min(v, cfg.diffusion_steps - 1) for v in ts])
        x = torch.randn(batch, cfg.img_ch, cfg.img_size, cfg.img_size, generator=gen)
        got = sess.run(None, {"x_t": x.numpy(), "t": t.numpy()})[0]
        with torch.no_grad():
            ref = model(x, t).numpy()
        diffs.append(np.abs(got - ref).ravel())
        scale = max(scale, float(ref.max() - ref.min()))
    d = np.concatenate(diffs)
    return OnnxCheck(3, float(d.max()), float(np.quantile(d, 0.999)), scale)
