"""The energy report: per-layer activity, both energy models per profile, the ANN baseline,
NeuroBench-named metrics and the constraint summary; as a dict (JSON), a terminal table and PNG
charts. The composed mapping's keys sit at the top level; both mappings side by side (composed
and graded, :mod:`.mappings`) under ``mappings``."""

from __future__ import annotations

from pathlib import Path

import torch

from ..ir.connectivity import fan_in
from ..ir.graph import HOST, DeployGraph
from ..hardware_profiles.constraints import check, graph_counts
from ..hardware_profiles.profile import Profile
from ..ir.graded import GradedGraph
from ..models.unet import SpikingUNet
from .activity import Activity
from .mappings import GradedMeasurement
from .model import (
    CONVENTION_MAC_PJ,
    ann_baseline,
    convention_energy,
    population_energy,
    profile_energy,
)
from .ops import LayerOps


def neurobench(ops: list[LayerOps], model: SpikingUNet, graph: DeployGraph) -> dict:
    """NeuroBench (Yik et al., 2025) names: effective ACs / MACs (zero inputs skipped), dense
    ops, activation sparsity over the layers' inputs, footprint (bytes)."""
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    if getattr(graph, "mapping", "composed") == "graded":  # shared kernels, stored once
        deployed = sum(c.weight_int.numel() for c in graph.connections if c.kind == "conv")
    else:  # one byte per 8-bit weight
        deployed = sum((p.weight_int.numel() if p.weight_int is not None else 0)
                       for p in graph.projections if p.dst != HOST)
    zeros = sum(o.input_zeros for o in ops)
    size = sum(o.input_size for o in ops)
    return {
        "effective_synaptic_operations": {
            "ACs": sum(o.effective for o in ops if o.spiking_input),
            "MACs": sum(o.effective for o in ops if not o.spiking_input)},
        "dense_synaptic_operations": sum(o.dense for o in ops),
        "activation_sparsity": zeros / size if size else 0.0,
        "footprint_bytes": {"model_parameters_and_buffers": params + buffers,
                            "deployed_8bit_weights": deployed},
        "unit": "per image per denoising call",
    }


def layer_rows(graph: DeployGraph, activity: Activity) -> list[dict]:
    steps = graph.config.snn_steps
    rows = []
    for pop in graph.populations:
        ins = graph.inputs(pop.name)
        spikes = activity.spikes.get(pop.name, 0.0)
        rows.append({"population": pop.name, "neurons": pop.neurons,
                     "fan_in": sum(fan_in(p) for p in ins), "spikes": spikes,
                     "firing_rate": spikes / (pop.neurons * steps),
                     "synops_out": activity.synops_from(pop.name),
                     "synops_in": activity.synops_into(pop.name),
                     "neuron_updates": pop.neurons * steps})
    return rows


def common_report(model: SpikingUNet, graph, ops: list[LayerOps], *, calls: int,
                  sampler: str, steps: int, checkpoint: str) -> dict:
    """What does not depend on a mapping's activity: the papers' convention, the ANN baseline,
    NeuroBench metrics (``graph``: either mapping's, for the deployed footprint)."""
    conv = convention_energy(ops)
    ann_pj = ann_baseline(ops, CONVENTION_MAC_PJ)
    return {
        "checkpoint": checkpoint, "sampler": sampler, "steps": steps,
        "calls_per_image": calls,
        "unit_note": "per image; 'per call' = one denoising call (all SNN steps)",
        "papers_convention": {**conv.to_dict(calls),
                              "counted_on": "the PyTorch model's layers (not the deployed "
                                            "graph's composed projections)"},
        "ann_baseline_45nm_fp32": {"macs_per_call": sum(o.dense_per_row for o in ops),
                                   "per_call_mj": ann_pj * 1e-9,
                                   "per_image_mj": ann_pj * calls * 1e-9,
                                   "model": "the same U-Net without spikes: every layer's "
                                            "dense MACs once per call x 4.6 pJ"},
        "neurobench": neurobench(ops, model, graph),
    }


def composed_report(graph: DeployGraph, ops: list[LayerOps], activity: Activity,
                    profiles: list[Profile], *, calls: int) -> dict:
    """The composed mapping's keys, at the top level of the report (where they were before the
    graded mapping)."""
    per_profile = {}
    counts = graph_counts(graph)
    for prof in profiles:
        placement = check(graph, prof, counts)
        energy = profile_energy(prof, activity, graph)
        ann = {}
        if "mac_pj" in prof.energy:
            ann = {"ann_baseline_per_call_pj": ann_baseline(ops, prof.energy["mac_pj"].value),
                   "ann_baseline_per_image_uj":
                       ann_baseline(ops, prof.energy["mac_pj"].value) * calls * 1e-6}
        per_profile[prof.name] = {
            "title": prof.title, "kind": prof.kind, "energy": energy.to_dict(calls), **ann,
            "derived_figures": {k: f.derivation for k, f in prof.sources() if f.derivation},
            "constraints": placement.to_dict(),
            "per_population_pj": population_energy(prof, activity, graph)}
    return {
        "activity_source": activity.source,
        "layers": layer_rows(graph, activity),
        "by_t": list(activity.by_t),
        "totals_per_call": {"spikes": sum(activity.spikes.values()),
                            "synaptic_ops": sum(activity.synops.values()),
                            "neuron_updates": activity.neuron_updates,
                            "host_macs": activity.host_macs},
        "totals_per_image": {"spikes": sum(activity.spikes.values()) * calls,
                             "synaptic_ops": sum(activity.synops.values()) * calls,
                             "neuron_updates": activity.neuron_updates * calls,
                             "host_macs": activity.host_macs * calls},
        "profiles": per_profile,
    }


