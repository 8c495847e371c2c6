"""Command-line interface: a thin layer over the Python API.

Every command returns an exit code; an :class:`~sdm_neuro.errors.SdmNeuroError` becomes a
one-paragraph message on stderr and the error's exit code (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .errors import CheckpointError, ExportError, SdmNeuroError, UsageError
from .fileio import sha256_file

# ---------------------------------------------------------------------------------------------
# option types: a bad value stops at parse time (exit 2, argparse names the option), before any
# file is read or any work starts
# ---------------------------------------------------------------------------------------------

def _number(text: str, kind: type) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None


def positive_int(text: str) -> int:
    """An integer >= 1 (counts, sizes, steps: 0 is never "the default")."""
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1 (got {value})")
    return value


SEED_MAX = 2**32 - 1  # numpy's RandomState (KID subsets) takes seeds in [0, 2**32 - 1]


def seed_int(text: str) -> int:
    """A seed every generator of the pipeline accepts (torch, numpy's RandomState and
    SeedSequence)."""
    value = _number(text, int)
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"must be an integer in [0, {SEED_MAX}] (got {value})")
    return value


def positive_finite_float(text: str) -> float:
    """A finite number > 0 (thresholds, time steps)."""
    value = _number(text, float)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0 (got {text})")
    return value


def probability(text: str) -> float:
    """A number in (0, 1]: a spike rate of 0 would calibrate on silence."""
    value = _number(text, float)
    if not 0.0 < value <= 1.0:  # also false for nan
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1] (got {text})")
    return value


# ---------------------------------------------------------------------------------------------
# output locations: checked before the work, not only when the results are written
# ---------------------------------------------------------------------------------------------

# What each command writes, by option: "bundle" is a directory written whole (atomic_dir:
# --force replaces a non-empty one), "dir" a directory written into, "file" one file.
OUTPUTS: dict[str, tuple[tuple[str, str], ...]] = {
    "sample": (("out", "dir"),),
    "evaluate": (("out", "bundle"),),
    "simulate": (("out", "bundle"),),
    "energy-report": (("out", "bundle"),),
    "export": (("out", "bundle"),),
    "train": (("out", "file"), ("release", "file")),
    "train-classifier": (("out", "file"),),
}


def check_outputs(args: argparse.Namespace) -> None:
    """Refuse every output location of ``args.command`` that the write at the end would
    refuse, or fail on, before any work starts."""
    for attr, kind in OUTPUTS.get(args.command, ()):
        path = getattr(args, attr, None)
        if path is not None:
            _check_output(path, f"--{attr}", kind, force=getattr(args, "force", None))


def _check_output(path: Path, option: str, kind: str, *, force: bool | None) -> None:
    if path.is_symlink() and kind == "bundle":
        # the finished directory is renamed into place: that would replace the link itself
        raise UsageError(f"{option} {path}: is a symbolic link; the output directory is "
                         "replaced as a whole, so give the directory's own path.")
    if path.is_symlink() and not path.exists() and kind == "dir":
        raise UsageError(f"{option} {path}: is a broken symbolic link.")
    if path.exists():
        if kind == "file" and path.is_dir():
            raise UsageError(f"{option} {path}: is a directory; expected a file to write.")
        if kind != "file" and not path.is_dir():
            raise UsageError(f"{option} {path}: exists and is not a directory.")
        if kind == "bundle" and not force and _non_empty(path, option):
            raise UsageError(f"{option} {path}: output directory exists and is not empty; "
                             "pass --force to replace it.")
    # Where new entries are created: the folder itself ("dir"), else beside it (a temporary
    # file or directory renamed onto it); missing folders are created from the nearest one there.
    base = path if kind == "dir" else path.parent
    while not os.path.lexists(base) and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise UsageError(f"{option} {path}: {base} is not a directory, so nothing can be "
                         "written there.")
    if not os.access(base, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path}: {base} is not writable (permission denied or a "
                         "read-only file system).")


def _non_empty(path: Path, option: str) -> bool:
    try:
        return any(path.iterdir())
    except OSError as e:
        raise UsageError(f"{option} {path}: cannot be listed ({e.strerror or e}).") from None


def _set_threads(args: argparse.Namespace) -> None:
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)


# ---------------------------------------------------------------------------------------------
# shared options
# ---------------------------------------------------------------------------------------------

def _add_checkpoint_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", type=Path, nargs="?", default=None,
                   help="checkpoint file: sdm-neuro native (.pt / .safetensors) or an SDDPM / SDM "
                        "reference checkpoint (dict with net_model and/or ema_model); default: "
                        "the shipped default model (digits, 16x16)")
    p.add_argument("--weights", choices=("auto", "ema", "net"), default="auto",
                   help="which weights to use: ema_model when present (auto), or force one")
    p.add_argument("--snn-steps", type=positive_int, default=None, metavar="T",
                   help="SNN time steps T_snn (reference checkpoints do not store it; default 4; "
                        "fixed by the tsmp shape for TSM models)")
    p.add_argument("--img-size", type=positive_int, default=None, metavar="PX",
                   help="image side length (reference checkpoints do not store it; default 32)")


def _add_sampling_args(p: argparse.ArgumentParser, *, num: int) -> None:
    from .diffusion import SAMPLERS

    p.add_argument("--sampler", choices=SAMPLERS, default="ddpm")
    p.add_argument("--steps", type=positive_int, default=1000,
                   help="denoising steps (default 1000)")
    p.add_argument("--num", type=positive_int, default=num,
                   help=f"number of samples (default {num})")
    p.add_argument("--batch", type=positive_int, default=num, help=f"batch size (default {num})")
    p.add_argument("--seed", type=seed_int, default=0)


def _add_device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu",
                   help="where the float model runs: cpu (default), cuda, auto; the noise and the "
                        "sampler stay on the CPU")


def _float_denoiser(args: argparse.Namespace, model):
    from .diffusion import on_device
    from .training import resolve_device

    return on_device(model, resolve_device(args.device))


THRESHOLD_HELP = ("threshold guidance: set every firing threshold to X (the thresholds are "
                  "replaced, not multiplied: for a model with threshold 1, as trained here, "
                  "this is the same as scaling them by X)")


def _add_deploy_args(p: argparse.ArgumentParser) -> None:
    """Options of the commands that quantize a model (calibrated on its training images)."""
    from .data import DATASETS

    p.add_argument("--threshold-scale", type=positive_finite_float, default=None, metavar="X",
                   help=THRESHOLD_HELP)
    p.add_argument("--dataset", choices=DATASETS, default=None,
                   help="the training set (default: the checkpoint's)")
    p.add_argument("--data-dir", type=Path, default=None)


def _add_feedforward_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "NIR graphs", "CHECKPOINT may be a .nir file: a feed-forward SNN ((Conv2d | Affine) -> "
        "(IF | LIF) layers) as snnTorch's export_to_nir or Norse's to_nir write it. It is "
        "quantized on the input (or random spikes) and run by the integer simulator beside its "
        "float reference; export writes its lava-dl netx HDF5.")
    g.add_argument("--input", type=Path, default=None, metavar="X.npy",
                   help="input [B, *shape] (held every step) or [T, B, *shape]; 0/1 values are "
                        "spikes, others a current (default: random spikes)")
    g.add_argument("--time-steps", type=positive_int, default=32, help="time steps (default 32)")
    g.add_argument("--rate", type=probability, default=0.2,
                   help="spike probability of the random input, in (0, 1] (default 0.2)")
    g.add_argument("--dt", type=positive_finite_float, default=None,
                   help="time step the LIF constants assume (default: from the file)")


def _apply_threshold_scale(args: argparse.Namespace, model) -> None:
    if args.threshold_scale is not None:  # a finite value > 0 (positive_finite_float)
        model.set_threshold(args.threshold_scale)


def _or_one(value: float | None) -> float:
    """A threshold option as recorded in reports: unset means the model's own (1.0)."""
    return 1.0 if value is None else value


