"""The energy-report job: synaptic-operation energy, activity and hardware constraints per
profile, written as ``energy.json`` and PNG charts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import UsageError
from .checkpoints import ModelOptions, Notify, as_path, check_steps, deploy, from_bundle
from .checkpoints import set_threads, threshold_map_option
from .outputs import check_outputs


@dataclass(frozen=True, eq=False)
class EnergyReportResult:
    """``report`` is what ``out/energy.json`` holds; ``main_profile`` the one charted."""

    out: Path
    report: dict[str, Any]
    main_profile: str
    charts: tuple[str, ...] = ()    # the PNG files written in ``out``

    def summary_lines(self) -> list[str]:
        """The files written (the report itself prints as tables:
        :func:`sdm_neuro.energy.report.print_report`)."""
        return [f"wrote {self.out}/energy.json, {', '.join(self.charts)}"]


def energy_report(checkpoint: str | Path | None = None, *, weights: str = "auto",
                  snn_steps: int | None = None, img_size: int | None = None,
                  profile: Sequence[str | Path] | None = None, bundle: str | Path | None = None,
                  stats: str | Path | None = None, sampler: str | None = None,
                  steps: int | None = None, calls: int = 8, batch: int = 16, seed: int = 0,
                  threshold_scale: float | None = None,
                  threshold_map: str | Path | None = None, dataset: str | None = None,
                  data_dir: str | Path | None = None, threads: int | None = None,
                  out: str | Path = "out/energy", force: bool = False, quiet: bool = False,
                  mapping: str = "both", calibration_images: int | None = None,
                  device: str = "cpu", notify: Notify | None = None
                  ) -> EnergyReportResult:
    """Quantize the model as simulate does, measure its activity with the integer simulator on
    --calls denoising calls spread over the reverse process (or read it from simulate.json), and
    report per layer: neurons, fan-in, firing rate, synaptic operations, neuron updates, host
    MACs; energy by the papers' convention and by a fuller per-profile model; the ANN baseline;
    NeuroBench metrics; and whether the network fits each profile. --mapping both (the
    default) reports the composed and the graded Loihi 2 mappings side by side, measured on the
    same noised images. Writes energy.json and PNG charts.

    The model is ``checkpoint`` (default: the shipped one), or ``bundle``'s network with the float
    model of its checkpoint; ``stats`` is a simulate.json; ``profile`` names or TOML files
    (default: every shipped profile); ``out`` is replaced with ``force``; ``mapping``
    "composed", "graded" or "both". ``stats`` stands for the activity of the mapping its run
    simulated (its ``mapping`` key, composed when absent); another mapping is measured. (The
    first paragraph is the command's ``--help`` description.)"""
    from ..compiler.pipeline import build_integer_graph
    from ..compiler.quantize_graded import build_graded_graph
    from ..energy.mappings import selected
    from .simulation import read_simulate_stats
    from ..energy.report import energy_report as build_report
    from ..energy.report import save_charts
    from ..fileio import atomic_dir, write_json
    from ..hardware_profiles.profile import get_profile, shipped_profiles
    from ..simulators.device import integer_device

    out = Path(out)
    mappings = selected(mapping)
    check_outputs("energy-report", out=out, force=force)
    integer_device(device)  # before any work
    opts = ModelOptions(as_path(checkpoint), weights, snn_steps, img_size, threshold_scale,
                        dataset, as_path(data_dir), seed, as_path(bundle), notify,
                        calibration_images, progress=not quiet,
                        threshold_map=threshold_map_option(threshold_map))
    set_threads(threads)
    if opts.is_nir:
        raise UsageError(f"{opts.checkpoint}: energy-report covers U-Net denoisers; for a NIR "
                         "graph, `sdm-neuro export` reports cores, chips and constraints and "
                         "`sdm-neuro simulate` its spike counts.")
    if isinstance(profile, str | Path):
        profile = [profile]
    profiles = [get_profile(p) for p in (profile or shipped_profiles())]
    stats_mapping, activity = read_simulate_stats(stats) if stats is not None else (None, None)
    if stats_mapping is not None and stats_mapping not in mappings:
        raise UsageError(f"{stats}: the statistics are of the {stats_mapping} mapping, which "
                         f"--mapping {mapping} does not report.")
    chain = activity.chain if activity is not None else None
    sampler = sampler or (chain[0] if chain else "ddpm")
    steps = steps if steps is not None else (chain[1] if chain else 1000)
    if opts.bundle is not None:
        from ..data import load_dataset

        model, ckpt_path, dataset, graph = from_bundle(opts)
        check_steps(sampler, steps, graph.config.diffusion_steps)
        if model is None:
            raise UsageError(f"{opts.bundle}: the report counts the float model's layer ops "
                             f"(papers' convention, ANN baseline), and the bundle's checkpoint "
                             f"({ckpt_path}) is not available; pass it: energy-report CKPT "
                             "--bundle DIR.")
        train = load_dataset(dataset, split="train", data_dir=opts.data_dir,
                             img_size=graph.config.img_size)
        own = getattr(graph, "mapping", "composed")
        graphs = {own: graph} if own in mappings else {}
    else:
        model, ckpt, _, train, graph = deploy(opts, (sampler, steps), mapping=mappings[0])
        ckpt_path = ckpt.path
        graphs = {mappings[0]: graph}
    for m in mappings:  # the other mapping: built as deploy builds it, on the same calibration
        if m not in graphs:
            build = build_graded_graph if m == "graded" else build_integer_graph
            graphs[m] = build(model, opts.calibration(model, train.images))
            if opts.bundle is not None:
                opts.note(f"{opts.bundle}: the {m} mapping is not the bundle's; it is built from "
                          f"the checkpoint {ckpt_path}.")
    report = build_report(model, graphs.get("composed"), train.images, profiles,
                          sampler=sampler, steps=steps, calls=calls, batch=batch, seed=seed,
                          activity=activity if stats_mapping == "composed" else None,
                          graded=graphs.get("graded"),
                          graded_activity=activity if stats_mapping == "graded" else None,
                          checkpoint=str(ckpt_path), progress=not quiet, device=device)
    report = {"tool": f"sdm-neuro {__version__}",
              "bundle": None if opts.bundle is None else str(opts.bundle), **report}
    main_profile = "loihi2" if "loihi2" in [p.name for p in profiles] else profiles[0].name
    with atomic_dir(out, force=force) as tmp:
        write_json(tmp / "energy.json", report)
        charts = save_charts(report, tmp, main_profile)
    return EnergyReportResult(out, report, main_profile, tuple(p.name for p in charts))
