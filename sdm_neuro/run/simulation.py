"""The simulate job: sample with the bit-exact integer (Loihi 2 fixed point) denoiser next to the
float model, and the report it writes, ``simulate.json``, with its reader (``energy-report
--stats``). A NIR graph or a feed-forward bundle runs the feed-forward path instead
(:mod:`sdm_neuro.run.feedforward`), whose ``simulate.json`` has the feed-forward layout."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..energy.activity import Activity
from ..errors import UsageError
from ..fileio import sha256_file
from .checkpoints import ModelOptions, Notify, as_path, check_steps, deploy, from_bundle
from .checkpoints import sampler_moments, thresholds_record
from .checkpoints import set_threads, threshold_map_option
from .outputs import check_outputs

# simulate.json. Layout 1 (U-Net): tool, checkpoint, bundle, mode, sampler, steps, num, batch,
# seed, threshold_scale, calibration_images (None: the bundle's), seconds, graph,
# counters_per_call (neuron_updates, host_macs, synops, synops_total, spikes_total, events),
# layers (per population: shape, neurons, offset, its quantization, spikes_per_call, spike_rate,
# spike_agreement_with_float) and comparison; mapping
# ("composed" when absent). The graded mapping adds counters_per_call.payloads_total and, per
# relay, a layer entry with "relay" (its kind), scale, payloads_per_call and payload_rate. The file
# carries no version key: a report without one is layout 1. A feed-forward run writes its own
# layout (tool, nir, bundle, sha256, the run's report, input_data), which the reader refuses.
SIMULATE_REPORT = "simulate.json"
SIMULATE_REPORT_LAYOUT = 1
STATS_MAX_BYTES = 64 << 20  # simulate.json: per-layer statistics and per-call eps errors


@dataclass(frozen=True, eq=False)
class SimulateResult:
    """A U-Net simulation: ``report`` is what ``out/simulate.json`` holds."""

    out: Path
    report: dict[str, Any]
    graph: Any                      # the simulated DeployGraph (scheduled in hardware mode)
    samples: Any                    # integer samples [N, C, H, W]
    float_samples: Any | None       # the float model's from the same noise; None without it
    dataset: str
    seconds_integer: float
    seconds_float: float

    def table(self):
        """A rich table of the simulated graph with each layer's activity and agreement."""
        from ..ir.graded import GradedGraph, graded_table
        from ..ir.graph import graph_table

        show = graded_table if isinstance(self.graph, GradedGraph) else graph_table
        return show(self.graph, self.report["layers"])

    def summary_lines(self) -> list[str]:
        """Integer vs float (quality, PSNR), operations per call, timing, the files written."""
        from ..evaluation.evaluate import fmt_metric

        rep, no_float = self.report, self.float_samples is None
        quality, per_call = rep["comparison"]["quality"], rep["counters_per_call"]
        qi = quality["integer"]["rows"]["samples"]
        fid = f"FID ({self.dataset} classifier features) {fmt_metric(qi['fid'], '.2f')}"
        if no_float:
            first = (f"integer (no float model to compare with): confident "
                     f"{qi['confident']:.3f}; {fid}")
        else:
            qf = quality["float"]["rows"]["samples"]
            first = (f"integer vs float: final-image PSNR "
                     f"{rep['comparison']['final_psnr_db']:.2f} dB; confident "
                     f"{qi['confident']:.3f} vs {qf['confident']:.3f}; {fid} vs "
                     f"{fmt_metric(qf['fid'], '.2f')}")
        return [first,
                f"per call: {per_call['synops_total']:.3g} synaptic ops, "
                f"{per_call['spikes_total']:.3g} spikes; sampling took "
                f"{self.seconds_integer:.1f} s (integer) and {self.seconds_float:.1f} s (float)",
                f"wrote {self.out}/samples.png, {'' if no_float else 'float_samples.png, '}"
                "simulate.json, graph.pt"]


