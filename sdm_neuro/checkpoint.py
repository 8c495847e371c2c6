"""Checkpoints: the native format, and import of SDDPM / SDM reference checkpoints.

Native file (``torch.save``; or safetensors with the same content flattened):
``{"format": "sdm-neuro-checkpoint", "format_version": 1, "config": UNetConfig.to_dict(),
"net_model": state_dict, "ema_model": state_dict (optional), "meta": {...}}``; the state_dicts
use the reference key layout.

Reference files are dicts with ``net_model`` and/or ``ema_model`` (plus ``optim``, ``step``,
``x_T``, ...) and no config: it is inferred from key names and shapes. Everything is read with
``torch.load(weights_only=True)``: no pickled code ever runs.
"""

from __future__ import annotations

import json
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from .config import UNetConfig
from .errors import CheckpointError, CheckpointMismatchError, ConfigError, UsageError
from .fileio import write_atomic
from .models.unet import SpikingUNet

FORMAT_TAG = "sdm-neuro-checkpoint"
FORMAT_VERSION = 1
DEFAULT_SNN_STEPS = 4  # SDDPM's T_snn; nothing in a non-TSM state_dict reveals it
DEFAULT_IMG_SIZE = 32  # CIFAR-10; the reference keeps the image size outside the model

WeightsChoice = Literal["auto", "ema", "net"]


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint read from disk: the chosen weights, the (stored or inferred) config, and
    notes on every choice made while reading it (shown to the user)."""

    path: Path
    kind: Literal["native", "reference", "state_dict"]
    config: UNetConfig
    state_dict: dict[str, torch.Tensor]
    weights: Literal["ema_model", "net_model", "state_dict"]
    has_ema: bool
    meta: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------

def _torch_load(path: Path) -> Any:
    if not path.exists():
        raise CheckpointError(f"{path}: no such file.")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        m = re.search(r"Unsupported global: (?:GLOBAL )?(\S+)|GLOBAL (\S+)|Unsupported class (\S+)", msg)
        if "Weights only load failed" in msg and m:
            what = f" (it references {next(g for g in m.groups() if g)})"
            raise CheckpointError(
                f"{path}: refused to load: the file contains pickled Python objects{what} that "
                "would execute code when unpickled. sdm-neuro reads checkpoints with "
                "torch.load(weights_only=True), which accepts tensors and plain containers only; "
                "re-save just the state_dict(s) from trusted code."
            ) from None
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({msg.strip()[:120]}).") from None
    except (EOFError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{path}: truncated or empty checkpoint file ({type(e).__name__}).") from None
    except RuntimeError as e:
        msg = str(e)
        if "zip archive" in msg or "central directory" in msg or "file not found" in msg:
            raise CheckpointError(
                f"{path}: truncated or corrupted checkpoint (the zip container cannot be read: "
                f"{msg.split('. ')[0][:160]}).") from None
        raise CheckpointError(f"{path}: cannot be read as a PyTorch checkpoint: {msg[:200]}") from None
    except (KeyError, ValueError, UnicodeDecodeError, OSError) as e:
        raise CheckpointError(
            f"{path}: not a PyTorch checkpoint (torch.load failed with {type(e).__name__}: {e}).") from None


def _safetensors_load(path: Path) -> dict[str, Any]:
    """Native content from a safetensors file: tensors ``net_model.<key>`` / ``ema_model.<key>``,
    metadata ``format``, ``format_version``, ``config`` and ``meta`` (JSON strings)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    if not path.exists():
        raise CheckpointError(f"{path}: no such file.")
    try:
        with safe_open(str(path), framework="pt") as f:
            md = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e}).") from None
    out: dict[str, Any] = {}
    for key, t in tensors.items():
        group, _, name = key.partition(".")
        if group not in ("net_model", "ema_model") or not name:
            raise CheckpointError(f"{path}: tensor '{key}' is not under 'net_model.' or 'ema_model.'.")
        out.setdefault(group, {})[name] = t
    try:
        for k in ("format", "format_version"):
            if k in md:
                out[k] = md[k] if k == "format" else int(md[k])
        for k in ("config", "meta"):
            if k in md:
                out[k] = json.loads(md[k])
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: malformed safetensors metadata ({e}).") from None
    return out


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def read_checkpoint(path: str | Path, *, weights: WeightsChoice = "auto",
                    snn_steps: int | None = None, img_size: int | None = None) -> Checkpoint:
    """Read a native, reference or bare-state_dict checkpoint.

    ``weights``: ``auto`` takes ``ema_model`` when present, else ``net_model``.
    ``snn_steps`` / ``img_size`` override the stored or default values (T_snn of a TSM model is
    fixed by its ``tsmp`` shape and cannot be overridden).
    """
    path = Path(path)
    obj = _safetensors_load(path) if path.suffix == ".safetensors" else _torch_load(path)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: not a checkpoint: the file holds a {type(obj).__name__}, "
                              "expected a dict with 'net_model' and/or 'ema_model'.")
    notes: list[str] = []
    if _is_state_dict(obj) and "net_model" not in obj:
        kind, groups = "state_dict", {"state_dict": obj}
    else:
        groups = {k: obj[k] for k in ("net_model", "ema_model") if k in obj}
        if not groups:
            raise CheckpointError(
                f"{path}: no model weights found: expected a 'net_model' and/or 'ema_model' "
                f"state_dict; top-level keys are {sorted(map(str, obj))[:20]}.")
        for g, sd in groups.items():
            if not _is_state_dict(sd):
                raise CheckpointError(f"{path}: '{g}' is not a state_dict (a dict of tensors).")
        kind = "native" if obj.get("format") == FORMAT_TAG else "reference"

    if weights == "ema" and "ema_model" not in groups:
        raise UsageError(f"{path}: --weights ema requested but the checkpoint has no 'ema_model' "
                         f"(it has: {sorted(groups)}).")
    if weights == "net" and "net_model" not in groups:
        raise UsageError(f"{path}: --weights net requested but the checkpoint has no 'net_model' "
                         f"(it has: {sorted(groups)}).")
    chosen = ("ema_model" if "ema_model" in groups and weights != "net" else
              "net_model" if "net_model" in groups else "state_dict")
    if kind != "state_dict" and len(groups) == 2:
        notes.append(f"using {chosen} weights (the file also has "
                     f"{'net_model' if chosen == 'ema_model' else 'ema_model'}; choose with --weights)")
    state_dict = groups[chosen]

    meta: dict[str, Any] = {}
    if kind == "native":
        version = obj.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise CheckpointError(f"{path}: native checkpoint format_version {version!r} is not "
                                  f"supported (this sdm-neuro reads versions <= {FORMAT_VERSION}).")
        if not isinstance(obj.get("config"), dict):
            raise CheckpointError(f"{path}: native checkpoint has no 'config' dict.")
        config = UNetConfig.from_dict(obj["config"], source=str(path))
        meta = dict(obj.get("meta") or {})
        inferred, _ = infer_config(state_dict, source=f"{path} [{chosen}]",
                                   snn_steps=config.snn_steps, img_size=config.img_size)
        if inferred != config:
            raise CheckpointMismatchError(
                f"{path}: the stored config {config.to_dict()} disagrees with the weights, which "
                f"imply {inferred.to_dict()}.")
        if snn_steps is not None and snn_steps != config.snn_steps:
            if config.tsm:
                raise UsageError(f"{path}: --snn-steps {snn_steps} conflicts with this TSM model, "
                                 f"whose per-step gains fix T_snn = {config.snn_steps}.")
            notes.append(f"T_snn overridden: {snn_steps} (trained with {config.snn_steps})")
            config = config.replace(snn_steps=snn_steps)
        if img_size is not None and img_size != config.img_size:
            notes.append(f"image size overridden: {img_size} (trained at {config.img_size})")
            config = config.replace(img_size=img_size)
    else:
        config, inferred_notes = infer_config(state_dict, source=f"{path} [{chosen}]",
                                              snn_steps=snn_steps, img_size=img_size)
        notes.extend(inferred_notes)
    check_state_dict(config, state_dict, source=f"{path} [{chosen}]")
    return Checkpoint(path=path, kind=kind, config=config, state_dict=state_dict, weights=chosen,
                      has_ema="ema_model" in groups, meta=meta, notes=tuple(notes))