def _check_steps(sampler: str, steps: int, diffusion_steps: int) -> None:
    """--steps against the model's diffusion steps, before any sampling or quantization."""
    from .diffusion.samplers import model_call_steps

    model_call_steps(sampler, diffusion_steps, steps)


def _add_output_args(p: argparse.ArgumentParser, out: str, *, force: bool = True) -> None:
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=Path(out), help="output directory")
    if force:
        p.add_argument("--force", action="store_true",
                       help="replace a non-empty output directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _load(args: argparse.Namespace):
    from .checkpoint import load_model

    if args.checkpoint is None:
        from .assets import default_model_path

        args.checkpoint = default_model_path()
    model, ckpt = load_model(args.checkpoint, weights=args.weights, snn_steps=args.snn_steps,
                             img_size=args.img_size)
    for note in ckpt.notes:
        print(f"note: {note}", file=sys.stderr)
    return model, ckpt


# ---------------------------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------------------------

def model_summary(model, ckpt) -> dict[str, Any]:
    """What ``info`` reports, as plain data."""
    from .models import count_parameters, neuron_shapes

    shapes = neuron_shapes(model)
    return {
        "checkpoint": str(ckpt.path),
        "format": ckpt.kind,
        "weights": ckpt.weights,
        "config": ckpt.config.to_dict(),
        "snn_steps": ckpt.config.snn_steps,
        "parameters": count_parameters(model),
        "state_dict_entries": len(ckpt.state_dict),
        "spiking_layers": len(shapes),
        "neurons": sum(c * h * w for c, h, w in shapes.values()),
        "layers": {name: list(s) for name, s in shapes.items()},
        "notes": list(ckpt.notes),
        "meta": ckpt.meta,
    }


def cmd_info(args: argparse.Namespace) -> int:
    import json

    model, ckpt = _load(args)
    info = model_summary(model, ckpt)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    from rich.console import Console
    from rich.table import Table

    cfg = ckpt.config
    console = Console()
    console.print(f"[bold]{ckpt.path}[/bold]: {ckpt.kind} checkpoint, {ckpt.weights} weights")
    table = Table(show_header=False)
    rows = [
        ("variant", "SDM temporal-wise (TSM)" if cfg.tsm else "SDDPM"),
        ("ch / ch_mult", f"{cfg.ch} / {list(cfg.ch_mult)}"),
        ("num_res_blocks", str(cfg.num_res_blocks)),
        ("image", f"{cfg.img_ch} x {cfg.img_size} x {cfg.img_size}"),
        ("diffusion steps T", str(cfg.diffusion_steps)),
        ("SNN steps T_snn", str(cfg.snn_steps)),
        ("parameters", f"{info['parameters']:,}"),
        ("state_dict entries", str(info["state_dict_entries"])),
        ("spiking layers", str(info["spiking_layers"])),
        ("neurons (per SNN step)", f"{info['neurons']:,}"),
    ]
    for k, v in rows:
        table.add_row(k, v)
    console.print(table)
    if args.layers:
        lt = Table("spiking layer", "C x H x W", "neurons")
        for name, (c, h, w) in info["layers"].items():
            lt.add_row(name, f"{c} x {h} x {w}", f"{c * h * w:,}")
        console.print(lt)
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    import numpy as np

    from .diffusion import LinearSchedule, generate
    from .fileio import write_json, write_npy
    from .images import save_grid

    model, ckpt = _load(args)
    if args.threshold is not None:
        model.set_threshold(args.threshold)
    _set_threads(args)
    cfg = ckpt.config
    _check_steps(args.sampler, args.steps, cfg.diffusion_steps)
    out: Path = args.out
    t0 = time.perf_counter()
    x = generate(_float_denoiser(args, model), LinearSchedule(num_steps=cfg.diffusion_steps),
                 args.num, (cfg.img_ch, cfg.img_size, cfg.img_size), batch_size=args.batch,
                 sampler=args.sampler, steps=args.steps, seed=args.seed,
                 progress=not args.quiet)
    elapsed = time.perf_counter() - t0
    arr = x.numpy().astype(np.float32)
    write_npy(out / "samples.npy", arr)
    save_grid(x, out / "samples.png")
    write_json(out / "sample.json", {
        "tool": f"sdm-neuro {__version__}", "checkpoint": str(ckpt.path), "weights": ckpt.weights,
        "config": cfg.to_dict(), "sampler": args.sampler, "steps": args.steps, "num": args.num,
        "batch": args.batch, "seed": args.seed, "threshold": _or_one(args.threshold),
        "seconds": round(elapsed, 3), "notes": list(ckpt.notes),
        "files": {"grid": "samples.png", "samples": "samples.npy ([N,C,H,W] float32 in [-1,1])"},
    })
    print(f"wrote {args.num} samples to {out}/samples.png and {out}/samples.npy "
          f"({elapsed:.1f} s)")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import numpy as np

    from .diffusion import LinearSchedule, generate
    from .evaluation.evaluate import (
        check_kid_options,
        class_histogram_png,
        evaluate_images,
        get_classifier,
        report_dict,
        summary_lines,
    )
    from .evaluation.quality import NOT_INCEPTION
    from .fileio import atomic_dir, write_json, write_npy
    from .images import save_grid

    check_kid_options(args.kid_subsets, args.kid_subset_size)  # before sampling, not after
    _set_threads(args)
    t0 = time.perf_counter()
    with atomic_dir(args.out, force=args.force) as tmp:
        if args.samples is not None:
            from .evaluation.evaluate import read_samples

            samples = read_samples(args.samples)
            source: dict[str, Any] = {"samples": str(args.samples)}
            dataset = args.dataset or "digits"
        else:
            model, ckpt = _load(args)
            if args.threshold is not None:
                model.set_threshold(args.threshold)
            cfg = ckpt.config
            _check_steps(args.sampler, args.steps, cfg.diffusion_steps)
            dataset = args.dataset or ckpt.meta.get("dataset")
            if dataset is None:
                raise UsageError(f"{ckpt.path}: the checkpoint does not say which dataset it was "
                                 "trained on; pass --dataset.")
            samples = generate(_float_denoiser(args, model),
                               LinearSchedule(num_steps=cfg.diffusion_steps), args.num,
                               (cfg.img_ch, cfg.img_size, cfg.img_size), batch_size=args.batch,
                               sampler=args.sampler, steps=args.steps, seed=args.seed,
                               progress=not args.quiet)
            source = {"checkpoint": str(ckpt.path), "weights": ckpt.weights,
                      "config": cfg.to_dict(), "sampler": args.sampler, "steps": args.steps,
                      "num": args.num, "seed": args.seed, "threshold": _or_one(args.threshold),
                      "notes": list(ckpt.notes)}
            arr = samples.numpy().astype(np.float32)
            write_npy(tmp / "samples.npy", arr)
        t_sample = time.perf_counter() - t0
        clf, clf_name = get_classifier(dataset, img_size=samples.shape[-1],
                                       data_dir=args.data_dir, path=args.classifier,
                                       save_to=tmp / "classifier.pt", progress=not args.quiet)
        report = evaluate_images(samples, dataset=dataset, classifier=clf,
                                 classifier_name=clf_name, data_dir=args.data_dir,
                                 inception_weights=args.inception_weights,
                                 kid_subsets=args.kid_subsets,
                                 kid_subset_size=args.kid_subset_size, seed=args.seed,
                                 progress=not args.quiet)
        save_grid(samples[:100], tmp / "samples.png")
        class_histogram_png(tmp / "classes.png", report, clf.class_names)
        write_json(tmp / "report.json", report_dict(
            report, tool=f"sdm-neuro {__version__}", **source,
            classifier_meta=clf.meta, seconds_sampling=round(t_sample, 1),
            seconds_total=round(time.perf_counter() - t0, 1)))
    print(NOT_INCEPTION.format(dataset=dataset, dim=report.feature_dim))
    for line in summary_lines(report):
        print(line)
    print(f"wrote {args.out}/report.json, samples.png, classes.png")
    return 0


def _deploy(args: argparse.Namespace, sampling: tuple[str, int] | None = None):
    """The checkpoint (with ``--threshold-scale``), its dataset's training images and the
    quantized deployment graph calibrated on them. ``sampling``: (sampler, steps) to check
    against the model before the calibration."""
    from .data import load_dataset
    from .compiler.pipeline import build_integer_graph, calibration_inputs

    model, ckpt = _load(args)
    if sampling is not None:
        _check_steps(*sampling, ckpt.config.diffusion_steps)
    _apply_threshold_scale(args, model)
    dataset = args.dataset or ckpt.meta.get("dataset")
    if dataset is None:
        raise UsageError(f"{ckpt.path}: the checkpoint does not say which dataset it was trained "
                         "on; pass --dataset (its training images calibrate the quantization).")
    train = load_dataset(dataset, split="train", data_dir=args.data_dir,
                         img_size=ckpt.config.img_size)
    graph = build_integer_graph(model, calibration_inputs(train.images, seed=args.seed))
    return model, ckpt, dataset, train, graph


def _from_bundle(args: argparse.Namespace):
    """(float model or None, checkpoint path, dataset, graph) of ``--bundle DIR``: the
    network comes from the bundle alone; the float model, for the comparison, from the
    checkpoint given, else from the one the manifest names if it is still there, unchanged."""
    from .checkpoint import load_model
    from .export.bundle import read_bundle

    if args.threshold_scale is not None:
        raise UsageError("--threshold-scale: a bundle's thresholds were fixed at export; "
                         "export again with --threshold-scale.")
    graph, manifest = read_bundle(args.bundle)
    src = manifest.get("checkpoint") or {}
    path = args.checkpoint
    if path is None and src.get("path") and Path(src["path"]).is_file() \
            and sha256_file(Path(src["path"])) == src.get("sha256"):
        path = Path(src["path"])
    model = None
    if path is not None:
        model, _ = load_model(path, weights=args.weights, snn_steps=graph.config.snn_steps,
                                 img_size=graph.config.img_size)
        scale = (manifest.get("quantization") or {}).get("threshold_scale", 1.0)
        if scale != 1.0:
            model.set_threshold(scale)
    else:
        print(f"note: {args.bundle}: its checkpoint is not available; simulating without the "
              "float comparison.", file=sys.stderr)
    return model, path or src.get("path"), args.dataset or manifest.get("dataset"), graph


def _is_nir(args: argparse.Namespace) -> bool:
    return args.checkpoint is not None and args.checkpoint.suffix == ".nir"


def _is_feedforward_bundle(args: argparse.Namespace) -> bool:
    from .export.feedforward_bundle import is_feedforward_bundle

    return getattr(args, "bundle", None) is not None and is_feedforward_bundle(args.bundle)


def _sequential(args: argparse.Namespace):
    """(network, its quantized form from a bundle or None, input, input description) of a
    ``.nir`` CHECKPOINT argument or a sequential ``--bundle``."""
    from .frontends.feedforward_nir import feedforward_from_nir
    from .run.feedforward import network_input

    if args.threshold_scale is not None:
        raise UsageError("--threshold-scale applies to U-Net checkpoints, not to NIR graphs.")
    qnet = None
    if getattr(args, "bundle", None) is not None:
        from .export.feedforward_bundle import read_feedforward_bundle

        qnet, _ = read_feedforward_bundle(args.bundle)
        net = qnet.net
    else:
        net = feedforward_from_nir(args.checkpoint, dt=args.dt)
    x, desc = network_input(net, args.input, steps=args.time_steps, batch=args.num,
                            rate=args.rate, seed=args.seed)
    return net, qnet, x, desc


def _simulate_feedforward(args: argparse.Namespace) -> int:
    from .fileio import atomic_dir, write_json
    from .run.feedforward import save_run, simulate_feedforward

    net, qnet, x, desc = _sequential(args)
    run = simulate_feedforward(net, x, qnet=qnet)
    src = args.checkpoint if qnet is None else args.bundle / "network.nir"
    report = {"tool": f"sdm-neuro {__version__}", "nir": str(src),
              "bundle": None if qnet is None else str(args.bundle),
              "sha256": sha256_file(src), **run.report, "input_data": desc}
    with atomic_dir(args.out, force=args.force) as tmp:
        save_run(run, tmp)
        write_json(tmp / "simulate.json", report)
    for name, layer in report["layers"].items():
        print(f"{name}: {layer['kind']} {layer['shape']} rate float {layer['rate_float']:.4f} "
              f"integer {layer['rate_integer']:.4f}; spike agreement "
              f"{layer['spike_agreement']:.4f} (vth {layer['vth']}, dv {layer['dv']})")
    out = report["output"]
    print(f"output: argmax of spike counts agrees on {out['argmax_agreement']:.3f} of "
          f"{report['batch']} samples; mean |count difference| {out['count_abs_diff_mean']:.3f}")
    print(f"wrote {args.out}/simulate.json, spikes.npz, rates.png")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from .compiler.pipeline import IntegerDenoiser, psnr
    from .diffusion import LinearSchedule, generate
    from .evaluation.evaluate import evaluate_images, fmt_metric, get_classifier
    from .fileio import atomic_dir, write_json, write_npy
    from .images import save_grid

    _set_threads(args)
    if _is_nir(args) or _is_feedforward_bundle(args):
        return _simulate_feedforward(args)
    t0 = time.perf_counter()
    if args.bundle is not None:
        model, ckpt_path, dataset, graph = _from_bundle(args)
        _check_steps(args.sampler, args.steps, graph.config.diffusion_steps)
    else:
        model, ckpt, dataset, _, graph = _deploy(args, (args.sampler, args.steps))
        ckpt_path = ckpt.path
    cfg = graph.config
    t_build = time.perf_counter() - t0
    denoiser = IntegerDenoiser(graph, mode=args.mode, float_model=model,
                               compare_every=args.compare_every)
    graph = denoiser.graph  # scheduled (offsets, delays) in hardware mode
    schedule = LinearSchedule(num_steps=cfg.diffusion_steps)
    shape = (cfg.img_ch, cfg.img_size, cfg.img_size)
    common = {"batch_size": args.batch, "sampler": args.sampler, "steps": args.steps,
              "seed": args.seed}
    t1 = time.perf_counter()
    x_int = generate(denoiser, schedule, args.num, shape, progress=not args.quiet, **common)
    t_int = time.perf_counter() - t1
    t1 = time.perf_counter()
    x_float = (None if model is None else
               generate(model, schedule, args.num, shape, progress=not args.quiet, **common))
    t_float = time.perf_counter() - t1

    clf, clf_name = get_classifier(dataset, img_size=cfg.img_size, data_dir=args.data_dir,
                                   progress=not args.quiet)
    quality = {}
    for name, x in (("integer", x_int), ("float", x_float)):
        if x is None:
            continue
        rep = evaluate_images(x, dataset=dataset, classifier=clf, classifier_name=clf_name,
                              data_dir=args.data_dir, kid_subsets=20, seed=args.seed,
                              progress=False)
        quality[name] = rep.to_dict()
    c = denoiser.counters
    calls = max(c.calls, 1)
    layers = {}
    qmeta = graph.meta["quantization"]
    for pop in graph.populations:
        agree = denoiser.agreement.get(pop.name, [])
        layers[pop.name] = {
            "shape": list(pop.shape), "neurons": pop.neurons, "offset": pop.offset,
            **qmeta[pop.name],
            "spikes_per_call": c.spikes[pop.name] / calls,
            "spike_rate": c.spikes[pop.name] / calls / (pop.neurons * cfg.snn_steps * args.batch),
            "spike_agreement_with_float": sum(agree) / len(agree) if agree else None}
    report = {
        "tool": f"sdm-neuro {__version__}", "checkpoint": str(ckpt_path),
        "bundle": None if args.bundle is None else str(args.bundle), "mode": args.mode,
        "sampler": args.sampler, "steps": args.steps, "num": args.num, "batch": args.batch,
        "seed": args.seed, "threshold_scale": _or_one(args.threshold_scale),
        "seconds": {"build": round(t_build, 2), "integer_sampling": round(t_int, 2),
                    "float_sampling": round(t_float, 2)},
        "graph": {"populations": len(graph.populations), "projections": len(graph.projections)},
        "counters_per_call": {"neuron_updates": c.neuron_updates / calls,
                              "host_macs": c.host_macs / calls,
                              "synops": {k: v / calls for k, v in c.synops.items()},
                              "synops_total": sum(c.synops.values()) / calls,
                              "spikes_total": sum(c.spikes.values()) / calls,
                              "events": dict(c.events)},
        "layers": layers,
        "comparison": {"final_psnr_db": None if x_float is None else psnr(x_int, x_float),
                       "eps_per_call": denoiser.errors, "quality": quality},
    }
    with atomic_dir(args.out, force=args.force) as tmp:
        write_npy(tmp / "samples.npy", x_int.numpy())
        save_grid(x_int, tmp / "samples.png")
        if x_float is not None:
            write_npy(tmp / "float_samples.npy", x_float.numpy())
            save_grid(x_float, tmp / "float_samples.png")
        graph.save(tmp / "graph.pt")
        write_json(tmp / "simulate.json", report)
    if not args.quiet:
        from rich.console import Console

        from .ir.graph import graph_table

        console = Console()
        if not console.is_terminal:
            console = Console(width=160)  # a file or pipe: do not squeeze the table into 80
        console.print(graph_table(graph, layers))
    qi = quality["integer"]["rows"]["samples"]
    if x_float is None:
        print(f"integer (no float model to compare with): confident {qi['confident']:.3f}; "
              f"FID ({dataset} classifier features) {fmt_metric(qi['fid'], '.2f')}")
    else:
        qf = quality["float"]["rows"]["samples"]
        print(f"integer vs float: final-image PSNR {report['comparison']['final_psnr_db']:.2f} "
              f"dB; confident {qi['confident']:.3f} vs {qf['confident']:.3f}; "
              f"FID ({dataset} classifier features) {fmt_metric(qi['fid'], '.2f')} vs "
              f"{fmt_metric(qf['fid'], '.2f')}")
    print(f"per call: {report['counters_per_call']['synops_total']:.3g} synaptic ops, "
          f"{report['counters_per_call']['spikes_total']:.3g} spikes; sampling took "
          f"{t_int:.1f} s (integer) and {t_float:.1f} s (float)")
    print(f"wrote {args.out}/samples.png, {'' if x_float is None else 'float_samples.png, '}"
          "simulate.json, graph.pt")
    return 0


def cmd_energy_report(args: argparse.Namespace) -> int:
    from .energy.activity import activity_from_simulate
    from .energy.report import energy_report, print_report, save_charts
    from .fileio import atomic_dir, write_json
    from .hardware_profiles.profile import get_profile, shipped_profiles

    _set_threads(args)
    if _is_nir(args):
        raise UsageError(f"{args.checkpoint}: energy-report covers U-Net denoisers; for a NIR "
                         "graph, `sdm-neuro export` reports cores, chips and constraints and "
                         "`sdm-neuro simulate` its spike counts.")
    profiles = [get_profile(p) for p in (args.profile or shipped_profiles())]
    activity = activity_from_simulate(args.stats) if args.stats is not None else None
    chain = activity.chain if activity is not None else None
    sampler = args.sampler or (chain[0] if chain else "ddpm")
    steps = args.steps if args.steps is not None else (chain[1] if chain else 1000)
    if args.bundle is not None:
        from .data import load_dataset

        model, ckpt_path, dataset, graph = _from_bundle(args)
        _check_steps(sampler, steps, graph.config.diffusion_steps)
        if model is None:
            raise UsageError(f"{args.bundle}: the report counts the float model's layer ops "
                             f"(papers' convention, ANN baseline), and the bundle's checkpoint "
                             f"({ckpt_path}) is not available; pass it: energy-report CKPT "
                             "--bundle DIR.")
        train = load_dataset(dataset, split="train", data_dir=args.data_dir,
                             img_size=graph.config.img_size)
    else:
        model, ckpt, _, train, graph = _deploy(args, (sampler, steps))
        ckpt_path = ckpt.path
    report = energy_report(model, graph, train.images, profiles, sampler=sampler,
                           steps=steps, calls=args.calls, batch=args.batch, seed=args.seed,
                           activity=activity, checkpoint=str(ckpt_path),
                           progress=not args.quiet)
    report = {"tool": f"sdm-neuro {__version__}",
              "bundle": None if args.bundle is None else str(args.bundle), **report}
    main_profile = "loihi2" if "loihi2" in report["profiles"] else profiles[0].name
    with atomic_dir(args.out, force=args.force) as tmp:
        write_json(tmp / "energy.json", report)
        save_charts(report, tmp, main_profile)
    print_report(report)
    print(f"wrote {args.out}/energy.json, energy_per_layer.png, firing_rate.png, "
          "energy_per_image.png")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    _set_threads(args)
    if _is_nir(args):
        return _export_feedforward(args)
    if args.target == "onnx":
        return _export_onnx(args)
    return _export_bundle(args)


def _export_feedforward(args: argparse.Namespace) -> int:
    from .export.feedforward_bundle import write_feedforward_bundle
    from .fileio import atomic_dir
    from .hardware_profiles.constraints import check_feedforward
    from .compiler.quantize_feedforward import quantize_feedforward

    if args.target == "onnx":
        raise UsageError(f"{args.checkpoint}: --target onnx exports U-Net denoisers; a NIR "
                         "graph exports to loihi2 (netx HDF5) or nir.")
    net, _, x, desc = _sequential(args)
    qnet = quantize_feedforward(net, x)
    profile, placement = _constraints(args, check_feedforward(qnet, _profile(args)),
                                      args.checkpoint)
    with atomic_dir(args.out, force=args.force) as tmp:
        manifest = write_feedforward_bundle(qnet, tmp, {
            "target": args.target, "tool": f"sdm-neuro {__version__}",
            "source": {"path": str(args.checkpoint), "sha256": sha256_file(args.checkpoint),
                       "read_as": net.source},
            "calibration": desc, "profile": {"name": profile.name, "path": str(profile.path)},
            "constraints": placement.to_dict()}, netx=args.target == "loihi2")
    print(f"wrote {args.out}: manifest.json, {', '.join(manifest['files'])} "
          f"({len(net.layers)} layers, input {'spikes' if qnet.spike_input else 'current'})")
    _print_placement(profile, placement)
    return 0


def _export_onnx(args: argparse.Namespace) -> int:
    import torch

    from .export.onnx import check_onnx, export_onnx
    from .fileio import atomic_dir, write_json

    model, ckpt = _load(args)
    _apply_threshold_scale(args, model)
    with atomic_dir(args.out, force=args.force) as tmp:
        onnx_path = export_onnx(model, tmp / "denoiser.onnx")
        chk = check_onnx(model, onnx_path, seed=args.seed)
        if not chk.ok:
            raise ExportError(f"{onnx_path.name}: onnxruntime disagrees with PyTorch beyond the "
                              f"tolerances: {chk.to_dict()}")
        import onnx

        write_json(tmp / "manifest.json", {
            "format": "sdm-neuro-bundle", "format_version": 1, "target": args.target,
            "tool": f"sdm-neuro {__version__}", "torch": torch.__version__,
            "onnx": onnx.__version__, "checkpoint": str(ckpt.path),
            "checkpoint_sha256": sha256_file(ckpt.path), "model_config": ckpt.config.to_dict(),
            "threshold_scale": _or_one(args.threshold_scale),
            "files": {"denoiser.onnx": {
                "sha256": sha256_file(onnx_path), "bytes": onnx_path.stat().st_size,
                "what": "float denoiser, one call: inputs x_t [B, C, H, W] float32 and t [B] "
                        "int64, output eps"}},
            "check_against_pytorch": chk.to_dict()})
    print(f"wrote {args.out}/denoiser.onnx and manifest.json; onnxruntime vs PyTorch: max "
          f"|diff| {chk.max_abs_diff:.2e}, 99.9th percentile {chk.p999_abs_diff:.2e} "
          f"(eps range {chk.eps_range:.2f})")
    return 0


def _export_bundle(args: argparse.Namespace) -> int:
    import torch

    from .compiler.pipeline import CALIBRATION, LOWERING_PASSES
    from .export.bundle import write_bundle
    from .fileio import atomic_dir
    from .hardware_profiles.constraints import check
    from .ir.graph import call_length, relayed
    from .compiler.schedule import schedule

    t0 = time.perf_counter()
    _, ckpt, dataset, _, graph = _deploy(args)
    graph = schedule(graph)
    if args.target == "loihi2":
        from .export.lava_runtime import check_lava_deployable

        check_lava_deployable(graph)
    profile, placement = _constraints(args, check(graph, _profile(args)), ckpt.path)
    manifest = {
        "target": args.target, "tool": f"sdm-neuro {__version__}", "torch": torch.__version__,
        "checkpoint": {"path": str(ckpt.path), "sha256": sha256_file(ckpt.path), "kind": ckpt.kind,
                       "weights": ckpt.weights},
        "dataset": dataset, "model_config": graph.config.to_dict(),
        "quantization": {"threshold_scale": _or_one(args.threshold_scale),
                         "calibration": {"dataset": dataset, "seed": args.seed, **CALIBRATION,
                                         "what": "training images noised at uniformly random t"},
                         "populations": graph.meta.get("quantization", {})},
        "lowering_passes": list(LOWERING_PASSES),
        "timing": {"dt": "one Loihi 2 time step", "call_length": call_length(graph),
                   "offsets": {p.name: p.offset for p in graph.populations},
                   "reset": "LIFReset at each population's window start; reset to zero",
                   "tsm": None if not any(relayed(p) for p in graph.projections) else (
                       "projections with per-step weights run through time-gated relays (one "
                       "per source window step, +1 step of latency) and clock neurons; the "
                       "per-step bias is set by the host before each step")},
        "profile": {"name": profile.name, "path": str(profile.path)},
        "constraints": placement.to_dict(),
    }
    with atomic_dir(args.out, force=args.force) as tmp:
        manifest = write_bundle(graph, tmp, manifest)
    files = ", ".join(f"{n} ({v['bytes'] / 1e6:.1f} MB)" for n, v in manifest["files"].items())
    print(f"wrote {args.out}: manifest.json, {files} in {time.perf_counter() - t0:.1f} s")
    _print_placement(profile, placement)
    return 0


def _profile(args: argparse.Namespace):
    from .hardware_profiles.profile import get_profile

    return get_profile(args.profile or "loihi2")


def _constraints(args: argparse.Namespace, placement, source: Path):
    """(profile, placement); a violation is an error for --target loihi2 or an explicit
    --profile (a NIR export targets no chip: its check against Loihi 2 is information)."""
    from .errors import ConstraintError

    profile = _profile(args)
    enforce = args.target == "loihi2" or args.profile is not None
    if placement.violations and enforce and not args.allow_violations:
        lines = "\n  ".join(str(v) for v in placement.violations)
        raise ConstraintError(f"{source}: the network does not fit profile {profile.name} "
                              f"({profile.path}):\n  {lines}\n(--allow-violations writes the "
                              "bundle anyway)")
    return profile, placement


def _print_placement(profile, placement) -> None:
    size = (f"{placement.total_cores} cores, " if placement.total_cores is not None else "") + \
        (f"{placement.chips} chip(s); " if placement.chips is not None else "")
    print(f"{profile.name}: {size or 'no core model; '}{len(placement.violations)} violation(s)")
    for v in placement.violations:
        print(f"  {v}")


def cmd_profiles(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from .hardware_profiles.profile import get_profile, shipped_profiles

    names = args.profile or list(shipped_profiles())
    console = Console()
    for name in names:
        prof = get_profile(name)
        table = Table(title=f"{prof.name}: {prof.title} ({prof.process}, {prof.kind}) - "
                            f"{prof.path}", title_justify="left")
        for col in ("figure", "value", "tag", "source"):
            table.add_column(col)
        for key, fig in prof.sources():
            src = fig.source + (f" | derived: {fig.derivation}" if fig.derivation else "")
            value = fig.label.rsplit(" (", 1)[0]
            table.add_row(key, value, fig.tag + (" (derived)" if fig.derivation else ""), src)
        console.print(table)
        if args.verbose:
            console.print(prof.description)
    return 0


def cmd_train_classifier(args: argparse.Namespace) -> int:
    from .evaluation.classifier import save_classifier
    from .evaluation.evaluate import fit_classifier

    _set_threads(args)
    clf = fit_classifier(args.dataset, img_size=args.img_size, data_dir=args.data_dir,
                         seed=args.seed, progress=not args.quiet)
    save_classifier(args.out, clf)
    print(f"saved {args.out}: held-out accuracy {clf.meta['test_accuracy']:.4f} "
          f"on {clf.meta['test_images']} images")
    return 0


_TRAIN_FIELDS = ("dataset", "data_dir", "batch_size", "lr", "warmup", "grad_clip", "ema_decay",
                 "seed", "hflip")
_MODEL_FIELDS = ("ch", "ch_mult", "num_res_blocks", "snn_steps", "img_size", "tsm")


def cmd_train(args: argparse.Namespace) -> int:
    import shlex

    from .checkpoint import read_checkpoint
    from .training import TrainConfig, default_model_config, train

    _set_threads(args)
    out = args.out or args.resume
    if out is None:
        raise UsageError("train: --out CKPT is required (or --resume CKPT to continue a run).")
    if args.out is None:  # the resumed checkpoint is rewritten in place
        _check_output(out, "--resume", "file", force=None)
    given = {k: getattr(args, k) for k in _TRAIN_FIELDS + _MODEL_FIELDS
             if getattr(args, k) is not None}
    if args.resume is not None:
        # A resumed run is the same run: its recipe comes from the checkpoint; only the length,
        # the device and where to write may change.
        ck = read_checkpoint(args.resume, weights="net")
        if not isinstance(ck.meta.get("train_config"), dict):
            raise CheckpointError(f"{args.resume}: no 'meta.train_config' recipe; only "
                                  "checkpoints written by 'sdm-neuro train' can be resumed.")
        stored = TrainConfig.from_dict(ck.meta["train_config"], source=str(args.resume))
        model_config = ck.config
        for k, v in given.items():
            have = getattr(stored, k) if k in _TRAIN_FIELDS else getattr(model_config, k)
            if (str(v) if k == "data_dir" else v) != have:
                raise UsageError(f"--resume {args.resume}: --{k.replace('_', '-')} {v} differs "
                                 f"from the run being resumed ({have}); a resumed run keeps its "
                                 "recipe (only --steps, --out, --device, --save-every may change).")
        config = dataclasses.replace(
            stored, steps=stored.steps if args.steps is None else args.steps)
    else:
        init = read_checkpoint(args.init) if args.init is not None else None
        dataset = args.dataset or (init.meta.get("dataset") if init else None) or "digits"
        # Weights to start from fix the architecture; the flags may still change T_snn, the
        # image size or add TSM gains.
        base = init.config if init else default_model_config(dataset, args.img_size)
        model_config = base.replace(**{k: v for k, v in given.items() if k in _MODEL_FIELDS})
        tc = {k: v for k, v in given.items() if k in _TRAIN_FIELDS}
        tc.setdefault("hflip", dataset == "cifar10")
        if "data_dir" in tc:
            tc["data_dir"] = str(tc["data_dir"])
        config = TrainConfig(**tc, **({} if args.steps is None else {"steps": args.steps}))
    res = train(model_config, config, out=out, save_every=args.save_every, device=args.device,
                resume=args.resume, init=args.init, release=args.release,
                progress=not args.quiet, command=shlex.join(["sdm-neuro", *sys.argv[1:]]))
    print(f"final loss {res.final_loss:.4f}; loss log {res.log_json}, plot {res.loss_png}")
    return 0


def _ch_mult(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


# ---------------------------------------------------------------------------------------------
# parser and entry point
# ---------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    from .data import DATASETS

    parser = argparse.ArgumentParser(
        prog="sdm-neuro",
        description="Deploy spiking diffusion denoisers (SDDPM / SDM) to neuromorphic hardware.")
    parser.add_argument("--version", action="version", version=f"sdm-neuro {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("info", help="show a checkpoint's configuration, parameters and neurons")
    _add_checkpoint_args(p)
    p.add_argument("--layers", action="store_true", help="also list every spiking layer")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("sample", help="generate images with the float model (PNG grid + .npy)")
    _add_checkpoint_args(p)
    _add_sampling_args(p, num=16)
    _add_device_arg(p)
    p.add_argument("--threshold", type=positive_finite_float, default=None,
                   help="threshold guidance: set every IF threshold to this value (e.g. 0.998)")
    _add_output_args(p, "out/sample", force=False)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser(
        "evaluate", help="sample quality: classifier-feature FID/KID, recognisability, floor and "
                         "ceiling (JSON + PNG)",
        description="Generate samples (or read --samples) and score them against the training "
                    "set: FID and KID in the feature space of a small classifier trained by "
                    "sdm-neuro on the same dataset (NOT Inception FID; Inception FID is added "
                    "with --inception-weights), the fraction of samples classified with "
                    "confidence >= 0.9 and the entropy of the predicted classes. Held-out real "
                    "images (floor) and noise (ceiling) are scored in the same run.")
    _add_checkpoint_args(p)
    _add_sampling_args(p, num=250)
    _add_device_arg(p)
    p.add_argument("--threshold", type=positive_finite_float, default=None,
                   help="threshold guidance: set every IF threshold to this value")
    p.add_argument("--samples", type=Path, default=None,
                   help="score these images (.npy [N,C,H,W] in [-1,1]) instead of sampling")
    p.add_argument("--dataset", choices=DATASETS, default=None,
                   help="dataset to compare with (default: the one the checkpoint was trained on)")
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--classifier", type=Path, default=None,
                   help="classifier file (default: the shipped one for digits, else one is "
                        "trained now and saved as OUT/classifier.pt)")
    p.add_argument("--inception-weights", type=Path, default=None,
                   help="local pytorch-fid InceptionV3 weights (pt_inception-2015-12-05-*.pth) "
                        "to add Inception FID; never downloaded")
    p.add_argument("--kid-subsets", type=positive_int, default=100)
    p.add_argument("--kid-subset-size", type=positive_int, default=1000)
    _add_output_args(p, "out/evaluate")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "simulate", help="run the reverse process with the bit-exact integer (Loihi 2 fixed "
                         "point) denoiser, compared with the float model",
        description="Lower the model to a deployment graph, calibrate and quantize it to Lava's "
                    "fixed point on training images, then sample with the integer simulator and "
                    "with the float model from the same noise. Writes sample grids, the raw "
                    "samples, the quantized graph and a JSON report (counters, per-layer "
                    "statistics, per-call eps error, PSNR, quality of both).")
    _add_checkpoint_args(p)
    _add_sampling_args(p, num=16)
    p.add_argument("--bundle", type=Path, default=None, metavar="DIR",
                   help="simulate the network of an export bundle (loihi2 / nir target)")
    p.add_argument("--mode", choices=("ideal", "hardware"), default="ideal")
    p.add_argument("--compare-every", type=positive_int, default=10,
                   help="compare eps and spikes with the float model every N calls")
    _add_feedforward_args(p)
    _add_deploy_args(p)
    _add_output_args(p, "out/simulate")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser(
        "energy-report", help="synaptic-operation energy, activity and hardware constraints "
                              "per profile",
        description="Quantize the model as simulate does, measure its activity with the integer "
                    "simulator on --calls denoising calls spread over the reverse process (or "
                    "read it from simulate.json), and report per layer: neurons, fan-in, firing "
                    "rate, synaptic operations, neuron updates, host MACs; energy by the papers' "
                    "convention and by a fuller per-profile model; the ANN baseline; NeuroBench "
                    "metrics; and whether the network fits each profile. Writes energy.json and "
                    "PNG charts.")
    _add_checkpoint_args(p)
    p.add_argument("--profile", action="append", default=None, metavar="NAME|FILE.toml",
                   help="a shipped profile or your own TOML file (repeatable; default: all "
                        "shipped profiles)")
    p.add_argument("--bundle", type=Path, default=None, metavar="DIR",
                   help="report on the network of an export bundle (its thresholds and "
                        "quantization; the float model from its checkpoint)")
    p.add_argument("--stats", type=Path, default=None, metavar="SIMULATE_JSON",
                   help="use the activity of a sdm-neuro simulate run instead of measuring")
    p.add_argument("--sampler", choices=("ddpm", "ddim"), default=None,
                   help="default: ddpm, or the --stats run's")
    p.add_argument("--steps", type=positive_int, default=None,
                   help="sampler steps, i.e. denoising calls per image (default: 1000, or the "
                        "--stats run's)")
    p.add_argument("--calls", type=positive_int, default=8,
                   help="denoising calls to measure, spread over the trajectory (default 8)")
    p.add_argument("--batch", type=positive_int, default=16, help="images per measured call")
    p.add_argument("--seed", type=seed_int, default=0)
    _add_deploy_args(p)
    _add_output_args(p, "out/energy")
    p.set_defaults(func=cmd_energy_report)

    p = sub.add_parser(
        "export", help="write an export bundle: NIR + integer parameters for Loihi 2, or ONNX",
        description="Write an export bundle, a directory: manifest.json (tool and format "
                    "versions, checkpoint SHA-256, model config, quantization, profile, passes, "
                    "timing, constraint check), network.nir (the quantized spiking network; "
                    "integer parameters in documented metadata) and host.npz (time-embedding "
                    "tables, decoder tail, sampler schedule). The network is checked against "
                    "--profile (default loihi2); for --target loihi2 or an explicit --profile a "
                    "violation is an error (exit code 8) unless --allow-violations. TSM models "
                    "run on Lava through time-gated relays. --target onnx writes the float "
                    "denoiser, checked "
                    "against PyTorch with onnxruntime.")
    _add_checkpoint_args(p)
    p.add_argument("--target", choices=("loihi2", "nir", "onnx"), default="loihi2")
    p.add_argument("--profile", default=None,
                   help="hardware profile the constraints are checked against (default loihi2)")
    p.add_argument("--allow-violations", action="store_true",
                   help="write the bundle even if the network breaks a limit of the profile")
    _add_deploy_args(p)
    p.add_argument("--seed", type=seed_int, default=0,
                   help="seed of the calibration batch (and of the ONNX check's inputs)")
    _add_feedforward_args(p)
    p.add_argument("--num", type=positive_int, default=16,
                   help="NIR graphs: calibration samples of random spikes (default 16)")
    _add_output_args(p, "out/export")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("profiles", help="list the shipped hardware profiles with their sources")
    p.add_argument("profile", nargs="*", help="profile names or TOML files (default: all shipped)")
    p.add_argument("--verbose", action="store_true", help="also print each description")
    p.set_defaults(func=cmd_profiles)

    p = sub.add_parser("train-classifier",
                       help="train the feature/recognisability classifier used by evaluate")
    p.add_argument("--dataset", choices=DATASETS, default="digits")
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--img-size", type=positive_int, default=16, metavar="PX")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--threads", type=positive_int, default=None)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_train_classifier)

    p = sub.add_parser(
        "train", help="train a SpikingUNet on a dataset (EMA, periodic checkpoints, exact resume)",
        description="Train with the SDDPM reference recipe (Adam 2e-4, batch 32, grad clip 1.0, "
                    "linear warm-up, random t, epsilon MSE) plus an EMA of the weights. Options "
                    "left out take the recipe's value; the architecture defaults to a preset per "
                    "dataset. Nothing is downloaded: MNIST / Fashion-MNIST / CIFAR-10 are read "
                    "from their distribution files in --data-dir.")
    p.add_argument("--dataset", choices=DATASETS, default=None, help="default: digits")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="folder with the dataset's distribution files (not needed for digits)")
    p.add_argument("--out", type=Path, default=None, help="checkpoint to write (.pt, resumable)")
    p.add_argument("--release", type=Path, default=None,
                   help="also write the final EMA weights alone (small, inference-only) here")
    p.add_argument("--steps", type=positive_int, default=None,
                   help="total optimizer steps (default 500000)")
    p.add_argument("--batch", dest="batch_size", type=int, default=None, help="default 32")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 2e-4)")
    p.add_argument("--warmup", type=int, default=None, help="linear warm-up steps (default 5000)")
    p.add_argument("--grad-clip", type=float, default=None, help="default 1.0")
    p.add_argument("--ema-decay", type=float, default=None, help="default 0.9999")
    p.add_argument("--seed", type=seed_int, default=None, help="default 0")
    p.add_argument("--hflip", action=argparse.BooleanOptionalAction, default=None,
                   help="random horizontal flips (default: on for cifar10 only)")
    p.add_argument("--save-every", type=positive_int, default=1000,
                   help="checkpoint period in steps")
    p.add_argument("--device", default="auto", help="auto (CUDA when present, else CPU), cpu, cuda")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    p.add_argument("--resume", type=Path, default=None, help="continue this run exactly")
    p.add_argument("--init", type=Path, default=None,
                   help="start from these weights (e.g. a non-TSM checkpoint with --tsm, as SDM)")
    g = p.add_argument_group("model (default: a preset per dataset)")
    g.add_argument("--ch", type=int, default=None)
    g.add_argument("--ch-mult", type=_ch_mult, default=None, metavar="M1,M2,...")
    g.add_argument("--num-res-blocks", type=int, default=None)
    g.add_argument("--snn-steps", type=positive_int, default=None, metavar="T")
    g.add_argument("--img-size", type=positive_int, default=None, metavar="PX")
    g.add_argument("--tsm", action="store_true", default=None,
                   help="SDM temporal-wise spiking mechanism (per-step conv gains)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # a bad option (argparse printed the usage and why): exit code 2
        return e.code if isinstance(e.code, int) else int(e.code is not None)
    try:
        check_outputs(args)
        return int(args.func(args) or 0)
    except SdmNeuroError as e:
        if args.debug:
            traceback.print_exc()
        print(f"sdm-neuro {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - an unexpected failure is a bug: say so, keep the exit code distinct
        if args.debug:
            traceback.print_exc()
        print(f"sdm-neuro {args.command}: internal error: {type(e).__name__}: {e} "
              "(re-run with --debug for the traceback)", file=sys.stderr)
        return 70