@dataclass(frozen=True, eq=False)
class FeedForwardSimulateResult:
    """A NIR graph or feed-forward bundle run: ``report`` is what ``out/simulate.json`` holds."""

    out: Path
    report: dict[str, Any]
    run: Any                        # FeedForwardRun: the float and integer spikes per layer

    def summary_lines(self) -> list[str]:
        """Per layer float vs integer, the output's agreement, the files written."""
        rep = self.report
        lines = [f"{name}: {layer['kind']} {layer['shape']} rate float "
                 f"{layer['rate_float']:.4f} integer {layer['rate_integer']:.4f}; spike "
                 f"agreement {layer['spike_agreement']:.4f} (vth {layer['vth']}, dv "
                 f"{layer['dv']})" for name, layer in rep["layers"].items()]
        out = rep["output"]
        return [*lines,
                f"output: argmax of spike counts agrees on {out['argmax_agreement']:.3f} of "
                f"{rep['batch']} samples; mean |count difference| "
                f"{out['count_abs_diff_mean']:.3f}",
                f"wrote {self.out}/simulate.json, spikes.npz, rates.png"]


def simulate(checkpoint: str | Path | None = None, *, weights: str = "auto",
             snn_steps: int | None = None, img_size: int | None = None, sampler: str = "ddpm",
             steps: int = 1000, num: int = 16, batch: int = 16, seed: int = 0,
             bundle: str | Path | None = None, mode: str = "ideal", mapping: str = "composed",
             compare_every: int = 10, calibration_images: int | None = None,
             device: str = "cpu", input: str | Path | None = None, time_steps: int = 32,
             rate: float = 0.2, dt: float | None = None, threshold_scale: float | None = None,
             threshold_map: str | Path | None = None,
             dataset: str | None = None, data_dir: str | Path | None = None,
             threads: int | None = None, workers: int | None = None,
             cluster: str | None = None, shard_size: int | None = None,
             out: str | Path = "out/simulate", force: bool = False,
             quiet: bool = False, notify: Notify | None = None,
             ) -> SimulateResult | FeedForwardSimulateResult:
    """Lower the model to a deployment graph, calibrate and quantize it to Lava's fixed point on
    training images, then sample with the integer simulator and with the float model from the
    same noise (the integer network on ``device``, bit-identical to the CPU; the float model,
    the host and the sampler on the CPU). Writes sample grids, the raw samples, the quantized
    graph and a JSON report (counters, per-layer statistics, per-call eps error, PSNR, quality
    of both).

    The model is ``checkpoint`` (default: the shipped one), or ``bundle``'s network; ``out`` is
    replaced with ``force``. A ``.nir`` checkpoint or a feed-forward bundle is run on ``input``
    (default: random spikes) instead, float vs integer layer by layer. (The first paragraph is
    the command's ``--help`` description.)

    ``workers`` / ``cluster``: both chains run in shards as Ray tasks (as in ``sample``); the
    samples and every counter equal the single-process run's."""
    out = Path(out)
    check_outputs("simulate", out=out, force=force)
    from ..simulators.device import integer_device

    integer_device(device)  # before any work
    opts = ModelOptions(as_path(checkpoint), weights, snn_steps, img_size, threshold_scale,
                        dataset, as_path(data_dir), seed, as_path(bundle), notify,
                        calibration_images, progress=not quiet,
                        threshold_map=threshold_map_option(threshold_map))
    set_threads(threads)
    from .feedforward import is_feedforward_bundle

    if opts.is_nir or is_feedforward_bundle(opts.bundle):
        return _simulate_feedforward(opts, out, force=force, input=as_path(input),
                                     time_steps=time_steps, num=num, rate=rate, dt=dt)
    from ..compiler.pipeline import IntegerDenoiser, psnr
    from ..simulators.integer import Counters
    from ..diffusion import LinearSchedule, generate
    from ..evaluation.evaluate import evaluate_images, get_classifier

    t0 = time.perf_counter()
    if opts.bundle is not None:
        model, ckpt_path, dataset, graph = from_bundle(opts)
        check_steps(sampler, steps, graph.config.diffusion_steps)
    else:
        model, ckpt, dataset, _, graph = deploy(opts, (sampler, steps), mapping=mapping)
        ckpt_path = ckpt.path
    cfg = graph.config
    t_build = time.perf_counter() - t0
    graph_built = graph  # what shards build their own denoisers from
    denoiser = IntegerDenoiser(graph, mode=mode, float_model=model, compare_every=compare_every,
                               device=device)
    graph = denoiser.graph  # scheduled (offsets, delays) in hardware mode
    schedule = LinearSchedule(num_steps=cfg.diffusion_steps)
    shape = (cfg.img_ch, cfg.img_size, cfg.img_size)
    moments = sampler_moments(sampler, steps, model, cfg, dataset, opts.data_dir,
                              progress=not quiet)
    common = {"batch_size": batch, "sampler": sampler, "steps": steps, "seed": seed,
              "moments": moments}
    scale_out = None
    if workers is None and cluster is None:
        t1 = time.perf_counter()
        x_int = generate(denoiser, schedule, num, shape, progress=not quiet, **common)
        t_int = time.perf_counter() - t1
        t1 = time.perf_counter()
        x_float = (None if model is None else
                   generate(model, schedule, num, shape, progress=not quiet, **common))
        t_float = time.perf_counter() - t1
        c, errors, agreement = denoiser.counters, denoiser.errors, denoiser.agreement
    else:
        x_int, x_float, parts, scale_out = _sharded(
            graph_built, model, ckpt_path, opts, out, mode=mode, compare_every=compare_every,
            device=device, workers=workers, cluster=cluster, shard_size=shard_size,
            threads=threads, progress=not quiet, num=num, shape=shape, **common)
        c = Counters.summed(p["counters"] for p in parts)
        errors = [e for p in parts for e in p["errors"]]
        agreement = {}
        for p in parts:
            for name, values in p["agreement"].items():
                agreement.setdefault(name, []).extend(values)
        t_int = sum(p["seconds"]["integer"] for p in parts)  # busy seconds over all workers
        t_float = sum(p["seconds"]["float"] for p in parts)

    clf, clf_name = get_classifier(dataset, img_size=cfg.img_size, data_dir=opts.data_dir,
                                   progress=not quiet)
    quality = {}
    for name, x in (("integer", x_int), ("float", x_float)):
        if x is None:
            continue
        rep = evaluate_images(x, dataset=dataset, classifier=clf, classifier_name=clf_name,
                              data_dir=opts.data_dir, kid_subsets=20, seed=seed, progress=False)
        quality[name] = rep.to_dict()
    calls = max(c.calls, 1)
    layers = {}
    qmeta = graph.meta["quantization"]
    graded = getattr(graph, "mapping", "composed") == "graded"
    for node in graph.relays if graded else ():
        layers[node.name] = {
            "relay": node.kind, "shape": list(node.shape), "neurons": node.neurons,
            "offset": node.offset, **qmeta.get(node.name, {"scale": node.scale}),
            "payloads_per_call": c.payloads[node.name] / calls,
            "payload_rate": c.payloads[node.name] / calls / (node.neurons * cfg.snn_steps * batch)}
    for pop in graph.populations:
        agree = agreement.get(pop.name, [])
        layers[pop.name] = {
            "shape": list(pop.shape), "neurons": pop.neurons, "offset": pop.offset,
            **qmeta[pop.name],
            "spikes_per_call": c.spikes[pop.name] / calls,
            "spike_rate": c.spikes[pop.name] / calls / (pop.neurons * cfg.snn_steps * batch),
            "spike_agreement_with_float": sum(agree) / len(agree) if agree else None}
    report = {
        "tool": f"sdm-neuro {__version__}", "checkpoint": str(ckpt_path),
        "bundle": None if opts.bundle is None else str(opts.bundle), "mode": mode,
        "device": str(denoiser.sim.device),
        "mapping": "graded" if graded else "composed",
        "sampler": sampler, "steps": steps, "num": num, "batch": batch,
        **({} if moments is None else {"eps_moments": {str(t): m for t, m in moments.items()}}),
        "seed": seed, **thresholds_record(opts, graph),
        "calibration_images": None if opts.bundle is not None else opts.calibration_count,
        "seconds": {"build": round(t_build, 2), "integer_sampling": round(t_int, 2),
                    "float_sampling": round(t_float, 2)},
        "graph": ({"populations": len(graph.populations), "relays": len(graph.relays),
                   "connections": len(graph.connections)} if graded else
                  {"populations": len(graph.populations), "projections": len(graph.projections)}),
        "counters_per_call": {"neuron_updates": c.neuron_updates / calls,
                              "host_macs": c.host_macs / calls,
                              "synops": {k: v / calls for k, v in c.synops.items()},
                              "synops_total": sum(c.synops.values()) / calls,
                              "spikes_total": sum(c.spikes.values()) / calls,
                              **({"payloads_total": sum(c.payloads.values()) / calls}
                                 if graded else {}),
                              "events": dict(c.events)},
        "layers": layers,
        "comparison": {"final_psnr_db": None if x_float is None else psnr(x_int, x_float),
                       "eps_per_call": errors, "quality": quality},
        **({} if scale_out is None else {"scale_out": scale_out}),
    }
    _write(out, force, report, x_int, x_float, graph)
    return SimulateResult(out, report, graph, x_int, x_float, dataset, t_int, t_float)


