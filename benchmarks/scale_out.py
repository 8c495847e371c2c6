"""Sampling throughput over Ray workers on this machine, and what a papers'-scale FID costs.

    python benchmarks/scale_out.py --out benchmarks/results/scale_out.json

1. Integer sampling of the shipped default model (the composed mapping, ideal timing; DDIM,
   --num samples in shards of one batch), as one process (no Ray, all cores) and through Ray
   with 1 and 2 local workers (one CPU each, warmed up by a short shard each first): wall time,
   calls per second (wall and summed per-worker busy rate), the speedups, and that every run
   gives the same samples.
2. The projected wall time of a 50,000-sample FID (1000 DDPM calls per sample) of the SDDPM paper
   configuration per worker type: one call at batch 16 of its graded integer simulator measured
   here, per CPU core (the call ran on all cores), and per GPU when one is present.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
from _timing import child  # benchmarks/ is the script's directory

from sdm_neuro.fileio import write_json

FID_SAMPLES, FID_CALLS = 50_000, 1000


def default_model_throughput(num: int, batch: int, steps: int) -> dict:
    import ray

    from sdm_neuro.assets import default_model_path
    from sdm_neuro.checkpoint import load_model
    from sdm_neuro.compiler.pipeline import IntegerDenoiser, build_integer_graph
    from sdm_neuro.compiler.pipeline import calibration_inputs
    from sdm_neuro.data import load_dataset
    from sdm_neuro.diffusion import LinearSchedule, generate
    from sdm_neuro.scaleout.cluster import start
    from sdm_neuro.scaleout.sharded import run_sharded
    from sdm_neuro.scaleout.shards import ShardStore, plan_shards
    from sdm_neuro.scaleout.tasks import SamplingSpec, simulate_shard

    model, _ = load_model(default_model_path())
    cfg = model.config
    graph = build_integer_graph(model, calibration_inputs(
        load_dataset("digits", img_size=cfg.img_size).images))
    shape = (cfg.img_ch, cfg.img_size, cfg.img_size)
    calls = steps * -(-num // batch)
    out = {"model": "default (composed, ideal)", "sampler": f"ddim {steps} steps", "num": num,
           "batch": batch, "calls": calls}
    t0 = time.perf_counter()
    ref = generate(IntegerDenoiser(graph), LinearSchedule(num_steps=cfg.diffusion_steps), num,
                   shape, batch_size=batch, sampler="ddim", steps=steps, seed=0, progress=False)
    sec = time.perf_counter() - t0
    out["one_process"] = {"threads": torch.get_num_threads(), "seconds": round(sec, 2),
                          "calls_per_second": round(calls / sec, 3)}
    spec = SamplingSpec(cfg.diffusion_steps, shape, batch, "ddim", steps, 0)
    warm = SamplingSpec(cfg.diffusion_steps, shape, batch, "ddim", 2, 0)
    for workers in (1, 2):
        start(workers, None)
        with tempfile.TemporaryDirectory() as tmp:
            # Warm-up: one short shard per worker starts the worker processes and their
            # imports, which a 50k-sample run pays once, not per shard.
            wplan = plan_shards(workers * batch, batch)
            run_sharded(simulate_shard, (graph, None, "ideal", 10, warm),
                        ShardStore(Path(tmp) / "warm", {"job": "warm-up"}, wplan), wplan,
                        workers=workers, cluster=None, calls=lambda s: 2, desc="",
                        progress=False)
            plan = plan_shards(num, batch)
            store = ShardStore(Path(tmp) / "run", {"job": "benchmark"}, plan)
            t0 = time.perf_counter()
            tensors, _, rep = run_sharded(simulate_shard, (graph, None, "ideal", 10, spec),
                                          store, plan, workers=workers, cluster=None,
                                          calls=lambda s: steps, desc="", progress=False)
            sec = time.perf_counter() - t0
        ray.shutdown()
        busy = sum(w["calls_per_second"] for w in rep["workers"].values())
        out[f"ray_{workers}_workers"] = {
            "seconds": round(sec, 2), "calls_per_second": round(calls / sec, 3),
            "busy_calls_per_second": round(busy, 3),
            "same_samples_as_one_process": bool(torch.equal(tensors["integer"], ref)),
            "per_worker": rep["workers"]}
    one, two = out["ray_1_workers"], out["ray_2_workers"]
    out["speedup_2_over_1_workers"] = round(one["seconds"] / two["seconds"], 3)
    # Summed per-worker calls/s while running tasks: the rate a long run approaches, without
    # the tail where one worker idles after the last shard.
    out["busy_speedup_2_over_1_workers"] = round(
        two["busy_calls_per_second"] / one["busy_calls_per_second"], 3)
    out["speedup_2_workers_over_one_process"] = round(out["one_process"]["seconds"]
                                                      / two["seconds"], 3)
    return out


PAPER_CALL = """
import json, torch
from sdm_neuro import PAPER_CIFAR10, SpikingUNet
from sdm_neuro.compiler.pipeline import IntegerDenoiser, calibration_inputs
from sdm_neuro.compiler.quantize_graded import build_graded_graph
torch.manual_seed(0)
model = SpikingUNet(PAPER_CIFAR10).eval()
device = {device!r}
calib = calibration_inputs(torch.rand(16, 3, 32, 32) * 2 - 1, count=8, batch_size=8)
den = IntegerDenoiser(build_graded_graph(model, calib), device=device)
x, t = torch.randn(16, 3, 32, 32), torch.randint(0, 1000, (16,))
times = [_timed(device, den, x, t) for _ in range(3)]
print(json.dumps({{"seconds_per_call_batch16": sorted(times[1:])[0]}}))
"""


def fid_projection() -> dict:
    """Wall time of 50k samples x 1000 calls of the paper configuration (graded, ideal) on one
    worker of each type, from one call at batch 16 measured here."""
    out = {"samples": FID_SAMPLES, "calls_per_sample": FID_CALLS,
           "model": "SDDPM paper configuration, random weights, graded mapping, ideal timing"}
    cores = os.cpu_count() or 1
    cpu = child(PAPER_CALL.format(device="cpu"))["seconds_per_call_batch16"]
    per_sample_call = cpu / 16 * cores  # core-seconds: the call ran on every core
    total = FID_SAMPLES * FID_CALLS * per_sample_call
    out["cpu_core"] = {"measured_call_s": round(cpu, 2), "cores_used": cores,
                       "core_seconds_per_sample_call": round(per_sample_call, 4),
                       "one_core_days": round(total / 86400, 1),
                       "hours_on_1000_cores": round(total / 1000 / 3600, 1)}
    if torch.cuda.is_available():
        gpu = child(PAPER_CALL.format(device="cuda"))["seconds_per_call_batch16"]
        total = FID_SAMPLES * FID_CALLS * gpu / 16
        out["gpu"] = {"name": torch.cuda.get_device_name(), "measured_call_s": round(gpu, 3),
                      "one_gpu_days": round(total / 86400, 2),
                      "hours_on_8_gpus": round(total / 8 / 3600, 1)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/scale_out.json"))
    ap.add_argument("--num", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=100, help="DDIM steps of the default model")
    ap.add_argument("--no-paper", action="store_true", help="skip the paper projection")
    args = ap.parse_args()
    results = {"machine": {"platform": platform.platform(), "torch": torch.__version__,
                           "cpus": os.cpu_count(), "threads": torch.get_num_threads()},
               "default_model": default_model_throughput(args.num, args.batch, args.steps)}
    print(json.dumps(results["default_model"]), flush=True)
    if not args.no_paper:
        results["fid_50k_projection"] = fid_projection()
        print(json.dumps(results["fid_50k_projection"]), flush=True)
    write_json(args.out, results)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
