"""Checkpoints: the native format, and import of SDDPM / SDM reference checkpoints.

Native file (``torch.save``; or safetensors with the same content flattened):
``{"format": "sdm-neuro-checkpoint", "format_version": 1, "config": UNetConfig.to_dict(),
"net_model": state_dict, "ema_model": state_dict (optional), "meta": {...}}``; the state_dicts
use the reference key layout.

Reference files are dicts with ``net_model`` and/or ``ema_model`` (plus ``optim``, ``step``,
``x_T``, ...) and no config: it is inferred from key names and shapes. Everything is read with
``torch.load(weights_only=True)``: no pickled code ever runs.

Resource limits, checked before anything is allocated: a checkpoint is a regular file of at most
``MAX_CHECKPOINT_BYTES``; a torch file must be a zip archive (PyTorch >= 1.6; the legacy format
allocates the storage sizes its pickle declares before reading them) whose central directory is
at most ``MAX_ZIP_DIRECTORY_BYTES``, whose entries declare at most ``MAX_CHECKPOINT_BYTES``
uncompressed in all and whose pickle (``data.pkl``) at most ``MAX_PICKLE_BYTES``. torch checks
every storage record against the size its pickle declares. ``mmap=True`` is not used: it would
not inflate compressed records, but it clamps a storage to the end of the file instead of
checking it against its record, so an oversized tensor would silently read other records.
Every loaded tensor must be dense, on the CPU, and not an expanded view (a stride-0 tensor of
10**9 rows is a few bytes in the file and gigabytes once anything materializes it). Model
weights must be floating point; the configuration's values are bounded (``config.LIMITS``).
"""

from __future__ import annotations

import json
import math
import pickle
import re
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from .config import UNetConfig
from .errors import CheckpointError, CheckpointMismatchError, ConfigError, UsageError
from .fileio import regular_file, write_atomic
from .formats import check_format
from .models.unet import SpikingUNet

FORMAT_TAG = "sdm-neuro-checkpoint"
FORMAT_VERSION = 1
DEFAULT_SNN_STEPS = 4  # SDDPM's T_snn; nothing in a non-TSM state_dict reveals it
DEFAULT_IMG_SIZE = 32  # CIFAR-10; the reference keeps the image size outside the model

# Limits on what a checkpoint may make a reader allocate (see the module docstring). A training
# checkpoint of the SDDPM paper model (weights, EMA, Adam moments) is about 1.1 GB.
MAX_CHECKPOINT_BYTES = 4 << 30  # the file, and the uncompressed size of all its zip entries
MAX_PICKLE_BYTES = 32 << 20  # data.pkl: the object tree (the paper checkpoint's is < 1 MB)
MAX_ZIP_DIRECTORY_BYTES = 16 << 20  # about 150,000 entries; parsed before anything else

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
# torch's legacy (pre-1.6) format starts with the pickled magic number 0x1950a86a20f9469cfc6c.
_LEGACY_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"

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

def _guarded_file(path: Path) -> Path:
    return regular_file(path, what="a checkpoint file", error=CheckpointError,
                        max_bytes=MAX_CHECKPOINT_BYTES)