def _sharded(graph, model, ckpt_path, opts: ModelOptions, out: Path, *, mode: str,
             compare_every: int, device: str, workers: int | None, cluster: str | None,
             shard_size: int | None, threads: int | None, progress: bool, num: int,
             shape: tuple[int, ...], batch_size: int, sampler: str, steps: int, seed: int,
             moments: dict[int, float] | None):
    """(integer samples, float samples or None, each shard's counters and comparisons, the
    scale-out report) of simulate's two chains run in shards. The shards live in
    ``OUT.shards`` beside the output directory, which is written whole at the end."""
    from ..fileio import sha256_file
    from ..scaleout.sharded import sample_in_shards
    from ..scaleout.tasks import SamplingSpec, simulate_shard

    spec = SamplingSpec(graph.config.diffusion_steps, shape, batch_size, sampler, steps, seed,
                        device, threads or 1, moments)
    provenance = {"job": "simulate",
                  "model_sha256": sha256_file(ckpt_path) if ckpt_path else None,
                  "bundle": None if opts.bundle is None else str(opts.bundle),
                  "mapping": getattr(graph, "mapping", "composed"), "mode": mode,
                  **thresholds_record(opts, graph),
                  "calibration_images": None if opts.bundle is not None
                  else opts.calibration_count, "compare_every": compare_every}
    tensors, parts, report = sample_in_shards(
        simulate_shard, (graph, model, mode, compare_every), spec, num,
        directory=out.with_name(out.name + ".shards"), provenance=provenance,
        chains=1 if model is None else 2, workers=workers, cluster=cluster,
        shard_size=shard_size, progress=progress)
    return tensors["integer"], tensors.get("float"), parts, report


