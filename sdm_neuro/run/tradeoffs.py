"""The trade-off job: quality against energy per image over samplers, threshold guidance and
Loihi 2 mappings, on the integer model, with the float model from the same noise beside it;
``tradeoff.json`` and ``tradeoff.png`` (the Pareto front marked)."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import ConstraintError, UsageError
from .checkpoints import ModelOptions, Notify, as_path, check_mapping, check_steps, load
from .checkpoints import sampler_moments, set_threads, threshold_map_option
from .outputs import check_outputs

DEFAULT_SAMPLERS = "ddpm:1000,ddim:100,ddim:50,dpmpp:20,dpmpp:10"
DEFAULT_PROFILES = ("loihi2",)
# --search: the layer groups it tunes (globs over neuron names) and the thresholds it tries
SEARCH_GROUPS = {"down": ("neuron", "downblocks.*"), "middle": ("middleblocks.*",),
                 "up": ("upblocks.*",)}
SEARCH_VALUES = (0.996, 0.998, 1.0, 1.002, 1.004)
REFERENCE = ("ddpm", 1000)  # the papers' chain: the ratios are against it where it was run


def parse_samplers(text: str) -> list[tuple[str, int]]:
    """``--samplers ddpm:1000,dpmpp:20`` -> [(sampler, steps)] (names canonical)."""
    from ..diffusion.samplers import canonical_sampler

    out = []
    for item in text.split(","):
        name, sep, steps = item.strip().partition(":")
        if not sep or not steps.isdigit() or int(steps) < 1:
            raise UsageError(f"--samplers: {item.strip()!r} is not SAMPLER:STEPS "
                             "(e.g. ddim:100).")
        chain = (canonical_sampler(name), int(steps))
        if chain in out:
            raise UsageError(f"--samplers: {name}:{steps} is given twice.")
        out.append(chain)
    return out


def parse_levels(text: str) -> list[float]:
    """``--thresholds 1.0,0.998`` -> global thresholds (each finite and > 0)."""
    out = []
    for item in text.split(","):
        try:
            value = float(item)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            raise UsageError(f"--thresholds: {item.strip()!r} is not a finite number > 0.")
        out.append(value)
    return out


@dataclass(frozen=True, eq=False)
class TradeoffResult:
    """``report`` is what ``out/tradeoff.json`` holds."""

    out: Path
    report: dict[str, Any]

    def summary_lines(self) -> list[str]:
        main = self.report["main_profile"]
        lines = []
        for r in self.report["settings"]:
            e = r["energy_per_image_uj"].get(main)
            fid = r["integer"]["fid"]
            lines.append(f"{'*' if r['pareto'] else ' '} {r['label']:<38} FID "
                         f"{'n/a' if fid is None else f'{fid:8.2f}'}  confident "
                         f"{r['integer']['confident']:.3f}  {main} "
                         f"{'n/a' if e is None else f'{e:.4g} uJ'}/image")
        return [*lines, f"(* on the Pareto front of {main} energy per image and FID)",
                f"wrote {self.out}/tradeoff.json and {self.out}/tradeoff.png"]


def tradeoff(checkpoint: str | Path | None = None, *, weights: str = "auto",
             snn_steps: int | None = None, img_size: int | None = None,
             samplers: str = DEFAULT_SAMPLERS, thresholds: str = "1.0",
             threshold_map: str | Path | None = None, mapping: str = "composed",
             profile: Sequence[str] | None = None, num: int = 64, batch: int = 64,
             seed: int = 0, dataset: str | None = None, data_dir: str | Path | None = None,
             calibration_images: int | None = None, classifier: str | Path | None = None,
             threads: int | None = None, workers: int | None = None,
             cluster: str | None = None, shard_size: int | None = None,
             search: bool = False, search_num: int = 32, search_budget: int = 12,
             out: str | Path = "out/tradeoff", force: bool = False, quiet: bool = False,
             notify: Notify | None = None) -> TradeoffResult:
    """For every sampler setting, threshold guidance (each global value, and the per-layer map
    when given) and Loihi 2 mapping: sample --num images with the integer simulator and with the
    float model from the same noise, score both as evaluate does, and price the integer run's
    activity (every call of its chain, as simulate counts it) per image on each profile. Writes
    tradeoff.json and tradeoff.png (quality against energy per image, log scale, Pareto front
    marked). The quantization is calibrated once, at the model's own thresholds: every setting
    has the same integer weights, guidance moves only the thresholds (vth).

    ``workers`` / ``cluster``: every sampling run goes in shards over Ray (as in sample), kept in
    ``OUT.shards`` so that a rerun resumes.

    ``search``: a coordinate search for a per-layer threshold map (the down half with the stem,
    the middle, the up half; thresholds :data:`SEARCH_VALUES`) on the first sampler setting and
    mapping, ``search_budget`` evaluations of ``search_num`` integer samples scored by FID with
    seed ``seed + 1``, from threshold 1; the map found and threshold 1 are then scored on
    held-out noise (seed ``seed + 2``, ``num`` samples). Written as ``OUT/threshold_map.json``
    (for --threshold-map) and the report's ``search``."""
    from ..compiler.pipeline import build_integer_graph
    from ..compiler.quantize_graded import build_graded_graph
    from ..data import load_dataset
    from ..evaluation.evaluate import SAMPLES, get_classifier
    from ..evaluation.quality import evaluate_sets
    from ..evaluation.pareto import pareto_front
    from ..fileio import atomic_dir, sha256_file, write_json
    from ..hardware_profiles.profile import get_profile
    from ..models.thresholds import apply_threshold_map
    from ..scaleout.tasks import SamplingSpec

    out = Path(out)
    check_outputs("tradeoff", out=out, force=force)
    chains = parse_samplers(samplers)
    levels = parse_levels(thresholds)
    tmap = threshold_map_option(threshold_map)
    mappings = [m.strip() for m in mapping.split(",")]
    for m in mappings:
        check_mapping(m)
    for option, values in (("--thresholds", levels), ("--mapping", mappings)):
        if len(set(values)) != len(values):
            raise UsageError(f"{option}: a value is given twice ({', '.join(map(str, values))}).")
    profiles = [get_profile(p) for p in (profile or DEFAULT_PROFILES)]
    opts = ModelOptions(as_path(checkpoint), weights, snn_steps, img_size, None, dataset,
                        as_path(data_dir), seed, None, notify, calibration_images,
                        progress=not quiet)
    set_threads(threads)
    model, ckpt = load(opts)
    cfg = ckpt.config
    for sampler, steps in chains:
        check_steps(sampler, steps, cfg.diffusion_steps)
    dataset = dataset or ckpt.meta.get("dataset")
    if dataset is None:
        raise UsageError(f"{ckpt.path}: the checkpoint does not say which dataset it was trained "
                         "on; pass --dataset.")
    train = load_dataset(dataset, split="train", data_dir=opts.data_dir, img_size=cfg.img_size)
    build = {"composed": build_integer_graph, "graded": build_graded_graph}
    calibration = opts.calibration(model, train.images)
    own = model.thresholds()
    for m in mappings:  # the ranges, measured at the model's own thresholds
        build[m](model, calibration)
    guidance: list[tuple[str, float | None, Any]] = [(f"{v:g}", v, None) for v in levels]
    if tmap is not None:
        guidance.append((f"map {tmap.source}", None, tmap))
    shape = (cfg.img_ch, cfg.img_size, cfg.img_size)
    sampling = _Sampling(opts, shape, num=num, workers=workers, cluster=cluster,
                         shard_size=shard_size, shards=out.with_name(out.name + ".shards"),
                         provenance={"job": "tradeoff", "model_sha256": sha256_file(ckpt.path),
                                     "weights": ckpt.weights,
                                     "calibration_images": opts.calibration_count})
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    with atomic_dir(out, force=force) as tmp:
        clf, clf_name = get_classifier(dataset, img_size=cfg.img_size, data_dir=opts.data_dir,
                                       path=as_path(classifier),
                                       save_to=tmp / "classifier.pt", progress=not quiet)

        def score(images) -> dict[str, Any]:
            # evaluate's metrics on this set alone (its floor and ceiling rows are the same for
            # every setting), against the training images loaded once
            row = evaluate_sets({SAMPLES: images.float()}, train.images, clf,
                                classifier_name=clf_name, seed=seed).row(SAMPLES)
            return {"fid": row.fid, "kid": row.kid, "confident": row.confident,
                    "class_entropy": row.class_entropy}

        for gname, level, gmap in guidance:
            model.set_thresholds(own)
            if level is not None:
                model.set_threshold(level)
            if gmap is not None:
                apply_threshold_map(model, gmap)
            graphs = {m: build[m](model, calibration) for m in mappings}
            for sampler, steps in chains:
                moments = sampler_moments(sampler, steps, model, cfg, dataset, opts.data_dir,
                                          progress=not quiet)
                spec = SamplingSpec(cfg.diffusion_steps, shape, batch, sampler, steps, seed,
                                    "cpu", threads or 1, moments)
                tag = f"{sampler}-{steps}_th-{gname.replace('/', '_').replace(' ', '-')}"
                q_float = score(sampling.floats(model, spec, tag))
                for m in mappings:
                    x, counters, calls = sampling.integers(graphs[m], spec, f"{tag}_{m}")
                    rows.append({
                        "label": f"{sampler}:{steps} th={gname} {m}", "sampler": sampler,
                        "steps": steps, "calls_per_image": calls, "guidance": gname,
                        "mapping": m, "integer": score(x), "float": q_float,
                        **_energy(m, graphs[m], counters, num, calls, profiles)})
        main = profiles[0].name
        costs = [(r["energy_per_image_uj"][main], r["integer"]["fid"]) for r in rows]
        ok = [i for i, c in enumerate(costs) if None not in c]
        front = {ok[i] for i in pareto_front([costs[i] for i in ok])}
        ref = next((r for r in rows if (r["sampler"], r["steps"]) == REFERENCE
                    and r["guidance"] == f"{1.0:g}" and r["mapping"] == mappings[0]), None)
        for i, r in enumerate(rows):
            r["pareto"] = i in front
            if ref is not None:
                r["vs_reference"] = _versus(r, ref, main)
        report = {
            "tool": f"sdm-neuro {__version__}", "checkpoint": str(ckpt.path),
            "weights": ckpt.weights, "config": cfg.to_dict(), "dataset": dataset,
            "num": num, "batch": batch, "seed": seed, "main_profile": main,
            "profiles": [p.name for p in profiles],
            "threshold_map": None if tmap is None else tmap.to_dict(),
            "reference": None if ref is None else ref["label"],
            "quality": {"fid": f"FID in the features of the {dataset} classifier "
                               f"({clf_name}), not Inception", "confident":
                        "fraction of samples the classifier gives >= 0.9 probability"},
            "energy": "per image: the integer run's counters over every call of its chain "
                      "(simulate's measurement) priced by each profile's fuller model "
                      "(energy-report's); the papers' convention is in energy-report",
            "quantization": "calibrated once at the model's own thresholds; guidance moves "
                            "vth only (resolution 1/V of the threshold, V per layer in "
                            "simulate.json's layers)",
            "seconds": round(time.perf_counter() - t0, 1), "settings": rows}
        if search:
            report["search"] = _search(
                model, own, calibration, build[mappings[0]], chains[0], score, _Sampling(
                    opts, shape, num=search_num, workers=workers, cluster=cluster,
                    shard_size=None, shards=out.with_name(out.name + ".shards") / "search",
                    provenance=sampling.provenance), sampling, cfg, seed=seed, batch=batch,
                budget=search_budget, moments_of=lambda s, n: sampler_moments(
                    s, n, model, cfg, dataset, opts.data_dir, progress=not quiet))
            write_json(tmp / "threshold_map.json", report["search"]["map"])
            report["seconds"] = round(time.perf_counter() - t0, 1)
        write_json(tmp / "tradeoff.json", report)
        _plot(rows, main, tmp / "tradeoff.png")
    return TradeoffResult(out, report)