def build_report(model: SpikingUNet, graph: DeployGraph, ops: list[LayerOps],
                 activity: Activity, profiles: list[Profile], *, calls: int, sampler: str,
                 steps: int, checkpoint: str) -> dict:
    """The composed mapping's report (no ``mappings`` section)."""
    return {**common_report(model, graph, ops, calls=calls, sampler=sampler, steps=steps,
                            checkpoint=checkpoint),
            **composed_report(graph, ops, activity, profiles, calls=calls)}


def _fmt(x: float) -> str:
    if x == 0:
        return "0"
    for unit, scale in (("J", 1e12), ("mJ", 1e9), ("uJ", 1e6), ("nJ", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {unit}"
    return f"{x:.3g} pJ"


def print_report(report: dict) -> None:
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    if "layers" in report:  # the composed mapping was measured
        _print_composed(report, console)
    if "mappings" in report:
        from .mappings import print_mappings

        print_mappings(report, console)


def _print_composed(report: dict, console) -> None:
    from rich.table import Table

    calls = report["calls_per_image"]
    t = Table(title=f"activity per image per call ({report['activity_source']})",
              title_justify="left")
    for col in ("population", "neurons", "fan-in", "firing rate", "synaptic ops out",
                "neuron updates"):
        t.add_column(col, justify="left" if col == "population" else "right")
    for r in report["layers"]:
        t.add_row(r["population"], f"{r['neurons']:,}", f"{r['fan_in']:,}",
                  f"{r['firing_rate']:.3f}", f"{r['synops_out']:,.0f}",
                  f"{r['neuron_updates']:,}")
    tot = report["totals_per_call"]
    t.add_row("total", "", "", "", f"{tot['synaptic_ops']:,.0f}", f"{tot['neuron_updates']:,.0f}")
    console.print(t)
    console.print(f"host MACs per call: {tot['host_macs']:,.0f}")
    e = Table(title=f"energy per image ({calls} calls of {report['sampler']} "
                    f"{report['steps']})", title_justify="left")
    for col in ("profile", "model", "per call", "per image", "fits", "cores", "chips",
                "violations"):
        e.add_column(col, justify="left" if col in ("profile", "model") else "right")
    conv = report["papers_convention"]
    e.add_row("45 nm (papers)", "convention", _fmt(conv["per_call_total_pj"]),
              _fmt(conv["per_image_total_uj"] * 1e6), "", "", "", "")
    ann = report["ann_baseline_45nm_fp32"]
    e.add_row("45 nm (papers)", "ANN baseline", _fmt(ann["per_call_mj"] * 1e9),
              _fmt(ann["per_image_mj"] * 1e9), "", "", "", "")
    for name, p in report["profiles"].items():
        c = p["constraints"]
        derived = "*" if p["derived_figures"] else ""
        e.add_row(name + derived, "fuller", _fmt(p["energy"]["per_call_total_pj"]),
                  _fmt(p["energy"]["per_image_total_uj"] * 1e6), "yes" if c["fits"] else "no",
                  "-" if c["total_cores"] is None else f"{c['total_cores']:,}",
                  "-" if c["chips"] is None else str(c["chips"]), str(len(c["violations"])))
    console.print(e)
    if any(p["derived_figures"] for p in report["profiles"].values()):
        console.print("* uses figures that are not published as such (derivations in the JSON).")


def save_charts(report: dict, out: Path, main_profile: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    paths = []
    if "mappings" in report:
        from .mappings import chart_mappings

        paths.append(chart_mappings(report, out))
    if "layers" not in report:  # the charts below are of the composed mapping's activity
        return paths
    pops = [r["population"] for r in report["layers"]]
    per_pop = report["profiles"][main_profile]["per_population_pj"]
    comps = list(next(iter(per_pop.values())))
    fig, ax = plt.subplots(figsize=(10, 4.5))
    bottom = [0.0] * len(pops)
    for comp in comps:
        vals = [per_pop[p][comp] * 1e-3 for p in pops]
        ax.bar(range(len(pops)), vals, bottom=bottom, label=comp)
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ax.set_xticks(range(len(pops)), pops, rotation=70, ha="right", fontsize=7)
    ax.set_ylabel("nJ per image per call")
    ax.set_title(f"energy per layer, {main_profile} (fuller model)")
    ax.legend()
    fig.tight_layout()
    paths.append(out / "energy_per_layer.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.bar(range(len(pops)), [r["firing_rate"] for r in report["layers"]], color="tab:gray",
           label="mean over measured calls")
    for b in report["by_t"]:
        ax.plot(range(len(pops)), [b["firing_rate_per_population"].get(p, 0) for p in pops],
                marker=".", lw=0.8, label=f"t = {b['t']}")
    ax.set_xticks(range(len(pops)), pops, rotation=70, ha="right", fontsize=7)
    ax.set_ylabel("spikes per neuron per SNN step")
    ax.set_title("firing rate per layer")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    paths.append(out / "firing_rate.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    names, vals, colors = [], [], []
    for name, p in report["profiles"].items():
        names.append(name)
        vals.append(p["energy"]["per_image_total_uj"])
        colors.append("tab:blue" if p["kind"] == "neuromorphic" else "tab:orange")
    names += ["papers' convention", "ANN 45 nm fp32"]
    vals += [report["papers_convention"]["per_image_total_uj"],
             report["ann_baseline_45nm_fp32"]["per_image_mj"] * 1e3]
    colors += ["tab:green", "tab:red"]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.bar(range(len(names)), vals, color=colors)
    ax.set_yscale("log")
    ax.set_xticks(range(len(names)), names, rotation=40, ha="right", fontsize=8)
    ax.set_ylabel("uJ per generated image (log)")
    ax.set_title(f"energy per image, {report['calls_per_image']} denoising calls")
    for i, v in enumerate(vals):
        ax.text(i, v, f"{v:.3g}", ha="center", va="bottom", fontsize=7)
    ax.set_ylim(top=max(vals) * 10 if vals and max(vals) > 0 else 1)
    fig.tight_layout()
    paths.append(out / "energy_per_image.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths


def energy_report(model: SpikingUNet, graph: DeployGraph | None, images: torch.Tensor,
                  profiles: list[Profile], *, sampler: str = "ddpm", steps: int = 1000,
                  calls: int = 8, batch: int = 16, seed: int = 0,
                  activity: Activity | None = None, checkpoint: str = "",
                  progress: bool = False, graded: GradedGraph | None = None,
                  graded_activity: GradedMeasurement | None = None,
                  device: str | None = None) -> dict:
    """Measure activity (unless given, e.g. from ``simulate.json``) of the composed ``graph``
    and of the ``graded`` graph (the integer network on ``device``), whichever are given, on
    the same noised images and t; count the model's layer ops at those t, and build the report
    dict: the composed mapping's keys at the top level (when ``graph`` is given) and both
    mappings side by side under ``mappings``.
    ``images``: training images in [-1, 1] (noised to each measured t)."""
    from ..diffusion import LinearSchedule
    from ..diffusion.samplers import model_call_steps
    from .activity import check_activity, measure_activity, noised_batch, trajectory_steps
    from .mappings import (
        check_graded_activity,
        composed_section,
        graded_section,
        mappings_section,
        measure_graded_activity,
    )
    from .ops import mean_ops, model_ops

    if graph is None and graded is None:
        raise ValueError("energy_report needs a composed or a graded graph")
    cfg = (graph if graph is not None else graded).config
    if activity is not None and graph is not None:
        check_activity(activity, graph)
    if graded_activity is not None and graded is not None:
        check_graded_activity(graded_activity, graded)
    ts = trajectory_steps(sampler, cfg.diffusion_steps, steps, calls)
    if graph is not None and activity is None:
        activity = measure_activity(graph, images, ts, batch=batch, seed=seed, progress=progress,
                                    device=device)
    if graded is not None and graded_activity is None:  # same seed: same images, noise and t
        graded_activity = measure_graded_activity(graded, images, ts, batch=batch, seed=seed,
                                                  progress=progress, device=device)
    sch = LinearSchedule(num_steps=cfg.diffusion_steps)
    gen = torch.Generator().manual_seed(seed + 1)
    runs = []
    for t in ts:
        runs.append(model_ops(model, *noised_batch(images, t, 4, gen, sch)))
    ops = mean_ops(runs)
    n_calls = len(model_call_steps(sampler, cfg.diffusion_steps, steps))
    report = common_report(model, graph if graph is not None else graded, ops, calls=n_calls,
                           sampler=sampler, steps=steps, checkpoint=checkpoint)
    nb = report["neurobench"]["effective_synaptic_operations"]
    sections = {}
    if graph is not None:
        report.update(composed_report(graph, ops, activity, profiles, calls=n_calls))
        sections["composed"] = composed_section(activity, report["profiles"], calls=n_calls,
                                                pytorch_acs=nb["ACs"])
    if graded is not None:
        sections["graded"] = graded_section(graded, graded_activity, profiles, calls=n_calls,
                                            pytorch_acs=nb["ACs"], pytorch_macs=nb["MACs"])
    report["mappings"] = mappings_section(sections, nb["ACs"], nb["MACs"])
    return report
