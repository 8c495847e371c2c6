"""The integer simulator on CUDA against the CPU: identical spikes, counters and eps, bit for bit,
over a short sampling run, and the time of each; written to JSON.

    python benchmarks/gpu_check.py --out benchmarks/results/gpu_check.json

Models: the shipped default model (both mappings, ideal and hardware timing) and SDDPM's paper
configuration with random weights (both mappings, ideal timing). Each runs DDIM with --steps
calls from the same noise on both devices; every call's eps, every population's spikes (every
relay's payloads) and the counters must be equal. Exits 1 on any difference, 2 without CUDA.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from sdm_neuro.fileio import write_json


class Recorder:
    """A denoiser that keeps every call's eps and node outputs (moved to the CPU)."""

    def __init__(self, denoiser) -> None:
        self.denoiser, self.calls = denoiser, []

    def __call__(self, x, t):
        eps, outputs = self.denoiser.sim(x, t, self.denoiser.counters)
        self.calls.append((eps, {k: v.cpu() for k, v in outputs.items()}))
        return eps


def run(graph, mode: str, device: str, steps: int, num: int, shape) -> dict:
    from sdm_neuro.compiler.pipeline import IntegerDenoiser
    from sdm_neuro.diffusion import LinearSchedule, generate

    rec = Recorder(IntegerDenoiser(graph, mode=mode, device=device))
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    x = generate(rec, LinearSchedule(num_steps=graph.config.diffusion_steps), num, shape,
                 batch_size=num, sampler="ddim", steps=steps, seed=0, progress=False)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return {"seconds": time.perf_counter() - t0, "samples": x, "calls": rec.calls,
            "counters": rec.denoiser.counters.to_dict()}


def compare(a: dict, b: dict) -> list[str]:
    diffs = []
    if not torch.equal(a["samples"], b["samples"]):
        diffs.append("samples")
    for i, ((ea, oa), (eb, ob)) in enumerate(zip(a["calls"], b["calls"])):
        if not torch.equal(ea, eb):
            diffs.append(f"call {i}: eps")
        diffs += [f"call {i}: {k}" for k in oa if not torch.equal(oa[k], ob[k])]
    if a["counters"] != b["counters"]:
        diffs.append("counters")
    return diffs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu_check.json"))
    ap.add_argument("--steps", type=int, default=10, help="DDIM calls per run")
    ap.add_argument("--num", type=int, default=16, help="samples (one batch)")
    ap.add_argument("--device", default="cuda", help="compared with the CPU (cpu: a dry run "
                    "of this script)")
    ap.add_argument("--skip-paper", action="store_true")
    args = ap.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: CUDA is not available on this machine", file=sys.stderr)
        return 2
    from sdm_neuro import PAPER_CIFAR10, SpikingUNet
    from sdm_neuro.assets import default_model_path
    from sdm_neuro.checkpoint import load_model
    from sdm_neuro.compiler.pipeline import build_integer_graph, calibration_inputs
    from sdm_neuro.compiler.quantize_graded import build_graded_graph
    from sdm_neuro.data import load_dataset

    default, _ = load_model(default_model_path())
    cases = [("default", default, load_dataset("digits", img_size=16).images,
              ("ideal", "hardware"))]
    if not args.skip_paper:
        torch.manual_seed(0)
        cases.append(("sddpm_paper", SpikingUNet(PAPER_CIFAR10).eval(),
                      torch.rand(64, 3, 32, 32) * 2 - 1, ("ideal",)))
    results = {"device": torch.cuda.get_device_name(args.device)
               if args.device.startswith("cuda") else args.device, "torch": torch.__version__,
               "steps": args.steps, "num": args.num, "runs": {}}
    failed = False
    for name, model, images, modes in cases:
        cfg = model.config
        calib = calibration_inputs(images, count=16 if name != "default" else 128)
        for mapping, build in (("composed", build_integer_graph), ("graded", build_graded_graph)):
            graph = build(model, calib)
            for mode in modes:
                shape = (cfg.img_ch, cfg.img_size, cfg.img_size)
                cpu = run(graph, mode, "cpu", args.steps, args.num, shape)
                gpu = run(graph, mode, args.device, args.steps, args.num, shape)
                diffs = compare(cpu, gpu)
                failed |= bool(diffs)
                key = f"{name}/{mapping}/{mode}"
                results["runs"][key] = {
                    "identical": not diffs, "differences": diffs[:20],
                    "cpu_s": round(cpu["seconds"], 2), "gpu_s": round(gpu["seconds"], 2),
                    "speedup": round(cpu["seconds"] / gpu["seconds"], 2),
                    "calls": len(cpu["calls"])}
                print(key, json.dumps(results["runs"][key]), flush=True)
    write_json(args.out, results)
    print(f"wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