def _search(model, own: dict[str, float], calibration, build, chain: tuple[str, int], score,
            small: _Sampling, full: _Sampling, cfg, *, seed: int, batch: int, budget: int,
            moments_of) -> dict[str, Any]:
    """Coordinate search over :data:`SEARCH_GROUPS` x :data:`SEARCH_VALUES` (see tradeoff);
    every candidate is sampled from the same noise, so the comparisons are paired."""
    from ..models.thresholds import ThresholdMap, apply_threshold_map
    from ..scaleout.tasks import SamplingSpec

    sampler, steps = chain
    shape = (cfg.img_ch, cfg.img_size, cfg.img_size)

    def integer_fid(values: dict[str, float], sampling: _Sampling, run_seed: int, tag: str):
        model.set_thresholds(own)
        apply_threshold_map(model, _as_map(values))
        moments = moments_of(sampler, steps)
        spec = SamplingSpec(cfg.diffusion_steps, shape, batch, sampler, steps, run_seed, "cpu",
                            1, moments)
        return score(sampling.integers(build(model, calibration), spec, tag)[0])

    def _as_map(values: dict[str, float]) -> ThresholdMap:
        return ThresholdMap("search", tuple((g, values[k]) for k in SEARCH_GROUPS
                                            for g in SEARCH_GROUPS[k]))

    best = dict.fromkeys(SEARCH_GROUPS, 1.0)
    best_q = integer_fid(best, small, seed + 1, "search-0")
    trace = [{"values": dict(best), "fid": best_q["fid"]}]
    tried = {tuple(best.values())}
    while len(trace) < budget:
        improved = False
        for group in SEARCH_GROUPS:
            for value in SEARCH_VALUES:
                cand = {**best, group: value}
                if tuple(cand.values()) in tried or len(trace) >= budget:
                    continue
                tried.add(tuple(cand.values()))
                q = integer_fid(cand, small, seed + 1, f"search-{len(trace)}")
                trace.append({"values": cand, "fid": q["fid"]})
                if q["fid"] is not None and q["fid"] < best_q["fid"]:
                    best, best_q, improved = cand, q, True
        if not improved:
            break
    held = {"threshold 1": integer_fid(dict.fromkeys(SEARCH_GROUPS, 1.0), full, seed + 2,
                                       "held-out-1"),
            "map found": integer_fid(best, full, seed + 2, "held-out-map")}
    model.set_thresholds(own)
    return {"sampler": f"{sampler}:{steps}", "groups": {k: list(v) for k, v in
                                                        SEARCH_GROUPS.items()},
            "values_tried": list(SEARCH_VALUES), "budget": budget, "samples": small.num,
            "seed": seed + 1, "trace": trace, "best": best, "search_fid": best_q["fid"],
            "map": dict(_as_map(best).entries),
            "held_out": {"seed": seed + 2, "samples": full.num, **held}}


