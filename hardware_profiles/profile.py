"""One hardware profile: a TOML file read through a strict schema.

Every figure is an inline table ``{ value = ..., tag = ..., source = ... }`` (plus
``derivation`` when the number is not published as such and was computed from others), under a
key that carries its unit (``synop_pj``, ``synaptic_memory_per_core_bytes``). An unknown or
missing key, a wrong type or tag is a :class:`ProfileError` naming the file and the key.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from sdm_neuro.errors import ProfileError
from sdm_neuro.fileio import read_text_limited

TAGS = ("measured", "estimated", "datasheet", "secondary")
KINDS = ("neuromorphic", "baseline")

# Allowed figures per section: name -> value type ("int", "number", "int_list") and meaning.
SCHEMA: dict[str, dict[str, tuple[str, str]]] = {
    "limits": {
        "chips_per_system_max": ("int", "chips one system can hold"),
        "cores_per_chip": ("int", "neuro cores per chip"),
        "neurons_per_core": ("int", "neurons (compartments) one core holds"),
        "neurons_per_chip": ("int", "neurons one chip holds"),
        "synapses_per_chip": ("int", "synapses one chip holds"),
        "synaptic_memory_per_core_bytes": ("int", "synaptic (weight) memory per core"),
        "fan_in_per_neuron_max": ("int", "distinct inputs one neuron can receive"),
        "input_axons_per_core_max": ("int", "distinct input axons (lists) per core"),
        "fan_out_per_neuron_max": ("int", "targets one neuron can drive"),
        "fan_out_edges_per_core_max": ("int", "output axon edges per core"),
        "synaptic_delay_steps_max": ("int", "largest synaptic delay in time steps"),
        "weight_bits": ("int", "weight precision"),
        "state_bits": ("int", "membrane state (u, v) precision"),
        "layers_max": ("int", "layers (one per core) of a layer-mapped chip"),
        "kernel_size_max": ("int", "largest conv kernel side"),
        "kernel_memory_entries_per_layer": ("int_list", "kernel memory per layer (entries)"),
        "neuron_memory_entries_per_layer": ("int_list", "neuron memory per layer (entries)"),
        "input_channels_max": ("int", "input channels"),
        "hidden_neurons_max": ("int", "hidden neurons"),
        "output_channels_max": ("int", "output channels"),
        # The graded mapping (hardware_profiles/graded.py); absent = the chip lacks the feature
        "graded_payload_bits": ("int", "payload width of a graded spike (absent: binary spikes "
                                "only)"),
        "shared_conv_kernels": ("int", "1: a conv kernel is stored once per core and shared by "
                                "the core's neurons (absent: no weight sharing)"),
        "neurons_per_core_practical": ("int", "neurons per core a vendor compiler places in "
                                       "practice (the graded mapping's bound; else "
                                       "neurons_per_core)"),
        "neuron_groups_per_core": ("int", "neuron groups (layers' tiles) one core can hold"),
        "synaptic_memory_words_per_core": ("int", "64-bit words of synaptic memory per core, as "
                                           "the vendor compiler allocates them"),
        "explicit_synapse_bits": ("int", "memory bits of one explicitly stored synapse (weight "
                                  "and addressing)"),
    },
    "energy": {
        "synop_pj": ("number", "one synaptic operation (a spike reaching one synapse)"),
        "neuron_update_active_pj": ("number", "one neuron update of an active neuron"),
        "neuron_update_inactive_pj": ("number", "one neuron update of an inactive neuron"),
        "spike_message_pj": ("number", "one spike message sent within a chip"),
        "spike_hop_pj": ("number", "one spike message hop between cores / tiles"),
        "graded_message_pj": ("number", "one graded spike message (with its payload) sent within "
                              "a chip"),
        "mac_pj": ("number", "one multiply-accumulate of real-valued inputs"),
        "ac_pj": ("number", "one accumulate (addition)"),
        "memory_read_64bit_pj": ("number", "one 64-bit read of local memory"),
        "memory_write_64bit_pj": ("number", "one 64-bit write of local memory"),
        "host_mac_pj": ("number", "one multiply-accumulate of the host-side work"),
    },
    "power": {
        "static_power_mw": ("number", "static / idle power of one chip"),
        "chip_power_mw": ("number", "power of one chip running a workload"),
        "time_step_us": ("number", "wall time of one network time step"),
        "inference_energy_uj": ("number", "energy of one published benchmark inference"),
    },
}
HEADER = {"name": str, "title": str, "kind": str, "process": str, "description": str}
PROFILE_MAX_BYTES = 1 << 20  # a profile is a few KB of TOML; refuse anything near this


@dataclass(frozen=True)
class Figure:
    """One sourced number."""

    value: int | float | tuple[int, ...]
    tag: str
    source: str
    derivation: str | None = None

    @property
    def label(self) -> str:
        """``"23.6 (estimated)"`` plus ``", derived"`` when not published as such."""
        value = "x".join(map(str, self.value)) if isinstance(self.value, tuple) else self.value
        return f"{value} ({self.tag}{', derived' if self.derivation else ''})"


@dataclass(frozen=True)
class Profile:
    """A platform: header, limits, energy and power figures (each a :class:`Figure`)."""

    name: str
    title: str
    kind: str
    process: str
    description: str
    path: str
    limits: Mapping[str, Figure]
    energy: Mapping[str, Figure]
    power: Mapping[str, Figure]

    def figure(self, key: str) -> Figure | None:
        """The figure ``key`` from whichever section defines it, or None."""
        for section in (self.limits, self.energy, self.power):
            if key in section:
                return section[key]
        return None

    def value(self, key: str, default: float | None = None) -> float | None:
        fig = self.figure(key)
        return default if fig is None else fig.value  # type: ignore[return-value]

    def sources(self) -> list[tuple[str, Figure]]:
        return [(k, f) for sec in (self.limits, self.energy, self.power) for k, f in sec.items()]


def _figure(path: Path, key: str, kind: str, raw: object) -> Figure:
    where = f"{path}: {key}"
    if not isinstance(raw, dict):
        raise ProfileError(f"{where} must be an inline table {{ value = ..., tag = ..., "
                           f"source = ... }}, got {type(raw).__name__}")
    unknown = sorted(set(raw) - {"value", "tag", "source", "derivation"})
    if unknown:
        raise ProfileError(f"{where}: unknown field(s) {', '.join(unknown)} (allowed: value, "
                           "tag, source, derivation)")
    for field in ("value", "tag", "source"):
        if field not in raw:
            raise ProfileError(f"{where}: missing field {field!r}")
    value = raw["value"]
    ok = {"int": isinstance(value, int) and not isinstance(value, bool) and value > 0,
          "number": isinstance(value, int | float) and not isinstance(value, bool)
          and math.isfinite(value) and value >= 0,
          "int_list": isinstance(value, list) and bool(value)
          and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)}[kind]
    if not ok:
        expected = {"int": "a positive integer", "number": "a finite non-negative number",
                    "int_list": "a non-empty list of positive integers"}[kind]
        raise ProfileError(f"{where}: value must be {expected}, got {value!r}")
    if raw["tag"] not in TAGS:
        raise ProfileError(f"{where}: tag must be one of {', '.join(TAGS)}, got {raw['tag']!r}")
    for field in ("source", "derivation"):
        if field in raw and (not isinstance(raw[field], str) or not raw[field].strip()):
            raise ProfileError(f"{where}: {field} must be a non-empty string")
    return Figure(tuple(value) if kind == "int_list" else value, raw["tag"], raw["source"],
                  raw.get("derivation"))


def load_profile(path: str | Path) -> Profile:
    """Read and check one profile file."""
    path = Path(path)
    if not os.path.lexists(path):
        raise ProfileError(f"{path}: no such profile file")
    # a regular file of bounded size: /dev/zero would never end, a named pipe never open
    text = read_text_limited(path, what="a hardware profile (TOML)", error=ProfileError,
                             max_bytes=PROFILE_MAX_BYTES)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ProfileError(f"{path}: not valid TOML ({e})") from None
    except RecursionError:
        raise ProfileError(f"{path}: not valid TOML (nested too deeply)") from None
    unknown = sorted(set(data) - set(HEADER) - set(SCHEMA))
    if unknown:
        raise ProfileError(f"{path}: unknown key(s) {', '.join(unknown)} (allowed: "
                           f"{', '.join([*HEADER, *SCHEMA])})")
    for key, typ in HEADER.items():
        if key not in data:
            raise ProfileError(f"{path}: missing key {key!r}")
        if not isinstance(data[key], typ) or not data[key].strip():
            raise ProfileError(f"{path}: {key} must be a non-empty string")
    if data["kind"] not in KINDS:
        raise ProfileError(f"{path}: kind must be one of {', '.join(KINDS)}, got "
                           f"{data['kind']!r}")
    sections = {}
    for section, fields in SCHEMA.items():
        raw = data.get(section, {})
        if not isinstance(raw, dict):
            raise ProfileError(f"{path}: [{section}] must be a table")
        bad = sorted(set(raw) - set(fields))
        if bad:
            raise ProfileError(f"{path}: unknown key(s) {', '.join(f'{section}.{k}' for k in bad)}"
                               f" (allowed in [{section}]: {', '.join(fields)})")
        sections[section] = MappingProxyType(
            {k: _figure(path, f"{section}.{k}", fields[k][0], v) for k, v in raw.items()})
    if "synop_pj" not in sections["energy"]:
        raise ProfileError(f"{path}: missing key energy.synop_pj (every profile needs an energy "
                           "per synaptic operation; give a derivation where none is published)")
    return Profile(name=data["name"], title=data["title"], kind=data["kind"],
                   process=data["process"], description=data["description"], path=str(path),
                   **sections)


def shipped_profiles() -> dict[str, Path]:
    """Name -> file of every profile shipped in this package."""
    return {p.stem: p for p in sorted(Path(__file__).parent.glob("*.toml"))}


def get_profile(name_or_path: str | Path) -> Profile:
    """A shipped profile by name, or a user's TOML file by path."""
    shipped = shipped_profiles()
    if str(name_or_path) in shipped:
        return load_profile(shipped[str(name_or_path)])
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        return load_profile(path)
    raise ProfileError(f"unknown profile {str(name_or_path)!r}: give a shipped profile "
                       f"({', '.join(shipped)}) or a .toml file")
