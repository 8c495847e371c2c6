"""Sample quality of the graded mapping on the shipped default model: the bit-exact integer
simulator of the graded graph (ideal timing; hardware timing gives the same samples) against
the float model, DDPM 1000 steps, 250 samples, the same noise (``generate``'s per-index noise,
seed 0: also the noise of ``sdm-neuro evaluate``'s defaults), scored with the digits classifier
(recognisability = confident >= 0.9, FID / KID in its feature space). Writes
``results/graded_quality.json`` and the sample grids; the integer result is written as soon as it
exists (the float chain takes as long again). Heavy: about an hour per chain on 2 cores.

    python benchmarks/graded_quality.py [--num 250] [--steps 1000] [--skip-float]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from sdm_neuro.assets import default_model_path
from sdm_neuro.checkpoint import load_model
from sdm_neuro.compiler.pipeline import calibration_inputs
from sdm_neuro.compiler.quantize_graded import build_graded_graph
from sdm_neuro.data import load_dataset
from sdm_neuro.diffusion import LinearSchedule, generate
from sdm_neuro.evaluation.evaluate import evaluate_images, get_classifier
from sdm_neuro.images import save_grid
from sdm_neuro.simulators.graded import GradedSimulator


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num", type=int, default=250)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=250)
    ap.add_argument("--skip-float", action="store_true")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)

    model, ckpt = load_model(default_model_path())
    cfg = ckpt.config
    train = load_dataset("digits", split="train", img_size=cfg.img_size)
    graph = build_graded_graph(model, calibration_inputs(train.images, seed=0))
    sim = GradedSimulator(graph)

    def graded(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return sim(x, t)[0]

    sched, shape = LinearSchedule(num_steps=cfg.diffusion_steps), (cfg.img_ch, cfg.img_size,
                                                                  cfg.img_size)
    common = {"batch_size": args.batch, "sampler": "ddpm", "steps": args.steps, "seed": 0}
    clf, clf_name = get_classifier("digits", img_size=cfg.img_size)
    report = {"model": str(default_model_path()), "sampler": "ddpm", "steps": args.steps,
              "num": args.num, "seed": 0, "mapping": "graded", "chains": {}}

    def run(name: str, denoiser) -> torch.Tensor:
        t0 = time.perf_counter()
        x = generate(denoiser, sched, args.num, shape, **common)
        seconds = time.perf_counter() - t0
        q = evaluate_images(x, dataset="digits", classifier=clf, classifier_name=clf_name,
                            kid_subsets=20, seed=0, progress=False).to_dict()
        save_grid(x[:100], out / f"graded_quality_{name}.png")
        torch.save(x, out / f"graded_quality_{name}.pt")
        report["chains"][name] = {"seconds": round(seconds, 1), "quality": q}
        if name == "graded":
            report["chains"][name]["events"] = dict(sim.events_total)
        (out / "graded_quality.json").write_text(json.dumps(report, indent=1, default=float))
        return x

    x_int = run("graded", graded)
    if not args.skip_float:
        with torch.no_grad():
            x_float = run("float", model)
        mse = float((x_int - x_float).pow(2).mean())
        report["final_psnr_db"] = 10 * torch.log10(torch.tensor(4.0 / mse)).item()
        (out / "graded_quality.json").write_text(json.dumps(report, indent=1, default=float))
    print(json.dumps({k: v for k, v in report.items() if k != "chains"}, indent=1))
    for name, chain in report["chains"].items():
        rows = chain["quality"]["rows"]["samples"]
        print(f"{name}: confident {rows['confident']:.3f}, FID {rows['fid']:.2f}, "
              f"{chain['seconds']:.0f} s")


if __name__ == "__main__":
    main()
