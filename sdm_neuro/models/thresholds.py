"""Threshold guidance per population: a map from the model's neuron names to firing thresholds.

SDDPM and SDM set one global threshold at inference (0.997-1.003). A map sets each spiking layer
(population) on its own; it is applied to the float model before lowering, so the integer graph
takes the same thresholds (its ``vth`` carries them: :mod:`sdm_neuro.compiler.quantize_graph`).

Forms (``--threshold-map``):

* ``FILE.json``: an object ``{"pattern": threshold, ...}``; patterns are shell globs over the
  neuron names that ``info --layers`` lists (``downblocks.*``, ``upblocks.4.neuron2``); entries
  apply in file order, a later one overriding an earlier one; a pattern that matches no neuron is
  an error.
* ``halves:DOWN,UP``: the stem, down and middle blocks at DOWN, the up blocks at UP.
* ``depth:FIRST,LAST``: linear in call order from the first neuron (FIRST) to the last (LAST).
"""

from __future__ import annotations

import fnmatch
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError

SCHEDULES = ("halves", "depth")
UP_PREFIX = "upblocks."


@dataclass(frozen=True)
class ThresholdMap:
    """``entries``: (glob, threshold) for a file; (schedule, (a, b)) for a schedule."""

    source: str
    entries: tuple[tuple[str, float], ...] = ()
    schedule: tuple[str, float, float] | None = None

    def resolve(self, names: Sequence[str]) -> dict[str, float]:
        """The threshold of every name that the map sets (all of them for a schedule)."""
        if self.schedule is not None:
            kind, a, b = self.schedule
            if kind == "halves":
                return {n: (b if n.startswith(UP_PREFIX) else a) for n in names}
            last = max(len(names) - 1, 1)
            return {n: a + (b - a) * i / last for i, n in enumerate(names)}
        out: dict[str, float] = {}
        for pattern, value in self.entries:
            hits = fnmatch.filter(names, pattern)
            if not hits:
                raise UsageError(f"{self.source}: pattern {pattern!r} matches no spiking layer "
                                 f"(the layers: {', '.join(names)}).")
            out.update(dict.fromkeys(hits, value))
        return out

    def to_dict(self) -> dict:
        if self.schedule is not None:
            return {"schedule": self.schedule[0], "values": list(self.schedule[1:])}
        return {"file": self.source, "entries": dict(self.entries)}


def _threshold(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value <= 0:
        raise UsageError(f"{where}: a threshold must be a finite number > 0 (got {value!r}).")
    return float(value)


def parse_threshold_map(text: str) -> ThresholdMap:
    """A ``--threshold-map`` value: ``halves:A,B``, ``depth:A,B`` or a JSON file's path."""
    kind, sep, rest = text.partition(":")
    if sep and kind in SCHEDULES:
        parts = rest.split(",")
        try:
            values = [float(v) for v in parts]
        except ValueError:
            values = []
        if len(values) != 2:
            raise UsageError(f"--threshold-map {text}: expected {kind}:A,B with two numbers.")
        a, b = (_threshold(v, f"--threshold-map {text}") for v in values)
        return ThresholdMap(text, schedule=(kind, a, b))
    path = Path(text)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"--threshold-map {text}: no such file (or use halves:A,B / "
                         "depth:A,B).") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UsageError(f"{path}: not a readable JSON threshold map ({e}).") from None
    if not isinstance(raw, dict) or not raw:
        raise UsageError(f"{path}: a threshold map is a non-empty JSON object "
                         "{\"layer pattern\": threshold}.")
    return ThresholdMap(str(path), tuple((k, _threshold(v, f"{path}: {k!r}"))
                                         for k, v in raw.items()))


def apply_threshold_map(model, tmap: ThresholdMap) -> dict[str, float]:
    """Set the thresholds of ``model``'s neurons that ``tmap`` names; returns the full map of
    thresholds after it (every neuron)."""
    model.set_thresholds(tmap.resolve(list(model.thresholds())))
    return model.thresholds()