class _Sampling:
    """The job's sampling runs: in this process, or in shards over Ray (``workers`` /
    ``cluster``), each run's shards in its own folder under ``shards``."""

    def __init__(self, opts: ModelOptions, shape, *, num: int, workers: int | None,
                 cluster: str | None, shard_size: int | None, shards: Path,
                 provenance: dict) -> None:
        self.opts, self.shape, self.num = opts, shape, num
        self.workers, self.cluster, self.shard_size = workers, cluster, shard_size
        self.shards, self.provenance = shards, provenance
        self.sharded = workers is not None or cluster is not None

    def _shard(self, fn, shared, spec, tag: str, thresholds: dict[str, float]):
        from ..scaleout.sharded import sample_in_shards

        return sample_in_shards(fn, shared, spec, self.num, directory=self.shards / tag,
                                provenance={**self.provenance, "run": tag,
                                            "thresholds": thresholds}, chains=1,
                                workers=self.workers, cluster=self.cluster,
                                shard_size=self.shard_size, progress=self.opts.progress)

    def floats(self, model, spec, tag: str):
        from ..diffusion import LinearSchedule, generate
        from ..scaleout.tasks import float_shard

        if self.sharded:
            return self._shard(float_shard, (model,), spec, f"{tag}_float",
                               model.thresholds())[0]["samples"]
        return generate(model, LinearSchedule(num_steps=spec.diffusion_steps), self.num,
                        self.shape, batch_size=spec.batch, sampler=spec.sampler,
                        steps=spec.steps, seed=spec.seed, progress=self.opts.progress,
                        moments=spec.moments)

    def integers(self, graph, spec, tag: str):
        """(samples, the counters summed over every call and image, calls per image)."""
        from ..compiler.pipeline import IntegerDenoiser
        from ..diffusion import LinearSchedule, generate, model_call_steps
        from ..scaleout.tasks import simulate_shard
        from ..simulators.integer import Counters

        calls = len(model_call_steps(spec.sampler, spec.diffusion_steps, spec.steps))
        if self.sharded:
            tensors, parts, _ = self._shard(simulate_shard, (graph, None, "ideal", 10), spec,
                                            tag, {p.name: p.threshold for p in graph.populations})
            return tensors["integer"], Counters.summed(p["counters"] for p in parts), calls
        den = IntegerDenoiser(graph, mode="ideal")
        x = generate(den, LinearSchedule(num_steps=spec.diffusion_steps), self.num, self.shape,
                     batch_size=spec.batch, sampler=spec.sampler, steps=spec.steps,
                     seed=spec.seed, progress=self.opts.progress,
                     moments=spec.moments)
        return x, den.counters, calls


