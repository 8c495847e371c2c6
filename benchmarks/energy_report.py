"""`sdm-neuro energy-report` with no arguments (default model, every shipped profile): wall time
and peak memory of the whole command, against one float PyTorch denoising call of the same model
at the same batch measured in the same run, written to JSON.

    python benchmarks/energy_report.py --out benchmarks/results/energy_report.json
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch
from _timing import run_cli, timed  # benchmarks/ is the script's directory

from sdm_neuro.fileio import write_json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/energy_report.json"))
    args = ap.parse_args()
    from sdm_neuro.assets import default_model_path
    from sdm_neuro.checkpoint import load_model

    model, _ = load_model(default_model_path())
    x, t = torch.randn(16, 1, 16, 16), torch.full((16,), 500)
    with torch.no_grad():
        float_call = timed(lambda: model(x, t), 5)
    out_dir = args.out.parent / "energy_default"
    argv = ["energy-report", "--out", str(out_dir), "--force", "--quiet"]
    run = run_cli(argv)
    report = json.loads((out_dir / "energy.json").read_text())
    results = {
        "machine": {"platform": platform.platform(), "torch": torch.__version__,
                    "threads": torch.get_num_threads()},
        "command": "sdm-neuro " + " ".join(argv), "wall_s": run["wall_s"],
        "peak_rss_mb": run["peak_rss_mb"],
        "float_call_batch16_s": round(float_call, 4),
        "ratio_wall_over_float_call": round(run["wall_s"] / float_call, 1),
        "profiles": len(report["profiles"]),
        "ann_baseline_per_call_mj": report["ann_baseline_45nm_fp32"]["per_call_mj"],
    }
    print(json.dumps(results))
    write_json(args.out, results)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
