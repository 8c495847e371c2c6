"""Shards of a sampling run: which sample indices each task computes, and the files finished
shards are kept in, so a rerun of the same command resumes where a crash left it.

Why the merged result equals one process bit for bit: sample i's noise depends only on the seed
and i (:class:`~sdm_neuro.diffusion.samplers.NoiseSource`), and a shard is a run of whole
batches of the single-process run (``--batch``), so every batch a worker computes is exactly a
batch the single process computes, with the same inputs in the same order.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import UsageError
from ..fileio import write_atomic

SHARD_FORMAT = "sdm-neuro-shard"
SHARD_VERSION = 1
_NAME = re.compile(r"^shard-(\d{7})-(\d{7})\.pt$")


@dataclass(frozen=True)
class Shard:
    """Sample indices ``start`` (inclusive) to ``stop`` (exclusive)."""

    start: int
    stop: int

    @property
    def name(self) -> str:
        return f"shard-{self.start:07d}-{self.stop:07d}.pt"

    def __len__(self) -> int:
        return self.stop - self.start


def plan_shards(num: int, batch: int, shard_size: int | None = None) -> list[Shard]:
    """``num`` samples cut into shards of ``shard_size`` samples (default: one batch), each a
    run of whole batches of ``batch``: the last may be shorter."""
    if num < 1 or batch < 1:
        raise UsageError(f"--num and --batch must be >= 1 (got {num}, {batch}).")
    size = batch if shard_size is None else shard_size
    if size < 1 or size % batch:
        raise UsageError(f"--shard-size {size}: must be a positive multiple of --batch {batch} "
                         "(a shard is whole batches, so it computes what one process does).")
    return [Shard(s, min(s + size, num)) for s in range(0, num, size)]


class ShardStore:
    """Finished shards in ``directory``, each one file written atomically with the run's
    ``provenance`` (every setting that changes a sample: job, model hash, sampler, seed, ...)
    and its range. A file whose provenance or range does not match the run is refused, naming
    it, rather than mixed in."""

    def __init__(self, directory: Path, provenance: Mapping[str, Any], plan: list[Shard]) -> None:
        self.directory = Path(directory)
        # as a shard file will hold it (tuples read back as lists), so it compares with one
        self.provenance = json.loads(json.dumps(dict(provenance)))
        self.plan = {s.name: s for s in plan}

    def finished(self) -> dict[Shard, dict[str, Any]]:
        """The plan's shards already on disk (``{"tensors": ..., "data": ...}`` each, as
        :meth:`save` took them), checked; raises on a foreign file."""
        done = {}
        if not self.directory.is_dir():
            return done
        for path in sorted(self.directory.iterdir()):
            if path.name.startswith("."):  # a temporary file of an interrupted write
                continue
            if not _NAME.match(path.name):
                raise UsageError(f"{path}: not a shard file of this run (expected names like "
                                 f"{Shard(0, 16).name}); remove it or choose another --out.")
            shard = self.plan.get(path.name)
            if shard is None:
                raise UsageError(f"{path}: a shard range this run does not have (another --num, "
                                 "--batch or --shard-size); rerun with that run's settings, or "
                                 "remove the shards directory to start again.")
            done[shard] = self._read(path, shard)
        return done

    def _read(self, path: Path, shard: Shard) -> dict[str, Any]:
        try:
            d = torch.load(path, map_location="cpu", weights_only=True)
            meta = json.loads(d["provenance"])
            tensors, data = d["tensors"], json.loads(d["data"])
        except Exception as e:  # noqa: BLE001 - any unreadable file is refused by name
            raise UsageError(f"{path}: unreadable shard file ({type(e).__name__}: {e}); "
                             "remove it and rerun to compute it again.") from None
        if meta.get("format") != SHARD_FORMAT or meta.get("format_version") != SHARD_VERSION:
            raise UsageError(f"{path}: not a shard file of format {SHARD_FORMAT} "
                             f"v{SHARD_VERSION}.")
        for key, want in self.provenance.items():
            if meta.get(key) != want:
                raise UsageError(f"{path}: written by a run with {key} = {meta.get(key)!r}, "
                                 f"this run has {want!r}; use another --out, or remove the "
                                 "shards directory to start again.")
        if (meta.get("start"), meta.get("stop")) != (shard.start, shard.stop):
            raise UsageError(f"{path}: holds samples {meta.get('start')}..{meta.get('stop')}, "
                             f"its name says {shard.start}..{shard.stop}.")
        for key, v in tensors.items():
            if v.shape[:1] != (len(shard),):
                raise UsageError(f"{path}: {key} holds {tuple(v.shape)[:1]} samples, the shard "
                                 f"{len(shard)}.")
        return {"tensors": tensors, "data": data}

    def save(self, shard: Shard, value: Mapping[str, Any], extra: Mapping[str, Any]) -> Path:
        """Write one finished shard, ``{"tensors": {name: [n, ...] tensor}, "data": JSON-able
        dict}``, with ``extra`` beside the provenance (atomically: a crash leaves no partial
        file)."""
        meta = {"format": SHARD_FORMAT, "format_version": SHARD_VERSION, **self.provenance,
                "start": shard.start, "stop": shard.stop, **extra}
        payload = {"provenance": json.dumps(meta), "tensors": dict(value["tensors"]),
                   "data": json.dumps(value.get("data", {}))}
        return write_atomic(self.directory / shard.name, lambda tmp: torch.save(payload, tmp))