def _energy(mapping: str, graph, counters, num: int, calls: int, profiles) -> dict[str, Any]:
    """Energy per image (uJ) per profile of a run's counters (summed over ``num`` images x
    ``calls`` calls), by energy-report's fuller model of the mapping; activity per image."""
    from ..energy.activity import Activity
    from ..energy.graded import GradedActivity, graded_energy
    from ..energy.model import profile_energy

    n = num * calls
    if mapping == "graded":
        activity = GradedActivity.from_counters(counters, n)
    else:
        activity = Activity({k: v / n for k, v in counters.spikes.items()},
                            {k: v / n for k, v in counters.synops.items()},
                            counters.neuron_updates / n, counters.host_macs / n, (),
                            "the trade-off's sampling run")
    energy, why = {}, {}
    for p in profiles:
        try:
            e = (graded_energy(p, activity, graph) if mapping == "graded"
                 else profile_energy(p, activity, graph))
            energy[p.name] = e.total_pj * calls * 1e-6
        except ConstraintError as err:
            energy[p.name], why[p.name] = None, str(err)
    return {"energy_per_image_uj": energy,
            **({"energy_unavailable": why} if why else {}),
            "spikes_per_image": sum(counters.spikes.values()) / num,
            "synops_per_image": sum(counters.synops.values()) / num}


