"""The export job: an export bundle for Loihi 2 / NIR (a U-Net's quantized network, or a NIR
graph's), or the float denoiser as ONNX; the manifests, and the policy on hardware-profile
violations (:func:`constraints`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import ExportError, UsageError
from ..fileio import sha256_file
from .checkpoints import ModelOptions, Notify, apply_thresholds, as_path, deploy, load
from .checkpoints import check_mapping, or_one, set_threads, threshold_map_option
from .checkpoints import thresholds_record
from .outputs import check_outputs


@dataclass(frozen=True, eq=False)
class ExportResult:
    """What was written to ``out``. ``kind``: "unet" (a U-Net's bundle), "feedforward" (a NIR
    graph's bundle) or "onnx". ``manifest`` is ``out/manifest.json``'s content; ``profile`` and
    ``placement`` the constraint check (None for ONNX); ``check`` the ONNX check against
    PyTorch; ``seconds`` the U-Net bundle's build time; ``layers`` and ``spike_input`` describe
    a NIR graph's network."""

    kind: str
    target: str
    out: Path
    manifest: dict[str, Any]
    profile: Any = None
    placement: Any = None
    check: Any = None
    seconds: float | None = None
    layers: int | None = None
    spike_input: bool | None = None
    mapping: str = "composed"
    comparison: dict[str, Any] | None = None

    def summary_lines(self) -> list[str]:
        """What was written (the constraint check's lines come from ``placement``)."""
        if self.kind == "onnx":
            chk = self.check
            return [f"wrote {self.out}/denoiser.onnx and manifest.json; onnxruntime vs PyTorch: "
                    f"max |diff| {chk.max_abs_diff:.2e}, 99.9th percentile "
                    f"{chk.p999_abs_diff:.2e} (eps range {chk.eps_range:.2f})"]
        if self.kind == "feedforward":
            return [f"wrote {self.out}: manifest.json, {', '.join(self.manifest['files'])} "
                    f"({self.layers} layers, input {'spikes' if self.spike_input else 'current'})"]
        files = ", ".join(f"{n} ({v['bytes'] / 1e6:.1f} MB)"
                          for n, v in self.manifest["files"].items())
        lines = [f"wrote {self.out}: manifest.json, {files} in {self.seconds:.1f} s"]
        return lines + (comparison_lines(self.comparison, self.profile.name, self.mapping)
                        if self.comparison else [])


def comparison_lines(comparison: dict[str, dict], profile: str, mapping: str) -> list[str]:
    """Both mappings side by side on ``profile`` (:func:`mapping_figures`)."""
    def num(v) -> str:
        return "-" if v is None else f"{v:,}"

    lines = [f"mappings on {profile} (this bundle: {mapping}):",
             f"  {'mapping':<9} {'cores':>8} {'chips':>6} {'synapses stored':>16} "
             f"{'synaptic memory':>16}  bundle"]
    for name, f in comparison.items():
        if "error" in f:
            lines.append(f"  {name:<9} not computed: {f['error']}")
            continue
        mem = "-" if f["memory_bytes"] is None else (
            f"{f['memory_bytes'] / 2**20:,.1f} MiB" if f["memory_bytes"] >= 2**20 else
            f"{f['memory_bytes'] / 2**10:,.1f} KiB")
        size = f"{f['bundle_bytes'] / 1e6:.1f} MB" if f.get("bundle_bytes") else "-"
        lines.append(f"  {name:<9} {num(f['cores']):>8} {num(f['chips']):>6} "
                     f"{num(f['synapses']):>16} {mem:>16}  {size}"
                     + ("" if f["fits"] else f"  ({f['violations']} violation(s))"))
    return lines


def export(checkpoint: str | Path | None = None, *, weights: str = "auto",
           snn_steps: int | None = None, img_size: int | None = None, target: str = "loihi2",
           profile: str | None = None, allow_violations: bool = False,
           threshold_scale: float | None = None,
           threshold_map: str | Path | None = None, dataset: str | None = None,
           data_dir: str | Path | None = None, seed: int = 0, input: str | Path | None = None,
           time_steps: int = 32, rate: float = 0.2, dt: float | None = None, num: int = 16,
           mapping: str = "composed", calibration_images: int | None = None,
           threads: int | None = None, out: str | Path = "out/export", force: bool = False,
           quiet: bool = False, notify: Notify | None = None) -> ExportResult:
    """Write an export bundle, a directory: manifest.json (tool and format versions, checkpoint
    SHA-256, model config, quantization, profile, passes, timing, constraint check), network.nir
    (the quantized spiking network; integer parameters in documented metadata) and host.npz
    (time-embedding tables, decoder tail, sampler schedule). The network is checked against
    --profile (default loihi2); for --target loihi2 or an explicit --profile a violation is an
    error (exit code 8) unless --allow-violations. TSM models run on Lava through time-gated
    relays. --target onnx writes the float denoiser, checked against PyTorch with onnxruntime.
    --mapping graded writes the graded Loihi 2 mapping instead (shared conv kernels, graded-spike
    relays; not for TSM models), checked with the graded placement; a profile that cannot run
    it (no graded spikes or shared kernels) is refused (exit code 8, even with
    --allow-violations). The summary shows both mappings on the profile side by side.

    The model is ``checkpoint`` (default: the shipped one); a ``.nir`` checkpoint is a
    feed-forward SNN, calibrated on ``input`` or ``num`` random spike samples, whose bundle
    holds its lava-dl netx HDF5 for target loihi2. A violation is a
    :class:`~sdm_neuro.errors.ConstraintError`; ``out`` is replaced with ``force``. (The first
    paragraph is the command's ``--help`` description.)"""
    check_mapping(mapping)
    out = Path(out)
    check_outputs("export", out=out, force=force)
    opts = ModelOptions(as_path(checkpoint), weights, snn_steps, img_size, threshold_scale,
                        dataset, as_path(data_dir), seed, None, notify, calibration_images,
                        progress=not quiet,
                        threshold_map=threshold_map_option(threshold_map))
    set_threads(threads)
    if mapping == "graded" and (opts.is_nir or target == "onnx"):
        raise UsageError(f"--mapping graded maps a U-Net denoiser to Loihi 2 (target loihi2 or "
                         f"nir); {'a NIR graph' if opts.is_nir else '--target onnx'} has no "
                         "mapping.")
    if mapping == "graded":
        return _export_graded(opts, target, profile, allow_violations, out, force)
    if opts.is_nir:
        return _export_feedforward(opts, target, profile, allow_violations, out, force,
                                   input=as_path(input), time_steps=time_steps, num=num,
                                   rate=rate, dt=dt)
    if target == "onnx":
        return _export_onnx(opts, target, out, force)
    return _export_bundle(opts, target, profile, allow_violations, out, force)


def get_export_profile(profile: str | Path | None):
    """The hardware profile an export is checked against: ``profile``, default loihi2."""
    from ..hardware_profiles.profile import get_profile

    return get_profile(profile or "loihi2")


def constraints(target: str, profile: str | Path | None, allow_violations: bool, placement,
                source: Path):
    """(profile, placement); a violation is an error for target loihi2 or an explicit
    ``profile`` unless ``allow_violations`` (a NIR export targets no chip: its check against
    Loihi 2 is information)."""
    from ..errors import ConstraintError

    prof = get_export_profile(profile)
    enforce = target == "loihi2" or profile is not None
    if placement.violations and enforce and not allow_violations:
        lines = "\n  ".join(str(v) for v in placement.violations)
        raise ConstraintError(f"{source}: the network does not fit profile {prof.name} "
                              f"({prof.path}):\n  {lines}\n(--allow-violations writes the "
                              "bundle anyway)")
    return prof, placement


def _export_feedforward(opts: ModelOptions, target: str, profile: str | None,
                        allow_violations: bool, out: Path, force: bool, *, input: Path | None,
                        time_steps: int, num: int, rate: float, dt: float | None
                        ) -> ExportResult:
    from ..compiler.quantize_feedforward import quantize_feedforward
    from ..export.feedforward_bundle import write_feedforward_bundle
    from ..fileio import atomic_dir
    from ..hardware_profiles.constraints import check_feedforward
    from .feedforward import load_network

    if target == "onnx":
        raise UsageError(f"{opts.checkpoint}: --target onnx exports U-Net denoisers; a NIR "
                         "graph exports to loihi2 (netx HDF5) or nir.")
    net, _, x, desc = load_network(opts.checkpoint, None, threshold_scale=opts.threshold_scale,
                                   input=input, time_steps=time_steps, num=num, rate=rate,
                                   seed=opts.seed, dt=dt)
    qnet = quantize_feedforward(net, x)
    prof, placement = constraints(target, profile, allow_violations,
                                  check_feedforward(qnet, get_export_profile(profile)),
                                  opts.checkpoint)
    with atomic_dir(out, force=force) as tmp:
        manifest = write_feedforward_bundle(qnet, tmp, {
            "target": target, "tool": f"sdm-neuro {__version__}",
            "source": {"path": str(opts.checkpoint), "sha256": sha256_file(opts.checkpoint),
                       "read_as": net.source},
            "calibration": desc, "profile": {"name": prof.name, "path": str(prof.path)},
            "constraints": placement.to_dict()}, netx=target == "loihi2")
    return ExportResult("feedforward", target, out, manifest, prof, placement,
                        layers=len(net.layers), spike_input=qnet.spike_input)


def onnx_manifest(target: str, ckpt, onnx_path: Path, check, threshold_scale: float | None
                  ) -> dict[str, Any]:
    """``manifest.json`` of an ONNX export: ``ckpt`` the checkpoint exported (its path and
    config), ``check`` the comparison with PyTorch."""
    import onnx
    import torch

    from ..export.bundle import BUNDLE_FORMAT, BUNDLE_VERSION

    return {
        "format": BUNDLE_FORMAT, "format_version": BUNDLE_VERSION, "target": target,
        "tool": f"sdm-neuro {__version__}", "torch": torch.__version__,
        "onnx": onnx.__version__, "checkpoint": str(ckpt.path),
        "checkpoint_sha256": sha256_file(ckpt.path), "model_config": ckpt.config.to_dict(),
        "threshold_scale": or_one(threshold_scale),
        "files": {"denoiser.onnx": {
            "sha256": sha256_file(onnx_path), "bytes": onnx_path.stat().st_size,
            "what": "float denoiser, one call: inputs x_t [B, C, H, W] float32 and t [B] "
                    "int64, output eps"}},
        "check_against_pytorch": check.to_dict()}


def _export_onnx(opts: ModelOptions, target: str, out: Path, force: bool) -> ExportResult:
    from ..export.onnx import check_onnx, export_onnx
    from ..fileio import atomic_dir, write_json

    model, ckpt = load(opts)
    apply_thresholds(opts, model)
    with atomic_dir(out, force=force) as tmp:
        onnx_path = export_onnx(model, tmp / "denoiser.onnx")
        chk = check_onnx(model, onnx_path, seed=opts.seed)
        if not chk.ok:
            raise ExportError(f"{onnx_path.name}: onnxruntime disagrees with PyTorch beyond the "
                              f"tolerances: {chk.to_dict()}")
        manifest = onnx_manifest(target, ckpt, onnx_path, chk, opts.threshold_scale)
        write_json(tmp / "manifest.json", manifest)
    return ExportResult("onnx", target, out, manifest, check=chk)


def _manifest_head(target: str, ckpt, dataset: str, graph) -> dict[str, Any]:
    """What the manifests of both mappings' bundles open with: tool, checkpoint, dataset, model."""
    import torch

    return {"target": target, "tool": f"sdm-neuro {__version__}", "torch": torch.__version__,
            "checkpoint": {"path": str(ckpt.path), "sha256": sha256_file(ckpt.path),
                           "kind": ckpt.kind, "weights": ckpt.weights},
            "dataset": dataset, "model_config": graph.config.to_dict()}


def _quantization_head(dataset: str, opts: ModelOptions, graph) -> dict:
    from ..compiler.pipeline import CALIBRATION

    return {**thresholds_record(opts, graph),
            "calibration": {"dataset": dataset, "seed": opts.seed,
                            "images": opts.calibration_count,
                            "batch_size": CALIBRATION["batch_size"],
                            "dtype": graph.meta.get("calibration_dtype"),
                            "what": "training images noised at uniformly random t"}}


def bundle_manifest(target: str, ckpt, dataset: str, graph, opts: ModelOptions, profile,
                    placement) -> dict[str, Any]:
    """The manifest of a U-Net bundle, before :func:`~sdm_neuro.export.bundle.write_bundle`
    adds the format, the files and the network's description."""
    from ..compiler.pipeline import LOWERING_PASSES
    from ..ir.graph import call_length, relayed

    return {
        **_manifest_head(target, ckpt, dataset, graph),
        "quantization": {**_quantization_head(dataset, opts, graph),
                         "populations": graph.meta.get("quantization", {})},
        "lowering_passes": list(LOWERING_PASSES),
        "timing": {"dt": "one Loihi 2 time step", "call_length": call_length(graph),
                   "offsets": {p.name: p.offset for p in graph.populations},
                   "reset": "LIFReset at each population's window start; reset to zero",
                   "tsm": None if not any(relayed(p) for p in graph.projections) else (
                       "projections with per-step weights run through time-gated relays (one "
                       "per source window step, +1 step of latency) and clock neurons; the "
                       "per-step bias is set by the host before each step")},
        "profile": {"name": profile.name, "path": str(profile.path)},
        "constraints": placement.to_dict(),
    }


def _export_bundle(opts: ModelOptions, target: str, profile: str | None, allow_violations: bool,
                   out: Path, force: bool) -> ExportResult:
    from ..compiler.schedule import schedule
    from ..export.bundle import write_bundle
    from ..fileio import atomic_dir
    from ..hardware_profiles.constraints import check

    t0 = time.perf_counter()
    _, ckpt, dataset, _, graph = deploy(opts)
    graph = schedule(graph)
    if target == "loihi2":
        from ..export.lava_runtime import check_lava_deployable

        check_lava_deployable(graph)
    prof, placement = constraints(target, profile, allow_violations,
                                  check(graph, get_export_profile(profile)), ckpt.path)
    manifest = bundle_manifest(target, ckpt, dataset, graph, opts, prof, placement)
    with atomic_dir(out, force=force) as tmp:
        manifest = write_bundle(graph, tmp, manifest)
    return ExportResult("unet", target, out, manifest, prof, placement,
                        seconds=time.perf_counter() - t0)


# -- the graded mapping ------------------------------------------------------------------------

def mapping_figures(placement, synapses: int, memory_bytes: int | None) -> dict[str, Any]:
    """One mapping's figures on a profile, for the side-by-side summary and the manifest."""
    return {"cores": placement.total_cores, "chips": placement.chips, "synapses": synapses,
            "memory_bytes": memory_bytes, "fits": placement.fits,
            "violations": len(placement.violations)}


def composed_figures(model, train, opts: ModelOptions, profile) -> dict[str, Any]:
    """The composed mapping of the same model on ``profile``: its placement, stored synapses
    and their memory at the profile's weight precision (the composed cost model's rule)."""
    from ..compiler.pipeline import build_integer_graph
    from ..compiler.schedule import schedule
    from ..errors import SdmNeuroError
    from ..hardware_profiles.constraints import NEEDED_WEIGHT_BITS, check
    from ..ir.connectivity import stored_synapses
    from ..ir.graph import HOST

    try:
        graph = schedule(build_integer_graph(model, opts.calibration(model, train.images)))
    except SdmNeuroError as e:  # the graded bundle does not need it: say why it is missing
        return {"error": str(e)}
    shapes = {p.name: p.shape for p in graph.populations}
    synapses = sum(stored_synapses(p, shapes[p.src]) for p in graph.projections if p.dst != HOST)
    bits = profile.limits["weight_bits"].value if "weight_bits" in profile.limits else \
        NEEDED_WEIGHT_BITS
    return mapping_figures(check(graph, profile), synapses, synapses * bits // 8)


def graded_manifest(target: str, ckpt, dataset: str, graph, opts: ModelOptions, profile,
                    placement, comparison: dict) -> dict[str, Any]:
    """The manifest of a graded bundle, before
    :func:`~sdm_neuro.export.graded_bundle.write_graded_bundle` adds the format, the files and
    the network's description."""
    nodes = graph.nodes()
    return {
        **_manifest_head(target, ckpt, dataset, graph),
        "quantization": {**_quantization_head(dataset, opts, graph),
                         "payload_bits": graph.meta.get("payload_bits"),
                         "nodes": graph.meta.get("quantization", {})},
        "lowering_passes": ["lower_graded", "calibrate", "quantize_graded",
                            "schedule_graded"],
        "timing": {"dt": "one Loihi 2 time step",
                   "call_length": max(n.offset for n in nodes) + graph.config.snn_steps,
                   "offsets": {n.name: n.offset for n in nodes},
                   "reset": "LIFReset at each IF layer's window start; reset to zero; relays "
                            "keep no state"},
        "profile": {"name": profile.name, "path": str(profile.path)},
        "constraints": placement.to_dict(), "mappings": comparison,
    }


def _export_graded(opts: ModelOptions, target: str, profile: str | None,
                   allow_violations: bool, out: Path, force: bool) -> ExportResult:
    from ..compiler.schedule_graded import schedule_graded
    from ..errors import ConstraintError
    from ..export.graded_bundle import bundle_bytes, write_graded_bundle
    from ..hardware_profiles.graded import graded_placement, graded_support

    prof = get_export_profile(profile)
    why = graded_support(prof)  # before any work: no placement exists, so no override either
    if why:
        raise ConstraintError(f"{why}; export it with --mapping composed.")
    t0 = time.perf_counter()
    model, ckpt, dataset, train, graph = deploy(opts, mapping="graded")
    graph = schedule_graded(graph)
    if target == "loihi2":
        from ..export.lava_graded import check_graded_deployable

        check_graded_deployable(graph)
    prof, placement = constraints(target, profile, allow_violations,
                                  graded_placement(graph, prof), ckpt.path)
    comparison = {"composed": composed_figures(model, train, opts, prof),
                  "graded": {**mapping_figures(placement,
                                               sum(n.synapses for n in placement.nodes),
                                               placement.memory_words * 8),
                             "colocated_cores": placement.colocated_cores}}
    manifest = write_graded_bundle(graph, out, graded_manifest(
        target, ckpt, dataset, graph, opts, prof, placement, comparison), force=force)
    comparison["graded"]["bundle_bytes"] = bundle_bytes(manifest)
    return ExportResult("unet", target, out, manifest, prof, placement,
                        seconds=time.perf_counter() - t0, mapping="graded",
                        comparison=comparison)
