"""Size of the graded export bundle (export/graded_bundle.py) against the float32 checkpoint and
the composed bundle, for the shipped default model and the SDDPM paper configuration; JSON.

    python benchmarks/graded_bundle_size.py --out benchmarks/results/graded_bundle_size.json

Default model: both bundles exactly as ``sdm-neuro export --target loihi2 [--mapping graded]``
writes them (calibrated on its training images). Paper configuration (``PAPER_CIFAR10``: ch 128,
ch_mult 1,2,2,4, two ResBlocks per level, 32x32x3, T_snn 4; random weights, as in
benchmarks/graded_costs.py): quantized on ``--batches`` random batches of ``--batch`` images
(float64, as the quantizer lowers), written, read back and compared field by field. Its composed
bundle is not written (about 2 GB; its calibration runs 3x the graded one's weights): it is
estimated from the lowered composed graph as the bytes ``write_bundle`` stores per on-chip weight
(float64 weight + int16 weight_int, 10 bytes; gzip gains little on float64), plus the same
host.npz; the default model's real composed bundle checks that estimate.
Target: the graded bundle at most 1.5x the float32 checkpoint (state_dict).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import torch

from sdm_neuro import PAPER_CIFAR10, SpikingUNet
from sdm_neuro.compiler.lower import lower
from sdm_neuro.compiler.pipeline import calibration_inputs
from sdm_neuro.compiler.quantize_graded import build_graded_graph
from sdm_neuro.compiler.schedule_graded import schedule_graded
from sdm_neuro.export.graded_bundle import bundle_bytes, read_graded_bundle, write_graded_bundle
from sdm_neuro.fileio import write_json
from sdm_neuro.hardware_profiles.graded import graded_placement
from sdm_neuro.hardware_profiles.profile import get_profile
from sdm_neuro.ir.graph import HOST
from sdm_neuro.run import export

TARGET_RATIO = 1.5
COMPOSED_BYTES_PER_WEIGHT = 8 + 2  # float64 weight + int16 weight_int per on-chip weight


def state_dict_bytes(model: SpikingUNet, folder: Path) -> dict:
    """float32 tensor bytes of the state_dict, and its torch.save file."""
    sd = {k: v.float() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    torch.save(sd, folder / "state_dict.pt")
    size = (folder / "state_dict.pt").stat().st_size
    (folder / "state_dict.pt").unlink()
    return {"tensor_bytes": sum(v.numel() * v.element_size() for v in sd.values()),
            "file_bytes": size}


def composed_estimate(model: SpikingUNet, host_bytes: int) -> int:
    with torch.no_grad():
        graph = lower(model)
    weights = sum(p.weight.numel() for p in graph.projections if p.dst != HOST)
    return weights * COMPOSED_BYTES_PER_WEIGHT + host_bytes


def same_integers(a, b) -> bool:
    """Every field but a conv's float weight (the bundle keeps the quantized kernel)."""
    for kind in ("populations", "relays", "connections"):
        for x, y in zip(getattr(a, kind), getattr(b, kind), strict=True):
            for f in dataclasses.fields(x):
                u, v = getattr(x, f.name), getattr(y, f.name)
                if f.name == "weight" and x.kind == "conv":
                    continue
                if not (torch.equal(u, v) if isinstance(u, torch.Tensor) else u == v):
                    return False
    return a.order == b.order and a.output == b.output


def default_model(folder: Path) -> dict:
    from sdm_neuro.assets import default_model_path
    from sdm_neuro.checkpoint import load_model

    t0 = time.perf_counter()
    graded = export(mapping="graded", out=folder / "default_graded", quiet=True)
    seconds = time.perf_counter() - t0
    composed = export(out=folder / "default_composed", quiet=True)
    model, _ = load_model(default_model_path())
    ckpt = state_dict_bytes(model, folder)
    g, c = bundle_bytes(graded.manifest), bundle_bytes(composed.manifest)
    estimate = composed_estimate(model, composed.manifest["files"]["host.npz"]["bytes"])
    return {"config": model.config.to_dict(), "checkpoint_float32": ckpt,
            "graded_bundle": graded.manifest["files"], "graded_bundle_bytes": g,
            "composed_bundle": composed.manifest["files"], "composed_bundle_bytes": c,
            "composed_estimate_bytes": estimate, "composed_estimate_vs_written": estimate / c,
            "graded_vs_checkpoint": g / ckpt["tensor_bytes"], "graded_vs_composed": g / c,
            "meets_target": g <= TARGET_RATIO * ckpt["tensor_bytes"],
            "mappings_on_loihi2": graded.comparison, "export_seconds": round(seconds, 1)}