def _versus(row: dict, ref: dict, profile: str) -> dict[str, float | None]:
    """The setting against the reference chain: energy saving, FID ratio, confidence points."""
    e, e0 = row["energy_per_image_uj"][profile], ref["energy_per_image_uj"][profile]
    f, f0 = row["integer"]["fid"], ref["integer"]["fid"]
    return {"energy_saving": None if not (e and e0) else e0 / e,
            "fid_ratio": None if f is None or not f0 else f / f0,
            "confident_points": 100 * (row["integer"]["confident"]
                                       - ref["integer"]["confident"])}


def _plot(rows: list[dict], profile: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5))
    samplers = sorted({r["sampler"] for r in rows})
    colours = {s: plt.get_cmap("tab10")(i % 10) for i, s in enumerate(samplers)}
    markers = {"composed": "o", "graded": "s"}
    shown = [r for r in rows if r["energy_per_image_uj"][profile] is not None
             and r["integer"]["fid"] is not None]
    for r in shown:
        x, y = r["energy_per_image_uj"][profile], r["integer"]["fid"]
        ax.scatter(x, y, color=colours[r["sampler"]], marker=markers[r["mapping"]], s=50,
                   edgecolors="black" if r["pareto"] else "none", zorder=3)
        ax.annotate(f"{r['steps']} th={r['guidance']}", (x, y), fontsize=7,
                    xytext=(4, 3), textcoords="offset points")
    front = sorted((r["energy_per_image_uj"][profile], r["integer"]["fid"])
                   for r in shown if r["pareto"])
    if front:
        ax.step(*zip(*front), where="post", color="black", lw=1, ls="--", zorder=2,
                label="Pareto front")
    for s in samplers:
        ax.scatter([], [], color=colours[s], label=s)
    for m in sorted({r["mapping"] for r in shown}):
        ax.scatter([], [], color="grey", marker=markers[m], label=f"{m} mapping")
    ax.set_xscale("log")
    ax.set_xlabel(f"energy per image on {profile} (uJ, log)")
    ax.set_ylabel("FID (classifier features), integer model")
    ax.set_title("quality against energy per image")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