def _write(out: Path, force: bool, report: dict, x_int, x_float, graph) -> None:
    from ..fileio import atomic_dir, write_npy
    from ..images import save_grid

    with atomic_dir(out, force=force) as tmp:
        write_npy(tmp / "samples.npy", x_int.numpy())
        save_grid(x_int, tmp / "samples.png")
        if x_float is not None:
            write_npy(tmp / "float_samples.npy", x_float.numpy())
            save_grid(x_float, tmp / "float_samples.png")
        graph.save(tmp / "graph.pt")
        write_simulate_report(tmp, report)


def write_simulate_report(directory: Path, report: dict) -> Path:
    """``directory/simulate.json``, exactly ``report`` (no key added)."""
    from ..fileio import write_json

    path = directory / SIMULATE_REPORT
    write_json(path, report)
    return path


def _simulate_feedforward(opts: ModelOptions, out: Path, *, force: bool, input: Path | None,
                          time_steps: int, num: int, rate: float, dt: float | None
                          ) -> FeedForwardSimulateResult:
    from ..fileio import atomic_dir
    from .feedforward import load_network, save_run, simulate_feedforward

    net, qnet, x, desc = load_network(opts.checkpoint, opts.bundle,
                                      threshold_scale=opts.threshold_scale, input=input,
                                      time_steps=time_steps, num=num, rate=rate, seed=opts.seed,
                                      dt=dt)
    run = simulate_feedforward(net, x, qnet=qnet)
    src = opts.checkpoint if qnet is None else opts.bundle / "network.nir"
    report = {"tool": f"sdm-neuro {__version__}", "nir": str(src),
              "bundle": None if qnet is None else str(opts.bundle),
              "sha256": sha256_file(src), **run.report, "input_data": desc}
    with atomic_dir(out, force=force) as tmp:
        save_run(run, tmp)
        write_simulate_report(tmp, report)
    return FeedForwardSimulateResult(out, report, run)


