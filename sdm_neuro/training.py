"""Training: the SDDPM reference recipe (Adam, linear warm-up, grad clip, random t, epsilon MSE)
plus an EMA of the weights, periodic checkpoints and exact resume.

Exact resume: the batch for step k is a pure function of (seed, k) (a fresh permutation of the
dataset per epoch, seeded by (seed, epoch)); t, the noise and the flips come from one generator
whose state is saved with the optimizer moments. Resuming from step k therefore replays steps
k+1... bit for bit as the uninterrupted run would (same device and threads).
"""

from __future__ import annotations

import dataclasses
import math
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import read_checkpoint, read_train_state, save_checkpoint
from .config import PAPER_CIFAR10, UNetConfig
from .diffusion import LinearSchedule, diffusion_loss
from .errors import CheckpointError, ConfigError, UsageError
from .fileio import write_json
from .models.unet import SpikingUNet

MAX_STEPS = 10**9  # optimizer steps (and warm-up steps)
MAX_BATCH = 1 << 16  # images per batch


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of a run. Defaults are the SDDPM reference recipe except EMA, which the
    reference applies at 0.9999 over 500k steps: pick a decay that fits the run length."""

    dataset: str = "digits"
    data_dir: str | None = None
    steps: int = 500_000
    batch_size: int = 32
    lr: float = 2e-4
    warmup: int = 5000
    grad_clip: float = 1.0
    ema_decay: float = 0.9999
    seed: int = 0
    hflip: bool = False

    def __post_init__(self) -> None:
        problem = self._problem(dataclasses.asdict(self))
        if problem:
            name, option, rule = problem
            raise UsageError(f"train: invalid {option} ({name}) = {_short(getattr(self, name))}: "
                             f"must be {rule}.")

    @classmethod
    def _problem(cls, values: dict[str, Any]) -> tuple[str, str, str] | None:
        """(field, option, rule) of the first value that breaks its rule, or None."""
        for name, (option, ok, rule) in cls._rules().items():
            if name in values and not ok(values[name]):
                return name, option, rule
        return None

    @staticmethod
    def _rules() -> dict[str, tuple[str, Callable[[Any], bool], str]]:
        """Per field: its CLI option, the check, and the rule in words. Types are checked too:
        a float step count or a string learning rate is an error, not a silent cast."""
        def integer(low: int, high: int) -> Callable[[Any], bool]:
            return lambda v: type(v) is int and low <= v <= high

        def real(ok: Callable[[float], bool]) -> Callable[[Any], bool]:
            return lambda v: (isinstance(v, (int, float)) and not isinstance(v, bool)
                              and math.isfinite(v) and ok(v))

        return {
            "dataset": ("--dataset", lambda v: isinstance(v, str) and v != "", "a dataset name"),
            "data_dir": ("--data-dir", lambda v: v is None or isinstance(v, str),
                         "a directory path"),
            "steps": ("--steps", integer(1, MAX_STEPS), f"an integer from 1 to {MAX_STEPS:,}"),
            "batch_size": ("--batch", integer(1, MAX_BATCH), f"an integer from 1 to {MAX_BATCH:,}"),
            "lr": ("--lr", real(lambda v: v > 0), "a finite number > 0"),
            "warmup": ("--warmup", integer(0, MAX_STEPS), f"an integer from 0 to {MAX_STEPS:,}"),
            "grad_clip": ("--grad-clip", real(lambda v: v > 0), "a finite number > 0"),
            "ema_decay": ("--ema-decay", real(lambda v: 0 <= v < 1), "a number in [0, 1)"),
            "seed": ("--seed", integer(0, 2**63 - 1), "an integer from 0 to 2**63 - 1"),
            "hflip": ("--hflip", lambda v: isinstance(v, bool), "true or false"),
        }

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Any, *, source: str | None = None) -> TrainConfig:
        """A recipe from a dict (a checkpoint's ``meta.train_config`` when ``source`` names the
        file: then a bad value is that file's error, not an option's)."""
        where = f"{source}: 'meta.train_config'" if source else "train config"
        error = CheckpointError if source else UsageError
        if not isinstance(d, dict):
            raise error(f"{where} is a {type(d).__name__}, expected a dict.")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(map(str, set(d) - names))
        if unknown:
            raise error(f"{where}: unknown key(s) {unknown}; expected a subset of "
                        f"{sorted(names)}.")
        problem = cls._problem(d)
        if problem:
            name, _, rule = problem
            raise error(f"{where}: '{name}' is {_short(d[name])}, which must be {rule}.")
        return cls(**d)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "..."


def default_model_config(dataset: str, img_size: int | None = None) -> UNetConfig:
    """Architecture presets: the shipped default model's for digits, a mid-size U-Net for the
    28x28 sets, the SDDPM paper configuration for CIFAR-10."""
    if dataset == "digits":
        return UNetConfig(ch=32, ch_mult=(1, 2), num_res_blocks=1, img_ch=1, snn_steps=4,
                          img_size=img_size or 16)
    if dataset in ("mnist", "fashion-mnist"):
        return UNetConfig(ch=64, ch_mult=(1, 2, 2), num_res_blocks=2, img_ch=1, snn_steps=4,
                          img_size=img_size or 28)
    if dataset == "cifar10":
        return PAPER_CIFAR10.replace(img_size=img_size or 32)
    raise UsageError(f"unknown dataset {dataset!r}.")


def to_tsm_state_dict(sd: dict[str, torch.Tensor], config: UNetConfig) -> dict[str, torch.Tensor]:
    """Map a non-TSM state_dict onto a TSM model (SDM fine-tunes TSM from an SDDPM model):
    ``X.weight`` -> ``X.tsmconv.weight``, gains ``X.tsmp`` start at 1 (the same function)."""
    out: dict[str, torch.Tensor] = {}
    for key, ref in SpikingUNet(config).state_dict().items():
        plain = key.replace(".tsmconv.", ".")
        if key in sd:
            out[key] = sd[key]
        elif key.endswith(".tsmp"):
            out[key] = torch.ones_like(ref)
        elif plain in sd:
            out[key] = sd[plain]
        else:
            raise ConfigError(f"cannot initialise {key}: the source weights have neither it nor "
                              f"{plain}.")
    return out


def batch_indices(step: int, batch_size: int, n: int, seed: int) -> torch.Tensor:
    """Dataset indices of the batch at ``step``: consecutive slices of per-epoch permutations."""
    start = step * batch_size
    out: list[torch.Tensor] = []
    while batch_size > 0:
        epoch, offset = divmod(start, n)
        perm = _epoch_permutation(n, seed, epoch)
        take = perm[offset:offset + batch_size]
        out.append(take)
        start += len(take)
        batch_size -= len(take)
    return torch.cat(out)


def _epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    s = int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])
    return torch.randperm(n, generator=torch.Generator().manual_seed(s))


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """The reference's EMA: every floating state entry (BN statistics included) moves towards
    the model's; integer buffers (BN batch counters) are copied."""
    src = model.state_dict()
    for k, v in ema.state_dict().items():
        if v.is_floating_point():
            v.lerp_(src[k], 1.0 - decay)
        else:
            v.copy_(src[k])


