"""Both Loihi 2 mappings in the energy report: the composed graph (:mod:`.activity`,
:mod:`.model`) and the graded graph (:mod:`.graded`), measured on the same noised images and t,
side by side per profile: energy per image and its breakdown, synaptic operations per call
against the PyTorch model's effective count, cores and chips. The ``mappings`` section of
``energy.json``, its printed table and its chart (``energy_mappings.png``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..errors import UsageError
from .activity import Activity, noised_batch
from ..ir.graded import MAPPINGS
from .graded import GradedActivity, graded_counts, graded_energy

if TYPE_CHECKING:
    from ..hardware_profiles.profile import Profile
    from ..ir.graded import GradedGraph
    from ..simulators.integer import Counters

MAPPING_CHOICES = (*MAPPINGS, "both")
# the breakdown of either mapping's energy, in this order (a graded graph's binary and graded
# synaptic ops are one "synaptic ops" here; the JSON keeps them apart under "energy")
CATEGORIES = ("synaptic ops", "spike messages", "graded messages", "neuron updates", "memory",
              "host", "static")


def selected(mapping: str) -> tuple[str, ...]:
    """The mappings ``--mapping`` names ("both": composed then graded)."""
    if mapping not in MAPPING_CHOICES:
        raise UsageError(f"unknown mapping {mapping!r} (one of {', '.join(MAPPING_CHOICES)}).")
    return MAPPINGS if mapping == "both" else (mapping,)


@dataclass(frozen=True)
class GradedMeasurement:
    """The graded graph's activity (per image per call) with what the report says of it."""

    activity: GradedActivity
    by_t: tuple[dict, ...]             # per measured call: t, spikes, graded messages, synops
    source: str
    chain: tuple[str, int] | None = None  # (sampler, steps) of the simulate run it was read from
    path: str | None = None


def _add(total: Counters, c: Counters) -> None:
    for mine, theirs in ((total.spikes, c.spikes), (total.payloads, c.payloads),
                         (total.synops, c.synops)):
        for k, v in theirs.items():
            mine[k] += v
    total.neuron_updates += c.neuron_updates
    total.host_macs += c.host_macs


def measure_graded_activity(graph: GradedGraph, images: torch.Tensor, ts: list[int], *,
                            batch: int = 16, seed: int = 0, progress: bool = False,
                            device: str | None = None) -> GradedMeasurement:
    """:func:`.activity.measure_activity` for the graded graph: the graded simulator once per t
    in ``ts``. The generator is seeded and drawn from exactly as there, so with the same
    ``seed`` both mappings see the same noised images at the same t."""
    from tqdm import tqdm

    from ..diffusion import LinearSchedule
    from ..simulators.graded import GradedSimulator
    from ..simulators.integer import Counters

    sim = GradedSimulator(graph, device, keep_payloads=False)
    sch = LinearSchedule(num_steps=graph.config.diffusion_steps)
    gen = torch.Generator().manual_seed(seed)
    graded = {r.name for r in graph.relays if not r.binary}
    neurons = sum(p.neurons for p in graph.populations)
    steps = graph.config.snn_steps
    total, by_t = Counters(), []
    for t in tqdm(ts, desc="graded activity", unit="call", disable=not progress):
        x, tt = noised_batch(images, t, batch, gen, sch)
        c = Counters()
        sim(x, tt, c)
        spikes = sum(c.spikes.values()) / batch
        by_t.append({"t": t, "spikes": spikes,
                     "graded_messages": sum(v for k, v in c.payloads.items() if k in graded)
                     / batch, "synops": sum(c.synops.values()) / batch,
                     "firing_rate": spikes / (neurons * steps)})
        _add(total, c)
    return GradedMeasurement(GradedActivity.from_counters(total, len(ts) * batch), tuple(by_t),
                             f"measured: graded integer simulator, {len(ts)} calls at t = "
                             f"{', '.join(map(str, ts))}, {batch} noised training images each")