def load_model(path: str | Path, *, weights: WeightsChoice = "auto", snn_steps: int | None = None,
               img_size: int | None = None) -> tuple[SpikingUNet, Checkpoint]:
    """Read a checkpoint and build the model in eval mode with its weights (strict keys)."""
    ckpt = read_checkpoint(path, weights=weights, snn_steps=snn_steps, img_size=img_size)
    model = SpikingUNet(ckpt.config)
    model.load_state_dict(ckpt.state_dict, strict=True)
    return model.eval(), ckpt


# ---------------------------------------------------------------------------------------------
# config inference and checks
# ---------------------------------------------------------------------------------------------

def _conv_weight(sd: dict[str, torch.Tensor], prefix: str) -> torch.Tensor | None:
    return sd.get(f"{prefix}.weight", sd.get(f"{prefix}.tsmconv.weight"))


def infer_config(sd: dict[str, torch.Tensor], *, source: str, snn_steps: int | None = None,
                 img_size: int | None = None) -> tuple[UNetConfig, list[str]]:
    """Infer the U-Net configuration from reference key names and shapes.

    ch / img_ch from the head conv, diffusion steps from the sinusoidal table, TSM from ``tsmp``
    keys (T_snn from their shape), the levels, channel multipliers and blocks per level from the
    up path (``num_res_blocks + 1`` ResBlocks per level, one UpSample between levels).
    """
    notes: list[str] = []

    def need(key: str) -> torch.Tensor:
        if key not in sd:
            raise CheckpointMismatchError(
                f"{source}: cannot infer the model configuration: key '{key}' is missing "
                "(is this an SDDPM/SDM spiking U-Net state_dict?).")
        return sd[key]

    head = _conv_weight(sd, "conv")
    if head is None:
        head = need("conv.weight")  # raises: neither conv.weight nor conv.tsmconv.weight
    if head.dim() != 4:
        raise CheckpointMismatchError(f"{source}: 'conv' weight has shape {list(head.shape)}, "
                                      "expected [ch, img_ch, 3, 3].")
    ch, img_ch = int(head.shape[0]), int(head.shape[1])
    table = need("time_embedding.timembedding.0.weight")
    diffusion_steps = int(table.shape[0])
    if table.dim() != 2 or table.shape[1] != ch:
        raise CheckpointMismatchError(
            f"{source}: time-embedding table has shape {list(table.shape)}, expected [T, {ch}] "
            f"(ch = {ch} from the head conv).")

    tsmp = [k for k in sd if k.endswith(".tsmp")]
    tsm = bool(tsmp)
    if tsm:
        lengths = {int(sd[k].shape[0]) for k in tsmp}
        if len(lengths) != 1:
            raise CheckpointMismatchError(f"{source}: tsmp tensors disagree on T_snn: {sorted(lengths)}.")
        steps = lengths.pop()
        if snn_steps is not None and snn_steps != steps:
            raise UsageError(f"{source}: --snn-steps {snn_steps} conflicts with this TSM model, "
                             f"whose tsmp gains have T_snn = {steps}.")
        notes.append(f"TSM model: T_snn = {steps} (from the tsmp shape)")
    elif snn_steps is None:
        steps = DEFAULT_SNN_STEPS
        notes.append(f"T_snn not stored in the checkpoint: using {steps} (default; set --snn-steps)")
    else:
        steps = snn_steps
        notes.append(f"T_snn = {steps} (from --snn-steps)")

    # Up path: per level (deepest first) num_res_blocks+1 ResBlocks, then an UpSample (not after
    # the last level). ResBlocks have temb_proj; UpSamples only a conv.
    kinds: list[tuple[str, int]] = []
    i = 0
    while f"upblocks.{i}.temb_proj.1.weight" in sd or _conv_weight(sd, f"upblocks.{i}.conv") is not None:
        if f"upblocks.{i}.temb_proj.1.weight" in sd:
            kinds.append(("res", int(sd[f"upblocks.{i}.temb_proj.1.weight"].shape[0])))
        else:
            kinds.append(("up", 0))
        i += 1
    if not kinds or kinds[-1][0] != "res":
        raise CheckpointMismatchError(f"{source}: cannot infer the up path from 'upblocks.*' keys.")
    levels: list[list[int]] = [[]]
    for kind, out in kinds:
        if kind == "up":
            levels.append([])
        else:
            levels[-1].append(out)
    counts = {len(lv) for lv in levels}
    if len(counts) != 1 or 0 in counts:
        raise ConfigError(f"{source}: inconsistent up path: ResBlocks per level "
                          f"{[len(lv) for lv in levels]} (expected the same number on every level).")
    num_res_blocks = counts.pop() - 1
    ch_mult = []
    for lv in reversed(levels):
        if len(set(lv)) != 1 or lv[0] % ch:
            raise ConfigError(f"{source}: up-path widths {lv} are not one multiple of ch = {ch}.")
        ch_mult.append(lv[0] // ch)

    size = img_size if img_size is not None else DEFAULT_IMG_SIZE
    if img_size is None:
        notes.append(f"image size not stored in the checkpoint: using {size} (default; set --img-size)")
    config = UNetConfig(ch=ch, ch_mult=tuple(ch_mult), num_res_blocks=num_res_blocks,
                        img_ch=img_ch, diffusion_steps=diffusion_steps, snn_steps=steps, tsm=tsm,
                        img_size=size)
    return config, notes


def check_state_dict(config: UNetConfig, sd: dict[str, torch.Tensor], *, source: str) -> None:
    """Raise :class:`CheckpointMismatchError` listing missing and unexpected keys and every shape
    mismatch (key, expected, actual) between ``sd`` and the model ``config`` describes."""
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in SpikingUNet(config).state_dict().items()}
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    shapes = [f"{k}: expected {list(expected[k])}, got {list(sd[k].shape)}"
              for k in expected if k in sd and tuple(sd[k].shape) != expected[k]]
    if not (missing or unexpected or shapes):
        _check_values(sd, source)
        return

    def listing(title: str, items: list[str]) -> str:
        more = f" ... and {len(items) - 12} more" if len(items) > 12 else ""
        return f"{title} ({len(items)}): {', '.join(items[:12])}{more}."

    parts = [(f"{source}: the state_dict does not fit the model configuration "
              f"{config.to_dict()}.")]
    if missing:
        parts.append(listing("Missing keys", missing))
    if unexpected:
        parts.append(listing("Unexpected keys", unexpected))
    if shapes:
        parts.append(listing("Shape mismatches", shapes))
    raise CheckpointMismatchError(" ".join(parts))