@dataclass(frozen=True)
class TrainResult:
    out: Path
    release: Path | None
    step: int
    seconds: float
    final_loss: float
    log_json: Path
    loss_png: Path


def resolve_device(device: str) -> torch.device:
    from .simulators.device import as_device  # the one device check

    return as_device(device)


def _hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def train(model_config: UNetConfig, config: TrainConfig, *, out: str | Path,
          save_every: int = 1000, device: str = "auto", resume: str | Path | None = None,
          init: str | Path | None = None, release: str | Path | None = None,
          progress: bool = True, command: str = "", log: Callable[[str], None] = print,
          ) -> TrainResult:
    """Train (or resume) a SpikingUNet; write ``out`` (resumable) every ``save_every`` steps and at
    the end, and ``release`` (EMA weights only, no optimizer state) at the end."""
    from tqdm.auto import tqdm

    from .data import load_dataset

    out = Path(out)
    if out.suffix != ".pt":
        raise UsageError(f"--out {out}: a training checkpoint is written in .pt format.")
    dev = resolve_device(device)
    data = load_dataset(config.dataset, split="train", data_dir=config.data_dir,
                        img_size=model_config.img_size)
    if data.image_shape[0] != model_config.img_ch:
        raise ConfigError(f"{config.dataset} images have {data.image_shape[0]} channel(s); the "
                          f"model has img_ch = {model_config.img_ch}.")
    images = data.images.to(dev)

    with torch.random.fork_rng(devices=[]):  # the initialisation depends on the seed alone
        torch.manual_seed(config.seed)
        model = SpikingUNet(model_config).to(dev)
    if init is not None:
        ck = read_checkpoint(init, snn_steps=model_config.snn_steps)
        if ck.config.tsm and not model_config.tsm:
            raise ConfigError(f"{init}: a TSM checkpoint cannot initialise a non-TSM model.")
        arch = ("ch", "ch_mult", "num_res_blocks", "img_ch")
        diff = [f"{k} {getattr(ck.config, k)} vs {getattr(model_config, k)}" for k in arch
                if getattr(ck.config, k) != getattr(model_config, k)]
        if diff:
            raise ConfigError(f"--init {init}: its weights do not fit the model ({', '.join(diff)}); "
                              "leave the model flags out to take its architecture.")
        sd = to_tsm_state_dict(ck.state_dict, model_config) if model_config.tsm else ck.state_dict
        model.load_state_dict(sd)
    ema = SpikingUNet(model_config).to(dev)
    ema.load_state_dict(model.state_dict())
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    gen = torch.Generator(device=dev).manual_seed(config.seed)
    step, seconds, losses, run_loss = 0, 0.0, [], math.nan

    if resume is not None:
        state = _restore(Path(resume), model_config, model, ema, opt, gen)
        step, seconds, losses = int(state["step"]), float(state["seconds"]), list(state["losses"])
        run_loss = float(state.get("running_loss", math.nan))
        if step >= config.steps:
            raise UsageError(f"{resume}: already at step {step}; pass --steps > {step} to go on.")

    schedule = LinearSchedule()

    def save(path: Path) -> None:
        meta = {"dataset": config.dataset, "train_steps": step, "seconds": round(seconds, 1),
                "hardware": _hardware(dev), "torch": str(torch.__version__), "command": command,
                "train_config": config.to_dict(), "init": str(init) if init else None}
        save_checkpoint(path, model_config, model.state_dict(), ema_model=ema.state_dict(),
                        meta=meta, train_state={
                            "step": step, "seconds": seconds, "losses": losses,
                            "running_loss": run_loss,
                            "optimizer": opt.state_dict(), "rng": gen.get_state()})

    model.train()
    bar = tqdm(total=config.steps, initial=step, desc="train", unit="step", disable=not progress,
               dynamic_ncols=True)
    t_last = t_start = time.perf_counter()
    first = step
    while step < config.steps:
        idx = batch_indices(step, config.batch_size, len(images), config.seed).to(dev)
        x0 = images[idx]
        if config.hflip:
            flip = torch.rand(len(idx), generator=gen, device=dev) < 0.5
            x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
        loss = diffusion_loss(model, x0, schedule, gen)

        for g in opt.param_groups:
            g["lr"] = config.lr * min(1.0, (step + 1) / config.warmup) if config.warmup else config.lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        opt.step()
        ema_update(ema, model, config.ema_decay)
        step += 1

        value = loss.item()
        if not math.isfinite(value):
            raise UsageError(f"train: the loss became {value} at step {step}; lower --lr.")
        run_loss = value if math.isnan(run_loss) else 0.98 * run_loss + 0.02 * value
        if step % 10 == 0:  # a fixed grid, so a resumed run logs what the straight run logs
            losses.append([step, round(run_loss, 6)])
        now = time.perf_counter()
        seconds += now - t_last
        t_last = now
        rate = (step - first) * config.batch_size / max(now - t_start, 1e-9)
        bar.set_postfix(loss=f"{run_loss:.4f}", img_s=f"{rate:.0f}", refresh=False)
        bar.update(1)
        if save_every and step % save_every == 0 and step < config.steps:
            save(out)
    bar.close()
    save(out)
    if release is not None:
        save_checkpoint(release, model_config, ema.state_dict(), meta={
            "dataset": config.dataset, "train_steps": step, "seconds": round(seconds, 1),
            "hardware": _hardware(dev), "command": command,
            "weights": f"EMA (decay {config.ema_decay})", "train_config": config.to_dict()})
    log_json, loss_png = _write_loss_report(out, losses + [[step, round(run_loss, 6)]], config,
                                            step, seconds)
    log(f"saved {out} (step {step}, {seconds:.0f} s)"
        + (f"; release weights {release}" if release else ""))
    return TrainResult(out=out, release=Path(release) if release else None, step=step,
                       seconds=seconds, final_loss=run_loss, log_json=log_json, loss_png=loss_png)