def check_graded_activity(m: GradedMeasurement, graph: GradedGraph) -> None:
    """Graded statistics read from a file must be of this graph (as
    :func:`.activity.check_activity` for the composed one)."""
    where = m.path or m.source
    a = m.activity
    nodes = {n.name for n in graph.nodes()}
    seen = set(a.spikes) | set(a.payloads)
    unknown, missing = sorted(seen - nodes), sorted(nodes - seen)
    if unknown or missing:
        raise UsageError(f"{where}: layers are not this graded graph's nodes (unknown: "
                         f"{unknown[:5]}, missing: {missing[:5]}); the statistics are of "
                         "another model.")
    conns = {f"{c.src}->{c.dst}" for c in graph.connections}
    unknown = sorted(set(a.synops) - conns)
    if unknown:
        raise UsageError(f"{where}: counters_per_call.synops names connections this graded "
                         f"graph does not have: {unknown[:5]}.")
    if m.chain is not None and m.chain[1] > graph.config.diffusion_steps:
        raise UsageError(f"{where}: steps is {m.chain[1]}, more than the model's "
                         f"{graph.config.diffusion_steps} diffusion steps.")


# -- the report section ---------------------------------------------------------------------------
def breakdown(energy: dict, calls: int) -> dict[str, float]:
    """uJ per image over the chain, by :data:`CATEGORIES` (only those the energy has), of
    ``energy``: an :meth:`.model.Energy.to_dict`."""
    out: dict[str, float] = {}
    for k, v in energy["per_call_pj"].items():
        key = "synaptic ops" if k.startswith("synaptic ops") else k
        out[key] = out.get(key, 0.0) + v * calls * 1e-6
    return {k: out[k] for k in (*CATEGORIES, *sorted(set(out) - set(CATEGORIES))) if k in out}


def _entry(energy: dict, calls: int, placement: dict) -> dict:
    keep = ("fits", "total_cores", "chips", "colocated_cores", "colocated_chips",
            "memory_bytes", "violations", "unchecked", "mapping_model")
    return {"supported": True, "energy": energy,
            "breakdown_per_image_uj": breakdown(energy, calls),
            "placement": {k: placement[k] for k in keep if k in placement}}


def _ratio(synops: float, reference: float) -> float | None:
    return synops / reference if reference else None


def composed_section(activity: Activity, profiles: dict[str, dict], *, calls: int,
                     pytorch_acs: float) -> dict:
    """``profiles``: the composed report's per-profile entries (:func:`.report.composed_report`),
    whose energy and constraints are not computed twice."""
    synops = sum(activity.synops.values())
    return {
        "graph": "one explicit synapse matrix per pair of spiking layers (every analog tensor "
                 "composed away); binary spikes only",
        "activity_source": activity.source,
        "totals_per_call": {"spikes": sum(activity.spikes.values()), "synaptic_ops": synops,
                            "neuron_updates": activity.neuron_updates,
                            "host_macs": activity.host_macs},
        "synops_per_call": synops, "synops_vs_pytorch": _ratio(synops, pytorch_acs),
        "profiles": {name: _entry(p["energy"], calls, p["constraints"])
                     for name, p in profiles.items()},
    }


def graded_section(graph: GradedGraph, m: GradedMeasurement, profiles: list[Profile], *,
                   calls: int, pytorch_acs: float, pytorch_macs: float) -> dict:
    from ..compiler.schedule_graded import schedule_graded
    from ..hardware_profiles.graded import graded_placement, graded_support
    from ..ir.graph import is_scheduled

    # Cores and chips of the network as deployed: scheduled, its delay copies are neurons too
    # (their traffic, a copy of their source's, is not in the measured activity).
    deployed = graph if is_scheduled(graph) else schedule_graded(graph)
    a = m.activity
    n = graded_counts(a, graph)
    synops = n["binary synaptic ops"] + n["graded synaptic ops"]
    per_profile = {}
    for p in profiles:
        why = graded_support(p)
        per_profile[p.name] = ({"supported": False, "reason": why} if why else
                               _entry(graded_energy(p, a, graph).to_dict(calls), calls,
                                      graded_placement(deployed, p).to_dict()))
    steps = graph.config.snn_steps
    nodes = []
    for node in graph.nodes():
        relay = graph.is_relay(node.name)
        events = (a.payloads if relay else a.spikes).get(node.name, 0.0)
        nodes.append({"node": node.name, "kind": node.kind if relay else "IF",
                      "neurons": node.neurons, "events": events,
                      "event_rate": events / (node.neurons * steps),
                      "synops_out": sum(v for k, v in a.synops.items()
                                        if k.split("->")[0] == node.name)})
    return {
        "graph": "the model's layers: shared conv kernels, relays sending integer payloads as "
                 "graded spikes (residual stream, skips, upsampling)",
        "activity_source": m.source, "by_t": list(m.by_t), "nodes": nodes,
        "totals_per_call": {"spikes": sum(a.spikes.values()), **{
            k.replace(" ", "_").lower(): v for k, v in n.items()}},
        "synops_per_call": synops, "synops_vs_pytorch": _ratio(synops, pytorch_acs),
        # binary synops do the PyTorch layers' ACs (spike inputs), graded ones the MACs of
        # layers reading real values (relays): each against its own PyTorch count
        "synops_split": {"binary": n["binary synaptic ops"], "graded": n["graded synaptic ops"],
                         "binary_vs_pytorch_acs": _ratio(n["binary synaptic ops"], pytorch_acs),
                         "graded_vs_pytorch_macs": _ratio(n["graded synaptic ops"],
                                                          pytorch_macs)},
        "profiles": per_profile,
    }