# ---------------------------------------------------------------------------------------------
# the reader: simulate.json (layout 1) as the activity energy-report --stats uses
# ---------------------------------------------------------------------------------------------

def _stats_error(path: Path, key: str, expected: str, got: object) -> UsageError:
    text = repr(got)
    text = text if len(text) <= 80 else text[:77] + "..."
    return UsageError(f"{path}: {key} must be {expected}, got {text} (--stats takes the "
                      "simulate.json of sdm-neuro simulate).")


def _object(path: Path, parent: dict, key: str, where: str | None = None) -> dict:
    value = parent.get(key)
    if not isinstance(value, dict):
        raise _stats_error(path, where or key, "an object", value)
    return value


def _count(path: Path, value: object, key: str, *, integer: bool = False,
           positive: bool = False) -> float:
    """A counter: a finite number >= 0 (> 0 with ``positive``; an integer with ``integer``)."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and \
        math.isfinite(value) and (value > 0 if positive else value >= 0) and \
        (not integer or isinstance(value, int))
    if not ok:
        kind = "an integer" if integer else "a finite number"
        raise _stats_error(path, key, f"{kind} {'>= 1' if positive else '>= 0'}", value)
    return value


def read_simulate_report(path: str | Path) -> Activity:
    """The counters of a ``sdm-neuro simulate`` run (``simulate.json``, layout 1): the whole
    chain. Every value used is checked here (types, ranges); the names are checked against the
    model where the statistics are used (:func:`sdm_neuro.energy.activity.check_activity`)."""
    from ..diffusion.samplers import SAMPLERS
    from ..fileio import read_json_limited

    path = Path(path)
    rep = read_json_limited(path, what="a simulate.json written by sdm-neuro simulate",
                            error=UsageError, max_bytes=STATS_MAX_BYTES)
    if not isinstance(rep, dict):
        raise _stats_error(path, "the file", "a JSON object", type(rep).__name__)
    batch, num, steps = (int(_count(path, rep.get(k), k, integer=True, positive=True))
                         for k in ("batch", "num", "steps"))
    if rep.get("sampler") not in SAMPLERS:
        raise _stats_error(path, "sampler", f"one of {', '.join(SAMPLERS)}", rep.get("sampler"))
    per_call = _object(path, rep, "counters_per_call")
    layers = _object(path, rep, "layers")
    spikes = {}
    for name, layer in layers.items():
        if not isinstance(layer, dict):
            raise _stats_error(path, f"layers.{name}", "an object", layer)
        key = f"layers.{name}.spikes_per_call"
        spikes[name] = _count(path, layer.get("spikes_per_call"), key) / batch
    synops = {}
    for name, value in _object(path, per_call, "synops", "counters_per_call.synops").items():
        if name.count("->") != 1 or not all(name.split("->")):
            raise _stats_error(path, "counters_per_call.synops", 'keys "source->target"', name)
        synops[name] = _count(path, value, f"counters_per_call.synops.{name}") / batch
    counters = {k: _count(path, per_call.get(k), f"counters_per_call.{k}") / batch
                for k in ("neuron_updates", "host_macs")}
    return Activity(spikes, synops, counters["neuron_updates"], counters["host_macs"], (),
                    f"{path}: sdm-neuro simulate, {rep['sampler']} {steps} steps, "
                    f"{num} samples (every call of the chain)", (rep["sampler"], steps),
                    path=str(path))


def read_simulate_stats(path: str | Path) -> tuple[str, Any]:
    """(mapping, activity) of a ``simulate.json`` of either mapping: its ``mapping`` key (absent:
    composed, the files written before the graded mapping) says which graph the counters are of;
    a composed file gives :func:`read_simulate_report`'s Activity, a graded one a
    :class:`~sdm_neuro.energy.mappings.GradedMeasurement`."""
    from ..energy.graded import GradedActivity
    from ..energy.mappings import GradedMeasurement
    from ..ir.graded import MAPPINGS
    from ..fileio import read_json_limited

    path = Path(path)
    rep = read_json_limited(path, what="a simulate.json written by sdm-neuro simulate",
                            error=UsageError, max_bytes=STATS_MAX_BYTES)
    mapping = rep.get("mapping", "composed") if isinstance(rep, dict) else "composed"
    if mapping not in MAPPINGS:
        raise _stats_error(path, "mapping", f"one of {', '.join(MAPPINGS)}", mapping)
    if mapping == "composed":
        return mapping, read_simulate_report(path)
    # The graded layout: the composed one's keys, with relays among the layers (a "relay" key,
    # payloads_per_call instead of spikes_per_call), so the composed reader cannot read it.
    from ..diffusion.samplers import SAMPLERS

    batch, steps = (int(_count(path, rep.get(k), k, integer=True, positive=True))
                    for k in ("batch", "steps"))
    if rep.get("sampler") not in SAMPLERS:
        raise _stats_error(path, "sampler", f"one of {', '.join(SAMPLERS)}", rep.get("sampler"))
    per_call = _object(path, rep, "counters_per_call")
    spikes, payloads = {}, {}
    for name, layer in _object(path, rep, "layers").items():
        if not isinstance(layer, dict):
            raise _stats_error(path, f"layers.{name}", "an object", layer)
        key = "payloads_per_call" if "relay" in layer else "spikes_per_call"
        (payloads if "relay" in layer else spikes)[name] = \
            _count(path, layer.get(key), f"layers.{name}.{key}") / batch
    synops = {}
    for name, value in _object(path, per_call, "synops", "counters_per_call.synops").items():
        if name.count("->") != 1 or not all(name.split("->")):
            raise _stats_error(path, "counters_per_call.synops", 'keys "source->target"', name)
        synops[name] = _count(path, value, f"counters_per_call.synops.{name}") / batch
    updates, host = (_count(path, per_call.get(k), f"counters_per_call.{k}") / batch
                     for k in ("neuron_updates", "host_macs"))
    return mapping, GradedMeasurement(
        GradedActivity(spikes, payloads, synops, updates, host), (),
        f"{path}: sdm-neuro simulate (graded mapping), {rep['sampler']} {steps} steps, "
        f"{rep.get('num')} samples (every call of the chain)", (rep["sampler"], steps), str(path))
