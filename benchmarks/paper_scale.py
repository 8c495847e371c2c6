"""The SDDPM / SDM paper configurations at practical cost, measured in one run, written to JSON.

    python benchmarks/paper_scale.py --out benchmarks/results/paper_scale.json

Models: the shipped default model, and SDDPM's CIFAR-10 paper configuration and SDM's TSM model
(T_snn 8) as reference-format checkpoints with random weights for every key of the published
listings (``../shared/reference/*_keys.txt``). Calibration reads a stand-in CIFAR-10 folder of
random pixels (the dataset is not shipped; pixels change the ranges, not the cost).

1. ``compile``: lower + calibrate (the default 128 images) + quantize, per model and mapping, in
   a fresh process: wall time and peak memory.
2. ``commands``: ``sdm-neuro export REF --target loihi2`` (both mappings) and
   ``sdm-neuro energy-report REF``: wall time, peak memory, bundle size over the checkpoint's.
3. ``per_call``: one denoising call at batch 16, float PyTorch forward against the integer
   simulator (ideal and hardware-timed, each mapping): median times of float and integer calls
   alternating in one process (``--repeats`` each on the default model, 2 on the paper ones),
   peak memory of each side alone in its own process (the peak is reset after the model or
   graph is built), their ratios, and a ``simulate --steps 1000 --num 16`` estimate. On CUDA
   too when a GPU is present.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import tempfile
from pathlib import Path

import numpy as np
import torch
from _timing import child, run_cli  # benchmarks/ is the script's directory

from sdm_neuro.fileio import write_json

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"
LISTINGS = {"sddpm_paper": "sddpm_cifar10_keys.txt", "sdm_tsm_paper": "sdm_tsm_keys.txt"}


def reference_checkpoint(listing: Path, path: Path) -> Path:
    """A reference-format checkpoint (SDDPM trainer layout) with random weights for every key
    of ``listing`` (``key | [shape] | dtype | kind`` lines)."""
    g = torch.Generator().manual_seed(0)
    sd = {}
    for line in listing.read_text().splitlines():
        fields = [f.strip() for f in line.split(" | ")]
        if line.startswith("#") or len(fields) != 4 or not fields[1].startswith("["):
            continue
        shape = [int(v) for v in fields[1].strip("[]").split(",") if v.strip()]
        key = fields[0]
        sd[key] = (torch.zeros(shape, dtype=torch.int64) if fields[2] == "int64"
                   else 0.5 + torch.rand(shape, generator=g) if key.endswith("running_var")
                   else 1.0 + 0.1 * torch.randn(shape, generator=g) if key.endswith("tsmp")
                   else torch.randn(shape, generator=g) * 0.02)
    torch.save({"net_model": sd, "optim": {"state": {}, "param_groups": []}, "step": 1000,
                "x_T": torch.randn(4, 3, 32, 32, generator=g)}, path)
    return path


def stand_in_cifar(root: Path, images: int = 1000) -> Path:
    """CIFAR-10's python-version folder with random pixels."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (images, 3072), dtype=np.uint8),
                 b"labels": rng.integers(0, 10, images).tolist()}
        (root / name).write_bytes(pickle.dumps(batch, protocol=2))
    return root


LOAD = """
import gc, json, statistics, time, torch
from sdm_neuro.checkpoint import load_model
from sdm_neuro.assets import default_model_path
ckpt = {ckpt!r}
model, info = load_model(ckpt or default_model_path())
model.eval()
cfg = model.config
def reset_peak():
    gc.collect()
    open("/proc/self/clear_refs", "w").write("5")
"""

COMPILE = LOAD + """
from sdm_neuro.compiler.pipeline import build_integer_graph, calibration_inputs
from sdm_neuro.compiler.quantize_graded import build_graded_graph
from sdm_neuro.data import load_dataset
images = load_dataset({dataset!r}, split="train", data_dir={data_dir!r},
                      img_size=cfg.img_size).images
calib = calibration_inputs(images)
reset_peak()
t0 = time.perf_counter()
g = (build_graded_graph if {mapping!r} == "graded" else build_integer_graph)(model, calib)
sec = time.perf_counter() - t0
print(json.dumps({{"seconds": round(sec, 1), "peak_rss_mb": _peak_mb(),
                  "calibration_dtype": g.meta["calibration_dtype"]}}))
"""

BUILD = """
from sdm_neuro.compiler.pipeline import IntegerDenoiser, build_integer_graph, calibration_inputs
from sdm_neuro.compiler.quantize_graded import build_graded_graph
kind, mapping, device, batch, repeats = {kind!r}, {mapping!r}, {device!r}, {batch}, {repeats}
gen = torch.Generator().manual_seed(0)
x = torch.randn(batch, cfg.img_ch, cfg.img_size, cfg.img_size, generator=gen)
t = torch.randint(0, 1000, (batch,), generator=gen)
def integer():
    calib = calibration_inputs(torch.rand(16, cfg.img_ch, cfg.img_size, cfg.img_size) * 2 - 1,
                               count=8, batch_size=8)
    build = build_graded_graph if mapping == "graded" else build_integer_graph
    return IntegerDenoiser(build(model, calib), mode=kind, device=device)
def timed_call(fn):
    return _timed(device, fn, x, t)
"""

# Peak memory of one side alone: the float model, or the integer graph without the model.
MEMORY = LOAD + BUILD + """
if kind == "float":
    fn = model.to(device)
    x, t = x.to(device), t.to(device)
else:
    fn = integer()
    del model
reset_peak()
with torch.no_grad():
    for i in range(repeats + 1):
        timed_call(fn)
out = {{"peak_rss_mb": _peak_mb()}}
if device == "cuda":
    out["peak_cuda_mb"] = torch.cuda.max_memory_allocated() // (1 << 20)
print(json.dumps(out))
"""