def _check_values(sd: dict[str, torch.Tensor], source: str) -> None:
    """NaN / inf weights, or a negative BatchNorm variance (a NaN once folded), are an error
    here, where the key can be named, not deep inside lowering."""
    bad = [k for k, v in sd.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    bad += [f"{k} (min {float(v.min()):.3g})" for k, v in sd.items()
            if k.endswith("running_var") and bool((v < 0).any())]
    if bad:
        more = f" ... and {len(bad) - 8} more" if len(bad) > 8 else ""
        raise CheckpointError(f"{source}: non-finite weights or negative BatchNorm running_var "
                              f"in {len(bad)} tensor(s): {', '.join(bad[:8])}{more}.")


# ---------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------

def save_checkpoint(path: str | Path, config: UNetConfig, net_model: dict[str, torch.Tensor],
                    *, ema_model: dict[str, torch.Tensor] | None = None,
                    meta: dict[str, Any] | None = None,
                    train_state: dict[str, Any] | None = None) -> Path:
    """Write a native checkpoint atomically (``.safetensors`` suffix: safetensors, else torch).

    ``train_state`` (optimizer moments, RNG states, step: what exact resume needs) holds only
    tensors and plain containers, so it too loads with ``weights_only=True``; torch format only.
    """
    path = Path(path)
    if train_state is not None and path.suffix == ".safetensors":
        raise UsageError(f"{path}: a resumable training checkpoint needs the .pt format "
                         "(safetensors holds tensors only, not the optimizer state).")
    check_state_dict(config, net_model, source="net_model")
    if ema_model is not None:
        check_state_dict(config, ema_model, source="ema_model")
    meta = dict(meta or {})
    groups = {"net_model": net_model, **({"ema_model": ema_model} if ema_model is not None else {})}

    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        tensors = {f"{g}.{k}": v.detach().cpu().contiguous() for g, sd in groups.items()
                   for k, v in sd.items()}
        metadata = {"format": FORMAT_TAG, "format_version": str(FORMAT_VERSION),
                    "config": json.dumps(config.to_dict()), "meta": json.dumps(meta)}
        return write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))

    payload = {"format": FORMAT_TAG, "format_version": FORMAT_VERSION, "config": config.to_dict(),
               **{g: {k: v.detach().cpu() for k, v in sd.items()} for g, sd in groups.items()},
               "meta": meta, **({"train_state": train_state} if train_state is not None else {})}
    return write_atomic(path, lambda tmp: torch.save(payload, tmp))


def read_train_state(path: str | Path) -> dict[str, Any]:
    """The ``train_state`` of a checkpoint written by ``sdm-neuro train`` (for ``--resume``)."""
    path = Path(path)
    obj = _safetensors_load(path) if path.suffix == ".safetensors" else _torch_load(path)
    state = obj.get("train_state") if isinstance(obj, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: no training state to resume from (only checkpoints "
                              "written by 'sdm-neuro train' in .pt format carry one).")
    return state