def _restore(path: Path, model_config: UNetConfig, model: SpikingUNet, ema: SpikingUNet,
             opt: torch.optim.Optimizer, gen: torch.Generator) -> dict[str, Any]:
    """Load a resumable checkpoint into the model, EMA, optimizer and generator; every part is
    checked first, so a malformed file is an error naming its key, not a crash mid-run."""
    state = read_train_state(path)
    net = read_checkpoint(path, weights="net")
    if net.config != model_config:
        raise ConfigError(f"--resume {path}: the checkpoint's model {net.config.to_dict()} is not "
                          f"the model to train {model_config.to_dict()}.")
    if not net.has_ema:
        raise CheckpointError(f"{path}: no 'ema_model' (every training checkpoint has one).")
    model.load_state_dict(net.state_dict)
    ema.load_state_dict(read_checkpoint(path, weights="ema").state_dict)
    _check_optimizer_state(state["optimizer"], opt, path)
    try:
        opt.load_state_dict(state["optimizer"])
    except (ValueError, KeyError, TypeError, RuntimeError) as e:
        raise CheckpointError(f"{path}: 'train_state.optimizer' does not fit the optimizer "
                              f"({e}).") from None
    try:
        gen.set_state(state["rng"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: 'train_state.rng' is not a state of a {gen.device} "
                              f"generator ({e}).") from None
    return state


def _check_optimizer_state(saved: dict[str, Any], opt: torch.optim.Optimizer, path: Path) -> None:
    """The saved Adam state must be this optimizer's: one parameter group over the model's
    parameters with the same hyper-parameters (lr aside: the schedule sets it every step), and
    float moments of each parameter's shape (``load_state_dict`` would cast any dtype and
    accept any shape, and the next step would crash)."""
    fresh = opt.state_dict()["param_groups"]
    params = [p for g in opt.param_groups for p in g["params"]]
    groups = saved["param_groups"]
    where = f"{path}: 'train_state.optimizer'"
    if len(groups) != len(fresh) or not all(isinstance(g, dict) for g in groups):
        raise CheckpointError(f"{where} has {len(groups)} parameter group(s), expected "
                              f"{len(fresh)}.")
    for g, f in zip(groups, fresh):
        if g.get("params") != f["params"]:
            raise CheckpointError(f"{where} lists parameters {_short(g.get('params'))}, expected "
                                  f"the model's {len(params)} parameters.")
        changed = [k for k in f if k not in ("params", "lr") and k in g and g[k] != f[k]]
        if changed:
            raise CheckpointError(f"{where}: hyper-parameter(s) {changed} are "
                                  f"{[g[k] for k in changed]}, expected {[f[k] for k in changed]}.")
    for i, entry in saved["state"].items():
        if type(i) is not int or not 0 <= i < len(params) or not isinstance(entry, dict):
            raise CheckpointError(f"{where}: state entry {_short(i)} is not a parameter's state.")
        for k, v in entry.items():
            want = [] if k == "step" else list(params[i].shape)
            if not (isinstance(v, torch.Tensor) and v.is_floating_point()
                    and list(v.shape) == want):
                got = (f"{v.dtype} {list(v.shape)}" if isinstance(v, torch.Tensor)
                       else type(v).__name__)
                raise CheckpointError(f"{where}: 'state.{i}.{k}' is {got}, expected a float "
                                      f"tensor of shape {want}.")


def _write_loss_report(out: Path, losses: list[list[float]], config: TrainConfig, step: int,
                       seconds: float) -> tuple[Path, Path]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from .fileio import write_atomic

    log_json = write_json(out.with_suffix(".train.json"), {
        "checkpoint": str(out), "step": step, "seconds": round(seconds, 1),
        "train_config": config.to_dict(), "loss_ema_0.98": losses})
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    if losses:
        s, v = zip(*losses)
        ax.plot(s, v, lw=1)
        ax.set_yscale("log")
    ax.set(xlabel="step", ylabel="epsilon MSE (running mean)", title=f"{config.dataset}: training loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    png = write_atomic(out.with_suffix(".loss.png"), lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
    return log_json, png
