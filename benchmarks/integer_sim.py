"""Integer simulator speed against float PyTorch, measured in one run, written to JSON.

    python benchmarks/integer_sim.py --out benchmarks/results/integer_sim.json

1. One denoising call of the shipped default model at batch 16: float PyTorch forward, the
   integer simulator in ideal and hardware-timed mode (median of --repeats after a warm-up),
   and their ratios.
2. ``sdm-neuro simulate --steps 1000 --num 16`` on the default model (integer and float chains,
   the comparison, the quality metrics): wall time and peak memory of the whole command.
3. The SDDPM paper configuration (32x32x3, 66.7M parameters, random weights): time and peak
   memory of one call at batch 1, float vs integer (each in its own process, so peak memory is
   that computation's alone).
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch
from _timing import child, run_cli, timed  # benchmarks/ is the script's directory

from sdm_neuro.fileio import write_json


def default_model_call(repeats: int) -> dict:
    from sdm_neuro.assets import default_model_path
    from sdm_neuro.checkpoint import load_model
    from sdm_neuro.data import load_dataset
    from sdm_neuro.compiler.pipeline import build_integer_graph, calibration_inputs
    from sdm_neuro.simulators.integer import IntegerSimulator
    from sdm_neuro.simulators.timed import TimedSimulator
    from sdm_neuro.compiler.schedule import schedule

    model, _ = load_model(default_model_path())
    images = load_dataset("digits", img_size=16).images
    graph = build_integer_graph(model, calibration_inputs(images))
    x = torch.randn(16, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    t = torch.full((16,), 500)
    ideal, hw = IntegerSimulator(graph), TimedSimulator(schedule(graph))
    with torch.no_grad():
        f = timed(lambda: model(x, t), repeats)
    i = timed(lambda: ideal(x, t), repeats)
    h = timed(lambda: hw(x, t), max(1, repeats // 2))
    return {"batch": 16, "float_s": round(f, 4), "integer_ideal_s": round(i, 4),
            "integer_hardware_s": round(h, 4), "ratio_ideal_over_float": round(i / f, 3),
            "ratio_hardware_over_float": round(h / f, 3)}


PAPER_CALL = """
import json, time, torch
from sdm_neuro import PAPER_CIFAR10, SpikingUNet
torch.manual_seed(0)
model = SpikingUNet(PAPER_CIFAR10).eval()
x, t = torch.randn(1, 3, 32, 32), torch.tensor([500])
kind = {kind!r}
if kind == "float":
    with torch.no_grad():
        model(x, t); t0 = time.perf_counter(); model(x, t); sec = time.perf_counter() - t0
else:
    from sdm_neuro.compiler.pipeline import build_integer_graph, calibration_inputs
    from sdm_neuro.simulators.integer import IntegerSimulator
    g = build_integer_graph(model, calibration_inputs(torch.rand(8, 3, 32, 32) * 2 - 1,
                                                     count=2, batch_size=2))
    sim = IntegerSimulator(g)
    sim(x, t); t0 = time.perf_counter(); sim(x, t); sec = time.perf_counter() - t0
print(json.dumps({{"seconds_per_call": round(sec, 3), "peak_rss_mb": _peak_mb()}}))
"""


def simulate_command(out_dir: Path) -> dict:
    argv = ["simulate", "--steps", "1000", "--num", "16", "--batch", "16", "--out",
            str(out_dir), "--force", "--quiet"]
    run = run_cli(argv)
    report = json.loads((out_dir / "simulate.json").read_text())
    return {"command": "sdm-neuro " + " ".join(argv), "wall_s": run["wall_s"],
            "peak_rss_mb": run["peak_rss_mb"], "seconds": report["seconds"],
            "final_psnr_db": report["comparison"]["final_psnr_db"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/integer_sim.json"))
    ap.add_argument("--skip-paper", action="store_true", help="skip the 66.7M-parameter model")
    ap.add_argument("--skip-simulate", action="store_true")
    args = ap.parse_args()
    results = {"machine": {"platform": platform.platform(), "torch": torch.__version__,
                           "threads": torch.get_num_threads()}}
    results["default_model_call"] = default_model_call(args.repeats)
    print(json.dumps(results["default_model_call"]))
    if not args.skip_simulate:
        results["simulate_1000_steps_16_samples"] = simulate_command(
            args.out.parent / "simulate_default")
        print(json.dumps(results["simulate_1000_steps_16_samples"]))
    if not args.skip_paper:
        paper = {k: child(PAPER_CALL.format(kind=k)) for k in ("float", "integer")}
        paper["ratio_integer_over_float"] = round(
            paper["integer"]["seconds_per_call"] / paper["float"]["seconds_per_call"], 3)
        results["paper_config_batch1"] = paper
        print(json.dumps(paper))
    write_json(args.out, results)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
