"""Float forward time of the spiking U-Net (PyTorch, CPU), written to JSON.

    python benchmarks/float_forward.py --out benchmarks/results/float_forward.json

Measures one denoising call (median of --repeats after a warm-up) of the SDDPM paper
configuration (32x32x3, 66.7M parameters, T_snn = 4, random weights) at batch 1 and 16, and the
ratio of the spiking forward to the same network's convolutions run once as a dense ANN pass
(the cost of T_snn steps plus the spiking bookkeeping).
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch
from _timing import timed  # benchmarks/ is the script's directory

from sdm_neuro import PAPER_CIFAR10, SpikingUNet
from sdm_neuro.fileio import write_json


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/float_forward.json"))
    args = ap.parse_args()
    torch.manual_seed(0)
    results = []
    for snn_steps in (PAPER_CIFAR10.snn_steps, 1):
        model = SpikingUNet(PAPER_CIFAR10.replace(snn_steps=snn_steps)).eval()
        for b in args.batches:
            x = torch.randn(b, 3, 32, 32)
            t = torch.full((b,), 500)
            with torch.no_grad():
                sec = timed(lambda m=model, x=x, t=t: m(x, t), args.repeats)
            results.append({"config": "sddpm-paper-cifar10", "snn_steps": snn_steps, "batch": b,
                            "seconds_per_call": round(sec, 4)})
            print(json.dumps(results[-1]))
    by = {(r["snn_steps"], r["batch"]): r["seconds_per_call"] for r in results}
    report = {
        "benchmark": "float_forward",
        "machine": {"cpu_threads": torch.get_num_threads(), "platform": platform.platform(),
                    "torch": torch.__version__},
        "results": results,
        "ratios": {f"T_snn={PAPER_CIFAR10.snn_steps} / T_snn=1, batch {b}":
                   round(by[(PAPER_CIFAR10.snn_steps, b)] / by[(1, b)], 3) for b in args.batches},
    }
    write_json(args.out, report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
