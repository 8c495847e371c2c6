"""Command-line interface: a thin layer over the Python API.

Every command returns an exit code; an :class:`~sdm_neuro.errors.SdmNeuroError` becomes a
one-paragraph message on stderr and the error's exit code (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .errors import SdmNeuroError


# ---------------------------------------------------------------------------------------------
# shared options
# ---------------------------------------------------------------------------------------------

def _add_checkpoint_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", type=Path,
                   help="checkpoint file: sdm-neuro native (.pt / .safetensors) or an SDDPM / SDM "
                        "reference checkpoint (dict with net_model and/or ema_model)")
    p.add_argument("--weights", choices=("auto", "ema", "net"), default="auto",
                   help="which weights to use: ema_model when present (auto), or force one")
    p.add_argument("--snn-steps", type=int, default=None, metavar="T",
                   help="SNN time steps T_snn (reference checkpoints do not store it; default 4; "
                        "fixed by the tsmp shape for TSM models)")
    p.add_argument("--img-size", type=int, default=None, metavar="PX",
                   help="image side length (reference checkpoints do not store it; default 32)")


def _load(args: argparse.Namespace):
    from .checkpoint import load_model

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
    import torch

    from .diffusion import LinearSchedule, generate
    from .fileio import write_atomic, write_json
    from .images import save_grid

    model, ckpt = _load(args)
    if args.threshold is not None:
        model.set_threshold(args.threshold)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = ckpt.config
    out: Path = args.out
    t0 = time.perf_counter()
    x = generate(model, LinearSchedule(num_steps=cfg.diffusion_steps), args.num,
                 (cfg.img_ch, cfg.img_size, cfg.img_size), batch_size=args.batch,
                 sampler=args.sampler, steps=args.steps, seed=args.seed,
                 progress=not args.quiet)
    elapsed = time.perf_counter() - t0
    arr = x.numpy().astype(np.float32)
    write_atomic(out / "samples.npy", lambda tmp: np.save(open(tmp, "wb"), arr))
    save_grid(x, out / "samples.png")
    write_json(out / "sample.json", {
        "tool": f"sdm-neuro {__version__}", "checkpoint": str(ckpt.path), "weights": ckpt.weights,
        "config": cfg.to_dict(), "sampler": args.sampler, "steps": args.steps, "num": args.num,
        "batch": args.batch, "seed": args.seed, "threshold": args.threshold or 1.0,
        "seconds": round(elapsed, 3), "notes": list(ckpt.notes),
        "files": {"grid": "samples.png", "samples": "samples.npy ([N,C,H,W] float32 in [-1,1])"},
    })
    print(f"wrote {args.num} samples to {out}/samples.png and {out}/samples.npy "
          f"({elapsed:.1f} s)")
    return 0


# ---------------------------------------------------------------------------------------------
# parser and entry point
# ---------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    from .diffusion import SAMPLERS

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
    p.add_argument("--sampler", choices=SAMPLERS, default="ddpm")
    p.add_argument("--steps", type=int, default=1000, help="denoising steps (default 1000)")
    p.add_argument("--num", type=int, default=16, help="number of samples (default 16)")
    p.add_argument("--batch", type=int, default=16, help="batch size (default 16)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threshold", type=float, default=None,
                   help="threshold guidance: set every IF threshold to this value (e.g. 0.998)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=Path("out/sample"), help="output directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sample)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SdmNeuroError as e:
        if args.debug:
            traceback.print_exc()
        print(f"sdm-neuro {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # an unexpected failure is a bug: say so, keep the exit code distinct
        if args.debug:
            traceback.print_exc()
        print(f"sdm-neuro {args.command}: internal error: {type(e).__name__}: {e} "
              "(re-run with --debug for the traceback)", file=sys.stderr)
        return 70