# Time of both sides, their calls alternating in one process, so a drift in the machine's speed
# (this shared 2-core machine varies by 10% or more within minutes) moves both medians alike.
TIMES = LOAD + BUILD + """
den = integer()
model = model.to(device)
xf, tf = x.to(device), t.to(device)
sides = {{"float": lambda a, b: model(xf, tf), "integer": den}}
times = {{k: [] for k in sides}}
with torch.no_grad():
    for i in range(repeats + 1):
        for k, fn in sides.items():
            times[k].append(timed_call(fn))
print(json.dumps({{k: round(statistics.median(v[1:]), 4) for k, v in times.items()}}))
"""


def compile_costs(models: dict, data_dir: Path) -> dict:
    out = {}
    for name, ckpt in models.items():
        tsm = name == "sdm_tsm_paper"
        dataset = "digits" if ckpt is None else "cifar10"
        for mapping in ("composed",) if tsm else ("composed", "graded"):
            key = f"{name}/{mapping}"
            out[key] = child(COMPILE.format(ckpt=ckpt and str(ckpt), dataset=dataset,
                                            data_dir=str(data_dir), mapping=mapping))
            print(key, json.dumps(out[key]), flush=True)
    return out


def per_call(models: dict, device: str, batch: int, repeats: int, hardware: bool) -> dict:
    out = {}
    for name, ckpt in models.items():
        tsm = name == "sdm_tsm_paper"
        reps = repeats if ckpt is None else 2
        args = {"ckpt": ckpt and str(ckpt), "device": device, "batch": batch, "repeats": reps}
        f = child(MEMORY.format(kind="float", mapping="", **args))
        row = {"float": f}
        for mapping in ("composed",) if tsm else ("composed", "graded"):
            for mode in ("ideal", "hardware") if hardware or ckpt is None else ("ideal",):
                r = child(MEMORY.format(kind=mode, mapping=mapping, **args))
                times = child(TIMES.format(kind=mode, mapping=mapping, **args))
                r["seconds_per_call"] = times["integer"]
                r["float_seconds_per_call"] = times["float"]
                r["time_over_float"] = round(times["integer"] / times["float"], 3)
                r["memory_over_float"] = round(r["peak_rss_mb"] / f["peak_rss_mb"], 3)
                row[f"{mapping}/{mode}"] = r
            ideal = row[f"{mapping}/ideal"]
            if f"{mapping}/hardware" in row:
                row[f"{mapping}/hardware"]["time_over_ideal"] = round(
                    row[f"{mapping}/hardware"]["seconds_per_call"] / ideal["seconds_per_call"], 3)
            ideal["simulate_1000_steps_16_samples_s"] = round(
                1000 * ideal["seconds_per_call"] * max(1, 16 // batch))
        out[name] = row
        print(name, device, json.dumps(row), flush=True)
    return out


def commands(models: dict, data_dir: Path, work: Path) -> dict:
    out = {}
    for name, ckpt in models.items():
        if ckpt is None:
            continue
        data = ["--dataset", "cifar10", "--data-dir", str(data_dir), "--quiet"]
        size = ckpt.stat().st_size
        mappings = ("composed",) if name == "sdm_tsm_paper" else ("graded", "composed")
        for mapping in mappings:
            dst = work / f"{name}_{mapping}"
            r = run_cli(["export", str(ckpt), "--target", "loihi2", "--mapping", mapping,
                         "--out", str(dst), *data])
            r["bundle_bytes"] = sum(p.stat().st_size for p in dst.rglob("*") if p.is_file())
            r["bundle_over_checkpoint"] = round(r["bundle_bytes"] / size, 3)
            out[f"{name}/export {mapping}"] = r
            print(name, "export", mapping, json.dumps(r), flush=True)
        r = run_cli(["energy-report", str(ckpt), "--out", str(work / f"{name}_energy"), *data])
        out[f"{name}/energy-report"] = r
        print(name, "energy-report", json.dumps(r), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/paper_scale.json"))
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=20, help="calls timed (default model)")
    ap.add_argument("--only", choices=("compile", "commands", "per_call"), action="append",
                    help="sections to run (default: all)")
    ap.add_argument("--models", default="default,sddpm_paper,sdm_tsm_paper")
    ap.add_argument("--paper-hardware", action="store_true",
                    help="also time the hardware-timed mode on the paper configurations")
    args = ap.parse_args()
    sections = args.only or ["compile", "commands", "per_call"]
    results = {"machine": {"platform": platform.platform(), "torch": torch.__version__,
                           "threads": torch.get_num_threads(),
                           # set by importing sdm_neuro (children inherit it): both sides
                           "thp_mem_alloc": os.environ.get("THP_MEM_ALLOC_ENABLE"),
                           "cuda": torch.cuda.get_device_name() if torch.cuda.is_available()
                           else None}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data_dir = stand_in_cifar(work / "cifar-10-batches-py")
        models = {}
        for name in args.models.split(","):
            models[name] = None if name == "default" else reference_checkpoint(
                REFERENCE / LISTINGS[name], work / f"{name}.pt")
        if "compile" in sections:
            results["compile"] = compile_costs(models, data_dir)
        if "commands" in sections:
            results["commands"] = commands(models, data_dir, work)
        if "per_call" in sections:
            devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
            results["per_call"] = {d: per_call(models, d, args.batch, args.repeats,
                                               args.paper_hardware) for d in devices}
    write_json(args.out, results)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
