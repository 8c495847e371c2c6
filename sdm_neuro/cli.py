"""Command-line interface: a thin layer over the run layer (:mod:`sdm_neuro.run`): each command
calls one job with the parsed options and prints from its result. An
:class:`~sdm_neuro.errors.SdmNeuroError` becomes a one-paragraph message on stderr and the
error's exit code (``--debug`` shows the traceback)."""

from __future__ import annotations

import argparse
import inspect
import json
import math
import shlex
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from . import __version__, run
from .compiler.pipeline import CALIBRATION
from .errors import SdmNeuroError
from .run.tradeoffs import DEFAULT_SAMPLERS

# --- option types: a bad value stops at parse time (exit 2, argparse names the option), before
# any file is read or any work starts

SEED_MAX = 2**32 - 1  # numpy's RandomState (KID subsets) takes seeds in [0, 2**32 - 1]


def _number(text: str, kind: type) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None


def _option_type(name: str, kind: type, ok: Callable[[Any], bool], why: str):
    """The parse function ``name``: ``kind`` of the text, refused with ``why`` (formatted with
    the value and the text) unless ``ok``."""
    def parse(text: str):
        value = _number(text, kind)
        if not ok(value):
            raise argparse.ArgumentTypeError(why.format(value=value, text=text))
        return value

    parse.__name__ = parse.__qualname__ = name
    return parse


# counts, sizes, steps (0 is never "the default"); a seed every generator of the pipeline accepts
# (torch, numpy's RandomState and SeedSequence); thresholds and time steps; a spike rate (0 would
# calibrate on silence; the comparison is false for nan)
positive_int = _option_type("positive_int", int, lambda v: v >= 1,
                            "must be an integer >= 1 (got {value})")
seed_int = _option_type("seed_int", int, lambda v: 0 <= v <= SEED_MAX,
                        f"must be an integer in [0, {SEED_MAX}] (got {{value}})")
positive_finite_float = _option_type("positive_finite_float", float,
                                     lambda v: math.isfinite(v) and v > 0,
                                     "must be a finite number > 0 (got {text})")
probability = _option_type("probability", float, lambda v: 0.0 < v <= 1.0,
                           "must be a number in (0, 1] (got {text})")