def load_torch_file(path: Path) -> Any:
    """``torch.load(weights_only=True)`` of a file that passed the size checks of
    :func:`_check_zip`; every tensor in the result passes :func:`_check_loaded_tensors`. The one
    way this project reads a ``torch.save`` file (checkpoints, graphs, classifiers, bundle
    parameters): a :class:`CheckpointError` naming the file otherwise."""
    path = _guarded_file(path)
    _check_zip(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
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
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({_first_line(msg)}).") from None
    except (EOFError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{path}: truncated or empty checkpoint file ({type(e).__name__}).") from None
    except RuntimeError as e:
        msg = str(e)
        if "zip archive" in msg or "central directory" in msg or "file not found" in msg:
            raise CheckpointError(
                f"{path}: truncated or corrupted checkpoint (the zip container cannot be read: "
                f"{msg.split('. ')[0][:160]}).") from None
        raise CheckpointError(f"{path}: cannot be read as a PyTorch checkpoint: {msg[:200]}") from None
    except Exception as e:  # noqa: BLE001 - a malformed pickle can fail anywhere in the unpickler
        raise CheckpointError(
            f"{path}: not a PyTorch checkpoint (torch.load failed with {type(e).__name__}: "
            f"{_first_line(str(e))}).") from None
    _check_loaded_tensors(obj, path)
    return obj


def _first_line(msg: str) -> str:
    return msg.strip().splitlines()[0][:160] if msg.strip() else "no detail"


def _check_zip(path: Path) -> None:
    """Refuse what is not a PyTorch zip archive, and archives that declare more than the limits
    (module docstring) uncompressed, before torch allocates anything."""
    with open(path, "rb") as f:
        head = f.read(len(_LEGACY_MAGIC))
        if not head:
            raise CheckpointError(f"{path}: truncated or empty checkpoint file (0 bytes).")
        if head == _LEGACY_MAGIC:
            raise CheckpointError(
                f"{path}: legacy (PyTorch < 1.6) checkpoint format, which is not read: its "
                "loader allocates whatever storage sizes the file declares. Re-save it with "
                "torch.save in a current PyTorch.")
        if not head.startswith(b"PK\x03\x04"):
            raise CheckpointError(f"{path}: not a PyTorch checkpoint (a checkpoint is a zip "
                                  f"archive; this file starts with {head[:12]!r}).")
        size = f.seek(0, 2)
        directory = _zip_directory_bytes(f, size)
        if directory is None:
            raise CheckpointError(f"{path}: truncated or corrupted checkpoint (the zip archive "
                                  "has no end-of-central-directory record).")
        if directory > MAX_ZIP_DIRECTORY_BYTES:
            raise CheckpointError(
                f"{path}: the zip central directory declares {directory:,} bytes, more than the "
                f"{MAX_ZIP_DIRECTORY_BYTES:,} a checkpoint may have (MAX_ZIP_DIRECTORY_BYTES).")
        try:
            infos = zipfile.ZipFile(f).infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as e:
            raise CheckpointError(f"{path}: truncated or corrupted checkpoint (the zip container "
                                  f"cannot be read: {e}).") from None
    pickles = [i for i in infos if i.filename == "data.pkl" or i.filename.endswith("/data.pkl")]
    if not pickles:
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (a zip archive without "
                              "'data.pkl').")
    for info in pickles:
        if info.file_size > MAX_PICKLE_BYTES:
            raise CheckpointError(
                f"{path}: zip entry '{info.filename}' declares {info.file_size:,} bytes "
                f"uncompressed, more than the {MAX_PICKLE_BYTES:,} a checkpoint's pickle may "
                "have (MAX_PICKLE_BYTES).")
    total = sum(i.file_size for i in infos)
    if total > MAX_CHECKPOINT_BYTES:
        largest = max(infos, key=lambda i: i.file_size)
        raise CheckpointError(
            f"{path}: the zip entries declare {total:,} bytes uncompressed (the largest, "
            f"'{largest.filename}', {largest.file_size:,}), more than the "
            f"{MAX_CHECKPOINT_BYTES:,} a checkpoint may hold (MAX_CHECKPOINT_BYTES).")


def _zip_directory_bytes(f: Any, size: int) -> int | None:
    """Size of a zip archive's central directory from its end records (zip64 too), or None
    without one; read before :mod:`zipfile` parses the directory into Python objects."""
    tail_len = min(size, 22 + 0xFFFF)  # the end record and a comment of at most 64 KiB
    f.seek(size - tail_len)
    tail = f.read(tail_len)
    i = tail.rfind(b"PK\x05\x06")
    if i < 0 or i + 22 > len(tail):
        return None
    directory = struct.unpack_from("<I", tail, i + 12)[0]
    if directory == 0xFFFFFFFF:  # zip64: the size is in the zip64 end record
        if i < 20 or tail[i - 20:i - 16] != b"PK\x06\x07":
            return None
        offset = struct.unpack_from("<Q", tail, i - 12)[0]
        if offset > size - 56:  # points past the file: no directory to size
            return None
        f.seek(offset)
        record = f.read(56)
        if len(record) < 56 or record[:4] != b"PK\x06\x06":
            return None
        directory = struct.unpack_from("<Q", record, 40)[0]
    return directory


def _walk_tensors(obj: Any) -> Any:
    """(name, tensor) for every tensor in nested dicts / lists / tuples, iteratively (a hostile
    pickle may nest deeper than the recursion limit)."""
    stack: list[tuple[str, Any]] = [("", obj)]
    while stack:  # children pushed in reverse: visited in file order
        name, node = stack.pop()
        if isinstance(node, torch.Tensor):
            yield name or "(top level)", node
        elif isinstance(node, dict):
            stack.extend(reversed([(f"{name}.{k}" if name else str(k), v)
                                   for k, v in node.items()]))
        elif isinstance(node, (list, tuple)):
            stack.extend(reversed([(f"{name}[{i}]", v) for i, v in enumerate(node)]))


def _check_loaded_tensors(obj: Any, path: Path) -> None:
    """Every tensor must be dense, hold data, and not view more elements than its storage has."""
    for name, t in _walk_tensors(obj):
        problem = _tensor_problem(t)
        if problem:
            raise CheckpointError(f"{path}: tensor '{name}' {problem}; a checkpoint holds dense "
                                  "CPU tensors, each backed by its own data.")


def _tensor_problem(t: torch.Tensor) -> str | None:
    if t.layout != torch.strided:
        return f"has layout {t.layout} (sparse tensors are not read)"
    if t.device.type == "meta" or t.is_nested:
        return f"is a {'meta-device' if t.device.type == 'meta' else 'nested'} tensor"
    numel = t.numel()
    stored = t.untyped_storage().nbytes() // max(t.element_size(), 1)
    if numel and (numel > stored or any(s == 0 and n > 1 for n, s in zip(t.shape, t.stride()))):
        return (f"is an expanded view: shape {list(t.shape)}, strides {list(t.stride())}, "
                f"{numel:,} elements over a storage of {stored:,}")
    return None


def _safetensors_load(path: Path) -> dict[str, Any]:
    """Native content from a safetensors file: tensors ``net_model.<key>`` / ``ema_model.<key>``,
    metadata ``format``, ``format_version``, ``config`` and ``meta`` (JSON strings)."""
    from safetensors.torch import load_file, safe_open

    path = _guarded_file(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            md = f.metadata() or {}
        tensors = load_file(str(path))
    except Exception as e:  # noqa: BLE001 - SafetensorError, OSError, ...: a malformed file
        raise CheckpointError(f"{path}: not a readable safetensors file "
                              f"({_first_line(str(e))}).") from None
    out: dict[str, Any] = {}
    for key, t in tensors.items():
        group, _, name = key.partition(".")
        if group not in ("net_model", "ema_model") or not name:
            raise CheckpointError(f"{path}: tensor '{key}' is not under 'net_model.' or 'ema_model.'.")
        out.setdefault(group, {})[name] = t
    if "format" in md:
        out["format"] = md["format"]
    if "format_version" in md:
        text = md["format_version"]
        if not re.fullmatch(r"[0-9]{1,9}", text):
            raise CheckpointError(f"{path}: safetensors metadata 'format_version' is "
                                  f"{text[:40]!r}, not a version number.")
        out["format_version"] = int(text)
    for k in ("config", "meta"):
        if k in md:
            try:
                out[k] = json.loads(md[k])
            except (ValueError, RecursionError) as e:
                raise CheckpointError(f"{path}: safetensors metadata '{k}' is not valid JSON "
                                      f"({_first_line(str(e))}).") from None
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
    obj = _safetensors_load(path) if path.suffix == ".safetensors" else load_torch_file(path)
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
    source = f"{path} [{chosen}]"
    check_dtypes(state_dict, source=source)

    meta: dict[str, Any] = {}
    if kind == "native":
        config, meta = _native_header(obj, path)
        _check_stored_config(config, state_dict, path=path, source=source)
        config = _override(config, path, snn_steps=snn_steps, img_size=img_size, notes=notes)
    else:
        config, inferred_notes = infer_config(state_dict, source=source, snn_steps=snn_steps,
                                              img_size=img_size)
        notes.extend(inferred_notes)
    check_state_dict(config, state_dict, source=source)
    return Checkpoint(path=path, kind=kind, config=config, state_dict=state_dict, weights=chosen,
                      has_ema="ema_model" in groups, meta=meta, notes=tuple(notes))


def _native_header(obj: dict[str, Any], path: Path) -> tuple[UNetConfig, dict[str, Any]]:
    """The stored config and meta of a native checkpoint, each value checked."""
    check_format(obj.get("format"), obj.get("format_version"), expected=FORMAT_TAG,
                 supported_max=FORMAT_VERSION, where=str(path),
                 what="a native checkpoint of a supported version", error=CheckpointError)
    if not isinstance(obj.get("config"), dict):
        raise CheckpointError(f"{path}: native checkpoint has no 'config' dict "
                              f"(found {type(obj.get('config')).__name__}).")
    config = UNetConfig.from_dict(obj["config"], source=f"{path}: 'config'")
    meta = obj.get("meta", {})
    problem = _json_problem(meta) if isinstance(meta, dict) else f"is a {type(meta).__name__}"
    if problem is None:
        kinds = {"dataset": str, "train_config": dict}
        problem = next((f"key '{k}' is a {type(meta[k]).__name__}, expected a "
                        f"{t.__name__}" for k, t in kinds.items()
                        if k in meta and not isinstance(meta[k], t)), None)
    if problem:
        raise CheckpointError(f"{path}: native checkpoint 'meta' {problem}; it must be a dict of "
                              "JSON values (strings, numbers, booleans, null, lists, dicts).")
    return config, dict(meta)


def _json_problem(value: Any, max_depth: int = 32) -> str | None:
    """Why ``value`` is not a JSON-like tree (dicts with string keys, lists, str, numbers, bool,
    None) of depth at most ``max_depth``, or None."""
    stack = [(value, "", 0)]
    while stack:
        node, where, depth = stack.pop()
        if depth > max_depth:
            return f"nests deeper than {max_depth} levels (at '{where}')"
        if isinstance(node, dict):
            bad = next((k for k in node if not isinstance(k, str)), None)
            if bad is not None:
                return f"has a non-string key {bad!r} (at '{where}')"
            stack.extend((v, f"{where}.{k}" if where else k, depth + 1) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, f"{where}[{i}]", depth + 1) for i, v in enumerate(node))
        elif not (node is None or isinstance(node, (str, bool, int, float))):
            return f"holds a {type(node).__name__} at '{where}'"
    return None


def _check_stored_config(config: UNetConfig, sd: dict[str, torch.Tensor], *, path: Path,
                         source: str) -> None:
    """The stored config must be the one the weights imply (T_snn of a TSM model included:
    its ``tsmp`` shape fixes it); name every key that differs and both values."""
    tsmp = [k for k in sd if k.endswith(".tsmp")]
    inferred, _ = infer_config(sd, source=source, snn_steps=None if tsmp else config.snn_steps,
                               img_size=config.img_size)
    if inferred == config:
        return
    stored, implied = config.to_dict(), inferred.to_dict()
    diffs = [f"'{k}' is {stored[k]} in the stored config but {implied[k]} from the weights"
             for k in stored if stored[k] != implied[k]]
    if tsmp and config.snn_steps != inferred.snn_steps:
        diffs.append(f"T_snn comes from the shape {list(sd[tsmp[0]].shape)} of '{tsmp[0]}'")
    raise CheckpointMismatchError(f"{path}: the stored config disagrees with the weights: "
                                  f"{'; '.join(diffs)}.")


def _override(config: UNetConfig, path: Path, *, snn_steps: int | None, img_size: int | None,
              notes: list[str]) -> UNetConfig:
    """A native config with the caller's T_snn / image size (options), checked as such."""
    if snn_steps is not None and snn_steps != config.snn_steps:
        if config.tsm:
            raise UsageError(f"{path}: --snn-steps {snn_steps} conflicts with this TSM model, "
                             f"whose per-step gains fix T_snn = {config.snn_steps}.")
        notes.append(f"T_snn overridden: {snn_steps} (trained with {config.snn_steps})")
        config = _replace_option(config, path, "--snn-steps", snn_steps=snn_steps)
    if img_size is not None and img_size != config.img_size:
        notes.append(f"image size overridden: {img_size} (trained at {config.img_size})")
        config = _replace_option(config, path, "--img-size", img_size=img_size)
    return config


def _replace_option(config: UNetConfig, path: Path, option: str, **change: Any) -> UNetConfig:
    try:
        return config.replace(**change)
    except ConfigError as e:
        raise ConfigError(f"{path}: {option} {next(iter(change.values()))!r}: {e}") from None


def check_dtypes(sd: dict[str, torch.Tensor], *, source: str) -> None:
    """Model weights are floating point (the model would cast an integer, boolean or complex
    tensor without a word); BatchNorm's ``num_batches_tracked`` counter is int64."""
    bad = [f"{k} ({v.dtype})" for k, v in sd.items()
           if (v.dtype != torch.int64 if k.endswith("num_batches_tracked")
               else v.dtype not in FLOAT_DTYPES)]
    if bad:
        more = f" ... and {len(bad) - 8} more" if len(bad) > 8 else ""
        raise CheckpointError(
            f"{source}: tensor(s) of the wrong dtype: {', '.join(bad[:8])}{more}. Weights must "
            "be float16, bfloat16, float32 or float64 (BatchNorm num_batches_tracked: int64).")


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
    Only shapes are read: nothing is materialized before :func:`check_state_dict`.
    """
    notes: list[str] = []

    def shape(key: str, dims: int, what: str) -> tuple[int, ...]:
        if key not in sd:
            raise CheckpointMismatchError(
                f"{source}: cannot infer the model configuration: key '{key}' is missing "
                "(is this an SDDPM/SDM spiking U-Net state_dict?).")
        got = tuple(sd[key].shape)
        if len(got) != dims or 0 in got:
            raise CheckpointMismatchError(f"{source}: '{key}' has shape {list(got)}, expected "
                                          f"{what}.")
        return got

    head = "conv.weight" if "conv.weight" in sd or "conv.tsmconv.weight" not in sd else \
        "conv.tsmconv.weight"
    ch, img_ch = shape(head, 4, "[ch, img_ch, 3, 3]")[:2]
    table = "time_embedding.timembedding.0.weight"
    diffusion_steps, width = shape(table, 2, f"[T, {ch}] (ch = {ch} from '{head}')")
    if width != ch:
        raise CheckpointMismatchError(
            f"{source}: time-embedding table '{table}' has shape {[diffusion_steps, width]}, "
            f"expected [T, {ch}] (ch = {ch} from '{head}').")

    tsmp = [k for k in sd if k.endswith(".tsmp")]
    tsm = bool(tsmp)
    if tsm:
        lengths = {k: shape(k, 5, "[T_snn, 1, 1, 1, 1] with T_snn >= 1") for k in tsmp}
        odd = next((k for k, s in lengths.items() if s[1:] != (1, 1, 1, 1)), None)
        if odd is not None:
            raise CheckpointMismatchError(f"{source}: '{odd}' has shape {list(lengths[odd])}, "
                                          "expected [T_snn, 1, 1, 1, 1].")
        found = sorted({s[0] for s in lengths.values()})
        if len(found) != 1:
            raise CheckpointMismatchError(f"{source}: tsmp tensors disagree on T_snn: {found}.")
        steps = found[0]
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

    ch_mult, num_res_blocks = _infer_levels(sd, ch, source, shape)
    size = img_size if img_size is not None else DEFAULT_IMG_SIZE
    if img_size is None:
        notes.append(f"image size not stored in the checkpoint: using {size} "
                     "(default; set --img-size)")
    try:
        config = UNetConfig(ch=ch, ch_mult=tuple(ch_mult), num_res_blocks=num_res_blocks,
                            img_ch=img_ch, diffusion_steps=diffusion_steps, snn_steps=steps,
                            tsm=tsm, img_size=size)
    except ConfigError as e:
        origin = ("T_snn from the tsmp shape, " if tsm else "") + "the rest from the weights"
        raise ConfigError(f"{source}: the configuration inferred from the key names and shapes "
                          f"({origin}) is invalid: {e}") from None
    return config, notes


def _infer_levels(sd: dict[str, torch.Tensor], ch: int, source: str,
                  shape: Any) -> tuple[list[int], int]:
    """ch_mult and num_res_blocks from the up path: per level (deepest first)
    num_res_blocks + 1 ResBlocks, then an UpSample (not after the last level). ResBlocks have
    temb_proj; UpSamples only a conv."""
    kinds: list[tuple[str, int]] = []
    i = 0
    while f"upblocks.{i}.temb_proj.1.weight" in sd or _conv_weight(sd, f"upblocks.{i}.conv") is not None:
        key = f"upblocks.{i}.temb_proj.1.weight"
        if key in sd:
            kinds.append(("res", shape(key, 2, "[out_ch, tdim]")[0]))
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
    ch_mult = []
    for lv in reversed(levels):
        if len(set(lv)) != 1 or lv[0] % ch:
            raise ConfigError(f"{source}: up-path widths {lv} are not one multiple of ch = {ch}.")
        ch_mult.append(lv[0] // ch)
    return ch_mult, counts.pop() - 1


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
    problem = _json_problem(meta)
    if problem:  # refused on reading, so never written
        raise UsageError(f"{path}: checkpoint meta {problem}; it must hold JSON values only.")
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
    """The ``train_state`` of a checkpoint written by ``sdm-neuro train`` (for ``--resume``),
    its entries checked (the optimizer's against the model in :func:`training.train`)."""
    path = Path(path)
    obj = _safetensors_load(path) if path.suffix == ".safetensors" else load_torch_file(path)
    state = obj.get("train_state") if isinstance(obj, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: no training state to resume from (only checkpoints "
                              "written by 'sdm-neuro train' in .pt format carry one).")
    problem = _train_state_problem(state)
    if problem:
        raise CheckpointError(f"{path}: malformed training state: {problem}.")
    return state


def _train_state_problem(state: dict[str, Any]) -> str | None:
    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    step, seconds, losses = state.get("step"), state.get("seconds"), state.get("losses")
    rng, optimizer = state.get("rng"), state.get("optimizer")
    if type(step) is not int or step < 0:
        return f"'train_state.step' is {step!r}, expected an integer >= 0"
    if not number(seconds) or not math.isfinite(seconds) or seconds < 0:
        return f"'train_state.seconds' is {seconds!r}, expected a finite number >= 0"
    if not number(state.get("running_loss", math.nan)):
        return f"'train_state.running_loss' is {state.get('running_loss')!r}, expected a number"
    if not isinstance(losses, list) or not all(
            isinstance(e, list) and len(e) == 2 and type(e[0]) is int and number(e[1])
            for e in losses):
        return "'train_state.losses' is not a list of [step, loss] pairs"
    if not (isinstance(rng, torch.Tensor) and rng.dtype == torch.uint8 and rng.dim() == 1):
        return "'train_state.rng' is not a generator state (a 1-d uint8 tensor)"
    if not (isinstance(optimizer, dict) and isinstance(optimizer.get("state"), dict)
            and isinstance(optimizer.get("param_groups"), list)):
        return "'train_state.optimizer' is not an optimizer state_dict"
    return None