def paper_configuration(folder: Path, batches: int, batch: int) -> dict:
    torch.manual_seed(0)
    model = SpikingUNet(PAPER_CIFAR10).eval()  # random weights: a structural measurement
    cfg = model.config
    ckpt = state_dict_bytes(model, folder)
    images = torch.rand(batches * batch, cfg.img_ch, cfg.img_size, cfg.img_size) * 2 - 1
    t0 = time.perf_counter()
    graph = schedule_graded(build_graded_graph(model, calibration_inputs(
        images, count=batches * batch, batch_size=batch)))
    t_build = time.perf_counter() - t0
    placement = graded_placement(graph, get_profile("loihi2"))
    t0 = time.perf_counter()
    manifest = write_graded_bundle(graph, folder / "paper_graded", {
        "target": "loihi2", "model_config": cfg.to_dict(),
        "quantization": {"nodes": graph.meta["quantization"]},
        "constraints": placement.to_dict()})
    t_write = time.perf_counter() - t0
    t0 = time.perf_counter()
    back, _ = read_graded_bundle(folder / "paper_graded")
    t_read = time.perf_counter() - t0
    exact = same_integers(graph, back)
    del back
    g = bundle_bytes(manifest)
    estimate = composed_estimate(model, manifest["files"]["host.npz"]["bytes"])
    conv_weights = sum(c.weight.numel() for c in graph.connections if c.kind == "conv")
    return {"config": cfg.to_dict(), "checkpoint_float32": ckpt,
            "calibration": {"batches": batches, "batch_size": batch, "inputs": "uniform random"},
            "graded_bundle": manifest["files"], "graded_bundle_bytes": g,
            "graded_vs_checkpoint": g / ckpt["tensor_bytes"],
            "meets_target": g <= TARGET_RATIO * ckpt["tensor_bytes"],
            "composed_estimate_bytes": estimate, "graded_vs_composed_estimate": g / estimate,
            "nodes": {"populations": len(graph.populations), "relays": len(graph.relays),
                      "connections": len(graph.connections), "conv_weights": conv_weights},
            "read_back_exact": exact,
            "seconds": {"build": round(t_build, 1), "write": round(t_write, 1),
                        "read": round(t_read, 1)},
            "loihi2": {"cores": placement.total_cores, "chips": placement.chips,
                       "memory_bytes": placement.memory_words * 8,
                       "violations": len(placement.violations)}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/graded_bundle_size.json"))
    ap.add_argument("--batches", type=int, default=2, help="paper calibration batches")
    ap.add_argument("--batch", type=int, default=2, help="paper calibration batch size")
    ap.add_argument("--skip-paper", action="store_true")
    args = ap.parse_args()
    result = {"target_ratio": TARGET_RATIO, "composed_bytes_per_weight": COMPOSED_BYTES_PER_WEIGHT}
    with tempfile.TemporaryDirectory(prefix="graded_bundle_size.") as tmp:
        folder = Path(tmp)
        result["default_model"] = default_model(folder)
        if not args.skip_paper:
            result["paper_configuration"] = paper_configuration(folder, args.batches, args.batch)
    for key in ("default_model", "paper_configuration"):
        if key not in result:
            continue
        r = result[key]
        composed = r.get("composed_bundle_bytes", r["composed_estimate_bytes"])
        print(f"{key}: graded bundle {r['graded_bundle_bytes'] / 1e6:.1f} MB = "
              f"{r['graded_vs_checkpoint']:.2f}x the float32 checkpoint "
              f"({r['checkpoint_float32']['tensor_bytes'] / 1e6:.1f} MB; target <= "
              f"{TARGET_RATIO}x: {'met' if r['meets_target'] else 'NOT met'}); composed "
              f"{'bundle' if 'composed_bundle_bytes' in r else 'estimate'} "
              f"{composed / 1e6:.1f} MB")
    write_json(args.out, result)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