def sampler_name(text: str) -> str:
    from .diffusion.samplers import canonical_sampler
    from .errors import UsageError

    try:
        return canonical_sampler(text)
    except UsageError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _ch_mult(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


# --- shared options

def _add_checkpoint_args(p: argparse.ArgumentParser) -> None:
    a = p.add_argument
    a("checkpoint", type=Path, nargs="?", default=None,
      help="checkpoint file: sdm-neuro native (.pt / .safetensors) or an SDDPM / SDM reference "
           "checkpoint (dict with net_model and/or ema_model); default: the shipped default "
           "model (digits, 16x16)")
    a("--weights", choices=("auto", "ema", "net"), default="auto",
      help="which weights to use: ema_model when present (auto), or force one")
    a("--snn-steps", type=positive_int, metavar="T", help="SNN time steps T_snn (reference "
      "checkpoints do not store it; default 4; fixed by the tsmp shape for TSM models)")
    a("--img-size", type=positive_int, metavar="PX",
      help="image side length (reference checkpoints do not store it; default 32)")


def _add_sampling_args(p: argparse.ArgumentParser, *, num: int, device: bool = True) -> None:
    a = p.add_argument
    a("--sampler", type=sampler_name, default="ddpm", metavar="NAME",
      help="ddpm (default), ddim, dpmpp1 | dpmpp2 (= dpmpp) | dpmpp3 (DPM-Solver++ of that "
      "order), analytic (Analytic-DPM: its variance from the float model on --dataset's "
      "training images)")
    a("--steps", type=positive_int, default=1000, help="denoising steps (default 1000)")
    a("--num", type=positive_int, default=num, help=f"number of samples (default {num})")
    a("--batch", type=positive_int, default=num, help=f"batch size (default {num})")
    a("--seed", type=seed_int, default=0)
    if device:
        a("--device", default="cpu", help="where the float model (evaluate --integer: the "
          "integer network) runs: cpu (default), cuda, auto; the noise and the sampler stay on "
          "the CPU")


THRESHOLD_MAP_HELP = ("threshold guidance per spiking layer: a JSON file {\"layer glob\": "
                      "threshold} (names as info --layers lists them; later entries override), "
                      "halves:DOWN,UP (stem, down and middle blocks / up blocks) or "
                      "depth:FIRST,LAST (linear in call order); after --threshold")


def _add_deploy_args(p: argparse.ArgumentParser) -> None:
    """Options of the commands that quantize a model (calibrated on its training images)."""
    from .data import DATASETS

    p.add_argument("--threshold-scale", type=positive_finite_float, metavar="X",
                   help="threshold guidance: set every firing threshold to X (the thresholds are "
                        "replaced, not multiplied: for a model with threshold 1, as trained here, "
                        "this is the same as scaling them by X)")
    p.add_argument("--threshold-map", metavar="FILE|SCHEDULE", help=THRESHOLD_MAP_HELP)
    p.add_argument("--dataset", choices=DATASETS, help="the training set (default: the "
                   "checkpoint's)")
    p.add_argument("--data-dir", type=Path)
    p.add_argument("--calibration-images", type=positive_int, metavar="N",
                   help=f"training images (noised at random t) the quantization is calibrated on "
                        f"(default {CALIBRATION['images']}; time grows with N, memory does not; "
                        "recorded in the bundle's manifest)")


def _add_feedforward_args(p: argparse.ArgumentParser) -> None:
    a = p.add_argument_group(
        "NIR graphs", "CHECKPOINT may be a .nir file: a feed-forward SNN ((Conv2d | Affine) -> "
        "(IF | LIF) layers) as snnTorch's export_to_nir or Norse's to_nir write it. It is "
        "quantized on the input (or random spikes) and run by the integer simulator beside its "
        "float reference; export writes its lava-dl netx HDF5.").add_argument
    a("--input", type=Path, metavar="X.npy", help="input [B, *shape] (held every step) or "
      "[T, B, *shape]; 0/1 values are spikes, others a current (default: random spikes)")
    a("--time-steps", type=positive_int, default=32, help="time steps (default 32)")
    a("--rate", type=probability, default=0.2,
      help="spike probability of the random input, in (0, 1] (default 0.2)")
    a("--dt", type=positive_finite_float,
      help="time step the LIF constants assume (default: from the file)")


def _add_output_args(p: argparse.ArgumentParser, out: str, *, force: bool = True) -> None:
    p.add_argument("--threads", type=positive_int, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=Path(out), help="output directory")
    if force:
        p.add_argument("--force", action="store_true", help="replace a non-empty output directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


# --- commands: one job each (its parameters are the options' dest names), then what the CLI
# prints from its result

def _job(job: Callable[..., Any], args: argparse.Namespace, **extra: Any) -> Any:
    """``job`` called with the parsed options it takes; its notes go to stderr."""
    params = inspect.signature(job).parameters
    kwargs = {k: v for k, v in vars(args).items() if k in params}
    if "notify" in params:
        kwargs["notify"] = lambda text: print(f"note: {text}", file=sys.stderr)
    return job(**kwargs, **extra)


def _print(res: Any) -> int:
    for line in res.summary_lines():
        print(line)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    res = _job(run.info, args)
    if args.json:
        print(json.dumps(res.summary, indent=2, default=str))
        return 0
    console, info = Console(), res.summary
    console.print(f"[bold]{info['checkpoint']}[/bold]: {info['format']} checkpoint, "
                  f"{info['weights']} weights")
    tables = [(Table(show_header=False), res.rows())]
    if args.layers:
        tables.append((Table("spiking layer", "C x H x W", "neurons"), res.layer_rows()))
    for table, rows in tables:
        for row in rows:
            table.add_row(*row)
        console.print(table)
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    return _print(_job(run.sample, args))


def cmd_evaluate(args: argparse.Namespace) -> int:
    return _print(_job(run.evaluate, args))


def cmd_simulate(args: argparse.Namespace) -> int:
    res = _job(run.simulate, args)
    if isinstance(res, run.SimulateResult) and not args.quiet:
        console = Console()  # a file or pipe: do not squeeze the table into 80 columns
        console = console if console.is_terminal else Console(width=160)
        console.print(res.table())
    return _print(res)


def cmd_tradeoff(args: argparse.Namespace) -> int:
    return _print(_job(run.tradeoff, args))


def cmd_energy_report(args: argparse.Namespace) -> int:
    from .energy.report import print_report

    res = _job(run.energy_report, args)
    print_report(res.report)
    return _print(res)


def cmd_export(args: argparse.Namespace) -> int:
    res = _job(run.export, args)
    _print(res)
    if (pl := res.placement) is not None:  # the constraint check: cores, chips, violations
        size = (f"{pl.total_cores} cores, " if pl.total_cores is not None else "") + \
            (f"{pl.chips} chip(s); " if pl.chips is not None else "")
        print(f"{res.profile.name}: {size or 'no core model; '}{len(pl.violations)} violation(s)")
        for v in pl.violations:
            print(f"  {v}")
    return 0


def cmd_profiles(args: argparse.Namespace) -> int:
    console, res = Console(), _job(run.profiles, args)
    for prof in res.profiles:
        table = Table(title=res.title(prof), title_justify="left")
        for col in ("figure", "value", "tag", "source"):
            table.add_column(col)
        for row in res.rows(prof):
            table.add_row(*row)
        console.print(table)
        if args.verbose:
            console.print(prof.description)
    return 0


def cmd_train_classifier(args: argparse.Namespace) -> int:
    return _print(_job(run.train_classifier, args))


def cmd_train(args: argparse.Namespace) -> int:
    res = _job(run.train, args, command_line=shlex.join(["sdm-neuro", *sys.argv[1:]]))
    print(f"final loss {res.final_loss:.4f}; loss log {res.log_json}, plot {res.loss_png}")
    return 0


def _add_scale_out_args(p: argparse.ArgumentParser) -> None:
    a = p.add_argument
    a("--workers", type=positive_int, metavar="N",
      help="run the samples as Ray tasks in shards: on a local Ray instance with N worker "
      "slots, or with --cluster on that cluster; finished shards are kept in OUT/shards and a "
      "rerun of the same command skips them (the samples equal one process's, bit for bit)")
    a("--cluster", metavar="ADDRESS",
      help="an existing Ray cluster to run the shards on (its head's ADDRESS, e.g. "
      "10.0.0.1:6379, or auto): see the README's multi-machine run")
    a("--shard-size", type=positive_int, metavar="N",
      help="samples per shard, a multiple of --batch (default: one batch)")


def build_parser() -> argparse.ArgumentParser:
    from .data import DATASETS

    parser = argparse.ArgumentParser(
        prog="sdm-neuro",
        description="Deploy spiking diffusion denoisers (SDDPM / SDM) to neuromorphic hardware.")
    parser.add_argument("--version", action="version", version=f"sdm-neuro {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func, help: str, job=None, checkpoint: bool = True):
        # the description: the first paragraph of the job's docstring
        about = " ".join((inspect.getdoc(job) or "").split("\n\n")[0].split()) if job else None
        p = sub.add_parser(name, help=help, description=about or None)
        p.set_defaults(func=func)
        if checkpoint:
            _add_checkpoint_args(p)
        return p, p.add_argument

    p, a = command("info", cmd_info, "show a checkpoint's configuration, parameters and neurons")
    a("--layers", action="store_true", help="also list every spiking layer")
    a("--json", action="store_true", help="print JSON instead of a table")

    p, a = command("sample", cmd_sample, "generate images with the float model (PNG grid + .npy)")
    _add_sampling_args(p, num=16)
    a("--threshold", type=positive_finite_float,
      help="threshold guidance: set every IF threshold to this value (e.g. 0.998)")
    a("--threshold-map", metavar="FILE|SCHEDULE", help=THRESHOLD_MAP_HELP)
    a("--dataset", choices=DATASETS, help="training set of the analytic sampler's variance "
      "(default: the checkpoint's)")
    a("--data-dir", type=Path)
    _add_scale_out_args(p)
    _add_output_args(p, "out/sample", force=False)

    p, a = command("evaluate", cmd_evaluate, "sample quality: classifier-feature FID/KID, "
                   "recognisability, floor and ceiling (JSON + PNG)", run.evaluate)
    _add_sampling_args(p, num=250)
    a("--threshold", type=positive_finite_float,
      help="threshold guidance: set every IF threshold to this value")
    a("--threshold-map", metavar="FILE|SCHEDULE", help=THRESHOLD_MAP_HELP)
    a("--samples", type=Path,
      help="score these images (.npy [N,C,H,W] in [-1,1]) instead of sampling")
    a("--integer", choices=("composed", "graded"), metavar="MAPPING",
      help="sample with the bit-exact integer (Loihi 2 fixed point) simulator of this mapping "
      "instead of the float model, quantized as simulate does (--device: where its integer "
      "network runs, bit-identical to the CPU)")
    a("--mode", choices=("ideal", "hardware"),
      help="the integer simulator's timing (with --integer; default ideal)")
    a("--calibration-images", type=positive_int, metavar="N",
      help="training images the quantization is calibrated on (with --integer; default 128)")
    a("--dataset", choices=DATASETS,
      help="dataset to compare with (default: the one the checkpoint was trained on)")
    a("--data-dir", type=Path)
    a("--classifier", type=Path, help="classifier file (default: the shipped one for digits, "
      "else one is trained now and saved as OUT/classifier.pt)")
    a("--inception-weights", type=Path, help="local pytorch-fid InceptionV3 weights "
      "(pt_inception-2015-12-05-*.pth) to add Inception FID; never downloaded")
    a("--fid-stats", type=Path, metavar="FILE.npz",
      help="dataset Inception statistics in pytorch-fid's .npz format (mu, sigma), as SDDPM's "
      "evaluation uses: Inception FID against them, and the samples' statistics written as "
      "OUT/fid_stats.npz (needs --inception-weights)")
    a("--kid-subsets", type=positive_int, default=100)
    a("--kid-subset-size", type=positive_int, default=1000)
    _add_scale_out_args(p)
    _add_output_args(p, "out/evaluate")

    p, a = command("simulate", cmd_simulate, "run the reverse process with the bit-exact integer "
                   "(Loihi 2 fixed point) denoiser, compared with the float model", run.simulate)
    _add_sampling_args(p, num=16, device=False)
    a("--bundle", type=Path, metavar="DIR",
      help="simulate the network of an export bundle (loihi2 / nir target)")
    a("--mode", choices=("ideal", "hardware"), default="ideal")
    a("--mapping", choices=("composed", "graded"), default="composed",
      help="the Loihi 2 mapping: composed (every analog tensor composed into explicit synapse "
      "matrices) or graded (shared conv kernels, graded-spike relays; not for TSM models)")
    a("--device", default="cpu", help="where the integer network runs: cpu (default) or "
      "cuda[:N], bit-identical to the CPU (the float model, the host decoder and the sampler "
      "stay on the CPU)")
    a("--compare-every", type=positive_int, default=10,
      help="compare eps and spikes with the float model every N calls")
    _add_feedforward_args(p)
    _add_deploy_args(p)
    _add_scale_out_args(p)
    _add_output_args(p, "out/simulate")

    p, a = command("energy-report", cmd_energy_report, "synaptic-operation energy, activity and "
                   "hardware constraints per profile", run.energy_report)
    a("--profile", action="append", metavar="NAME|FILE.toml", help="a shipped profile or your "
      "own TOML file (repeatable; default: all shipped profiles)")
    a("--bundle", type=Path, metavar="DIR", help="report on the network of an export bundle "
      "(its thresholds and quantization; the float model from its checkpoint)")
    a("--stats", type=Path, metavar="SIMULATE_JSON",
      help="use the activity of a sdm-neuro simulate run instead of measuring (for the mapping "
           "that run simulated; the other one is measured)")
    a("--device", default="cpu", help="where the integer network runs while measuring "
      "activity: cpu (default) or cuda[:N], bit-identical to the CPU")
    a("--mapping", choices=("composed", "graded", "both"), default="both",
      help="Loihi 2 mapping(s) to report: composed (explicit synapse matrices), graded (shared "
           "conv kernels, graded spikes) or both side by side (default)")
    a("--sampler", type=sampler_name, metavar="NAME",
      help="the chain priced per image (as sample's --sampler; default: ddpm, or the --stats "
      "run's)")
    a("--steps", type=positive_int, help="sampler steps, i.e. denoising calls per image "
      "(default: 1000, or the --stats run's)")
    a("--calls", type=positive_int, default=8,
      help="denoising calls to measure, spread over the trajectory (default 8)")
    a("--batch", type=positive_int, default=16, help="images per measured call")
    a("--seed", type=seed_int, default=0)
    _add_deploy_args(p)
    _add_output_args(p, "out/energy")

    p, a = command("tradeoff", cmd_tradeoff, "quality against energy per image over samplers, "
                   "threshold guidance and mappings, Pareto front (JSON + PNG)", run.tradeoff)
    a("--samplers", default=DEFAULT_SAMPLERS, metavar="S:N,...",
      help=f"sampler settings as SAMPLER:STEPS (samplers as sample's --sampler; default "
      f"{DEFAULT_SAMPLERS})")
    a("--thresholds", default="1.0", metavar="X,...",
      help="global threshold guidance values, one setting each (default 1.0)")
    a("--threshold-map", metavar="FILE|SCHEDULE",
      help="one more setting: per-layer guidance (as simulate's --threshold-map)")
    a("--mapping", default="composed", metavar="M,...",
      help="Loihi 2 mapping(s): composed, graded or composed,graded (default composed)")
    a("--profile", action="append", metavar="NAME|FILE.toml", help="hardware profile(s) to "
      "price energy on, the first one plotted (repeatable; default loihi2)")
    a("--num", type=positive_int, default=64, help="samples per setting (default 64)")
    a("--batch", type=positive_int, default=64, help="batch size (default 64)")
    a("--seed", type=seed_int, default=0)
    a("--dataset", choices=DATASETS, help="default: the checkpoint's")
    a("--data-dir", type=Path)
    a("--calibration-images", type=positive_int, metavar="N",
      help="training images the quantization is calibrated on (default 128)")
    a("--classifier", type=Path, help="classifier file (default: the shipped one for digits, "
      "else one is trained now)")
    a("--search", action="store_true", help="also search a per-layer threshold map (down / "
      "middle / up halves, 0.996-1.004) on the first sampler setting and mapping, scored by "
      "FID of the integer samples, and report it with its held-out score; written as "
      "OUT/threshold_map.json")
    a("--search-num", type=positive_int, default=32, help="samples per search evaluation "
      "(default 32)")
    a("--search-budget", type=positive_int, default=12,
      help="search evaluations (default 12)")
    _add_scale_out_args(p)
    _add_output_args(p, "out/tradeoff")

    p, a = command("export", cmd_export, "write an export bundle: NIR + integer parameters for "
                   "Loihi 2, or ONNX", run.export)
    a("--target", choices=("loihi2", "nir", "onnx"), default="loihi2")
    a("--mapping", choices=("composed", "graded"), default="composed",
      help="the Loihi 2 mapping written: composed (explicit synapse matrices, default) or graded "
      "(shared conv kernels, graded-spike relays; not for TSM models); graded also prints both "
      "mappings' cores, chips and memory on the profile")
    a("--profile", help="hardware profile the constraints are checked against (default loihi2)")
    a("--allow-violations", action="store_true",
      help="write the bundle even if the network breaks a limit of the profile")
    _add_deploy_args(p)
    a("--seed", type=seed_int, default=0,
      help="seed of the calibration batch (and of the ONNX check's inputs)")
    _add_feedforward_args(p)
    a("--num", type=positive_int, default=16,
      help="NIR graphs: calibration samples of random spikes (default 16)")
    _add_output_args(p, "out/export")

    p, a = command("profiles", cmd_profiles, "list the shipped hardware profiles with their "
                   "sources", checkpoint=False)
    a("profile", nargs="*", help="profile names or TOML files (default: all shipped)")
    a("--verbose", action="store_true", help="also print each description")

    p, a = command("train-classifier", cmd_train_classifier, "train the feature/recognisability "
                   "classifier used by evaluate", checkpoint=False)
    a("--dataset", choices=DATASETS, default="digits")
    a("--data-dir", type=Path)
    a("--img-size", type=positive_int, default=16, metavar="PX")
    a("--seed", type=seed_int, default=0)
    a("--threads", type=positive_int)
    a("--out", type=Path, required=True)
    a("--quiet", action="store_true")

    p, a = command("train", cmd_train, "train a SpikingUNet on a dataset (EMA, periodic "
                   "checkpoints, exact resume)", run.train, checkpoint=False)
    a("--dataset", choices=DATASETS, help="default: digits")
    a("--data-dir", type=Path,
      help="folder with the dataset's distribution files (not needed for digits)")
    a("--out", type=Path, help="checkpoint to write (.pt, resumable)")
    a("--release", type=Path,
      help="also write the final EMA weights alone (small, inference-only) here")
    a("--steps", type=positive_int, help="total optimizer steps (default 500000)")
    a("--batch", dest="batch_size", type=int, help="default 32")
    a("--lr", type=float, help="Adam learning rate (default 2e-4)")
    a("--warmup", type=int, help="linear warm-up steps (default 5000)")
    a("--grad-clip", type=float, help="default 1.0")
    a("--ema-decay", type=float, help="default 0.9999")
    a("--seed", type=seed_int, help="default 0")
    a("--hflip", action=argparse.BooleanOptionalAction, default=None,
      help="random horizontal flips (default: on for cifar10 only)")
    a("--save-every", type=positive_int, default=1000, help="checkpoint period in steps")
    a("--device", default="auto", help="auto (CUDA when present, else CPU), cpu, cuda")
    a("--threads", type=positive_int, help="torch CPU threads")
    a("--resume", type=Path, help="continue this run exactly")
    a("--init", type=Path,
      help="start from these weights (e.g. a non-TSM checkpoint with --tsm, as SDM)")
    g = p.add_argument_group("model (default: a preset per dataset)").add_argument
    g("--ch", type=int)
    g("--ch-mult", type=_ch_mult, metavar="M1,M2,...")
    g("--num-res-blocks", type=int)
    g("--snn-steps", type=positive_int, metavar="T")
    g("--img-size", type=positive_int, metavar="PX")
    g("--tsm", action="store_true", default=None,
      help="SDM temporal-wise spiking mechanism (per-step conv gains)")
    a("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # a bad option (argparse printed the usage and why): exit code 2
        return e.code if isinstance(e.code, int) else int(e.code is not None)
    try:  # each job checks its output locations before any work
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