def mappings_section(sections: dict[str, dict], pytorch_acs: float, pytorch_macs: float) -> dict:
    return {"pytorch_effective_synops_per_call": pytorch_acs,
            "pytorch_effective_macs_per_call": pytorch_macs,
            "synops_reference": "synops_vs_pytorch = the mapping's synaptic operations per call "
                                "/ the PyTorch model's effective ACs (NeuroBench: non-zero "
                                "spike inputs x weights they reach, layers with spiking input)",
            **sections}


# -- printing and chart ---------------------------------------------------------------------------
def _fmt(x: float) -> str:
    if x == 0:
        return "0"
    for unit, scale in (("J", 1e12), ("mJ", 1e9), ("uJ", 1e6), ("nJ", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {unit}"
    return f"{x:.3g} pJ"


def print_mappings(report: dict, console) -> None:
    """The mappings side by side: per profile and mapping, energy, synaptic ops, cores, chips;
    the breakdown on the profiles that run every mapping; why a profile runs no graded one."""
    from rich.table import Table

    sec = report["mappings"]
    names = [m for m in MAPPINGS if m in sec]
    ref = sec["pytorch_effective_synops_per_call"]
    t = Table(title=f"mappings side by side (per image: {report['calls_per_image']} calls; "
                    f"synaptic ops per call vs PyTorch's {ref:,.0f} effective ACs)",
              title_justify="left")
    for col in ("profile", "mapping", "per call", "per image", "synops/call", "vs PyTorch",
                "fits", "cores", "chips"):
        t.add_column(col, justify="left" if col in ("profile", "mapping") else "right")
    refusals = []
    for prof in sec[names[0]]["profiles"]:
        for m in names:
            e = sec[m]["profiles"][prof]
            if not e["supported"]:
                refusals.append(e["reason"])
                continue
            pl, en = e["placement"], e["energy"]
            ratio = sec[m]["synops_vs_pytorch"]

            def count(key: str) -> str:
                v, co = pl.get(key), pl.get(f"colocated_{key}")
                text = "-" if v is None else f"{v:,}"
                return text + (f" ({co:,})" if co is not None else "")

            t.add_row(prof, m, _fmt(en["per_call_total_pj"]),
                      _fmt(en["per_image_total_uj"] * 1e6), f"{sec[m]['synops_per_call']:,.0f}",
                      "-" if ratio is None else f"{ratio:.2f}x", "yes" if pl["fits"] else "no",
                      count("total_cores"), count("chips"))
    console.print(t)
    ann = report["ann_baseline_45nm_fp32"]
    console.print(f"ANN baseline (45 nm fp32): {_fmt(ann['per_image_mj'] * 1e9)} per image")
    if "graded" in names:
        sp = sec["graded"]["synops_split"]
        console.print(f"graded synops per call: {sp['binary']:,.0f} binary (spike inputs; "
                      f"{sp['binary_vs_pytorch_acs'] or 0:.2f}x PyTorch's effective ACs) + "
                      f"{sp['graded']:,.0f} graded (payload inputs; "
                      f"{sp['graded_vs_pytorch_macs'] or 0:.2f}x its effective MACs of "
                      f"real-valued-input layers, {sec['pytorch_effective_macs_per_call']:,.0f})")
        console.print("graded cores (chips) in parentheses: kernel-free nodes co-located on "
                      "other nodes' cores")
    for why in refusals:
        console.print(f"- {why}")
    both = [p for p in sec[names[0]]["profiles"]
            if all(sec[m]["profiles"][p]["supported"] for m in names)]
    for prof in both if len(names) > 1 else ():
        b = Table(title=f"where the energy goes, {prof} (per image)", title_justify="left")
        b.add_column("component")
        for m in names:
            b.add_column(m, justify="right")
        parts = {m: sec[m]["profiles"][prof]["breakdown_per_image_uj"] for m in names}
        for cat in (c for c in CATEGORIES if any(c in parts[m] for m in names)):
            b.add_row(cat, *(_fmt(parts[m].get(cat, 0.0) * 1e6) for m in names))
        b.add_row("total", *(_fmt(sum(parts[m].values()) * 1e6) for m in names))
        console.print(b)
        # what the profile's figures leave out is part of where the energy goes
        for note in dict.fromkeys(n for m in names
                                  for n in sec[m]["profiles"][prof]["energy"]["notes"]
                                  if "not costed" in n or "not included" in n):
            console.print(f"  {prof}: {note}")


def chart_mappings(report: dict, out: Path) -> Path:
    """``energy_mappings.png``: stacked energy per image of each mapping on every profile that
    runs it among those that run every mapping (else all), beside the ANN baseline; and
    synaptic ops per call against the PyTorch count."""
    from matplotlib import pyplot as plt

    sec = report["mappings"]
    names = [m for m in MAPPINGS if m in sec]
    profs = list(sec[names[0]]["profiles"])
    common = [p for p in profs if all(sec[m]["profiles"][p]["supported"] for m in names)]
    bars = [(p, m) for p in (common or profs) for m in names if sec[m]["profiles"][p]["supported"]]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [2.5, 1.2]})
    bottom = [0.0] * len(bars)
    for cat in CATEGORIES:
        vals = [sec[m]["profiles"][p]["breakdown_per_image_uj"].get(cat, 0.0) * 1e-3
                for p, m in bars]
        if any(vals):
            ax.bar(range(len(bars)), vals, bottom=bottom, label=cat)
            bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ann = report["ann_baseline_45nm_fp32"]["per_image_mj"]
    ax.axhline(ann, color="tab:red", ls="--", lw=1, label=f"ANN 45 nm fp32 ({ann:.3g} mJ)")
    ax.set_xticks(range(len(bars)), [f"{p}\n{m}" for p, m in bars], fontsize=8)
    ax.set_ylabel("mJ per generated image")
    ax.set_title(f"energy per image by mapping, {report['calls_per_image']} denoising calls")
    ax.legend(fontsize=7)
    # stacked: spike-input ops below (PyTorch ACs, binary synops), real-valued-input ops above
    # (PyTorch MACs, graded synops); the ratio printed is the (total / PyTorch ACs)
    acs = sec["pytorch_effective_synops_per_call"]
    stacks = [("PyTorch\n(effective)", acs, sec["pytorch_effective_macs_per_call"], "tab:gray")]
    for m, color in zip(names, ("tab:blue", "tab:orange"), strict=False):
        sp = sec[m].get("synops_split")
        stacks.append((m, sp["binary"] if sp else sec[m]["synops_per_call"],
                       sp["graded"] if sp else 0.0, color))
    for i, (label, low, high, color) in enumerate(stacks):
        ax2.bar(i, low * 1e-6, color=color)
        ax2.bar(i, high * 1e-6, bottom=low * 1e-6, color=color, alpha=0.45, hatch="//")
        if i and acs:
            ax2.text(i, (low + high) * 1e-6, f"{(low + high) / acs:.2f}x", ha="center",
                     va="bottom", fontsize=8)
    ax2.text(0, (acs + stacks[0][2]) * 1e-6, "ACs + MACs", ha="center", va="bottom", fontsize=7)
    ax2.set_xticks(range(len(stacks)), [s[0] for s in stacks], fontsize=8)
    ax2.set_ylim(top=max((lo + hi) for _, lo, hi, _ in stacks) * 1.15e-6 or 1)
    ax2.set_ylabel("M per call (hatched: real-valued inputs)")
    ax2.set_title("synaptic ops (x: / PyTorch ACs)", fontsize=10)
    fig.tight_layout()
    path = out / "energy_mappings.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
