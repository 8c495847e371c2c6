"""The evaluate job: sample quality (classifier-feature FID / KID, recognisability, floor and
ceiling), written as ``report.json`` and PNGs."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import UsageError
from .checkpoints import ModelOptions, Notify, as_path, check_steps, float_denoiser, load
from .checkpoints import apply_thresholds, or_one, sampler_moments, set_threads
from .checkpoints import threshold_map_option
from .outputs import check_outputs


@dataclass(frozen=True, eq=False)
class EvaluateResult:
    """``report`` is the evaluation (an :class:`~sdm_neuro.evaluation.evaluate.EvalReport`;
    ``out/report.json`` holds it with the run's source); ``dataset`` the one compared with."""

    out: Path
    report: Any
    dataset: str

    def summary_lines(self) -> list[str]:
        """The feature space, one line per scored set, the files written."""
        from ..evaluation.evaluate import summary_lines
        from ..evaluation.quality import NOT_INCEPTION

        return [NOT_INCEPTION.format(dataset=self.dataset, dim=self.report.feature_dim),
                *summary_lines(self.report), f"wrote {self.out}/report.json, samples.png, "
                "classes.png"]


def evaluate(checkpoint: str | Path | None = None, *, weights: str = "auto",
             snn_steps: int | None = None, img_size: int | None = None, sampler: str = "ddpm",
             steps: int = 1000, num: int = 250, batch: int = 250, seed: int = 0,
             device: str = "cpu", threshold: float | None = None,
             threshold_map: str | Path | None = None,
             samples: str | Path | None = None, integer: str | None = None,
             mode: str | None = None, calibration_images: int | None = None,
             dataset: str | None = None,
             data_dir: str | Path | None = None, classifier: str | Path | None = None,
             inception_weights: str | Path | None = None, fid_stats: str | Path | None = None,
             kid_subsets: int = 100,
             kid_subset_size: int = 1000, threads: int | None = None,
             workers: int | None = None, cluster: str | None = None,
             shard_size: int | None = None,
             out: str | Path = "out/evaluate", force: bool = False, quiet: bool = False,
             notify: Notify | None = None) -> EvaluateResult:
    """Generate samples (or read --samples) and score them against the training set: FID and KID
    in the feature space of a small classifier trained by sdm-neuro on the same dataset (NOT
    Inception FID; Inception FID is added with --inception-weights), the fraction of samples
    classified with confidence >= 0.9 and the entropy of the predicted classes. Held-out real
    images (floor) and noise (ceiling) are scored in the same run.

    The samples come from the float model of ``checkpoint`` (default: the shipped one), from its
    bit-exact integer simulator in mapping ``integer`` (quantized as ``simulate`` does; its
    integer network on ``device``), or from ``samples`` (.npy [N, C, H, W] in [-1, 1]). Writes
    ``report.json``, ``samples.png``, ``classes.png`` (and ``samples.npy``, and a classifier
    trained now) into ``out`` (replaced with ``force``). (The first paragraph is the command's
    ``--help`` description.)

    ``fid_stats``: a dataset's Inception statistics in pytorch-fid's ``.npz`` format (``mu``,
    ``sigma``): the Inception FIDs are measured against them, and the samples' statistics are
    written as ``fid_stats.npz`` in the same format (needs ``inception_weights``).

    ``workers`` / ``cluster``: the samples are drawn in shards as Ray tasks (as in ``sample``;
    the shards live in ``OUT.shards``), the same samples as one process."""
    import numpy as np

    from ..diffusion import LinearSchedule, generate
    from ..evaluation.evaluate import (
        check_kid_options,
        class_histogram_png,
        evaluate_images,
        get_classifier,
        report_dict,
    )
    from ..fileio import atomic_dir, write_json, write_npy
    from ..images import save_grid

    out = Path(out)
    check_outputs("evaluate", out=out, force=force)
    data_dir, samples = as_path(data_dir), as_path(samples)
    check_kid_options(kid_subsets, kid_subset_size)  # before sampling, not after
    for given, option in ((calibration_images, "--calibration-images"), (mode, "--mode")):
        if integer is None and given is not None:
            raise UsageError(f"{option} is an option of the integer model: add --integer.")
    if integer is not None:
        from ..simulators.device import integer_device

        integer_device(device)  # before any work
    if integer is not None and samples is not None:
        raise UsageError("--integer samples with the integer simulator; --samples scores "
                         "given images: choose one.")
    reference = None
    if fid_stats is not None:
        from ..evaluation.fid_stats import read_fid_stats
        from ..evaluation.inception import FEATURE_DIM

        if inception_weights is None:
            raise UsageError("--fid-stats: Inception statistics need the Inception network; "
                             "add --inception-weights (local pytorch-fid weights).")
        reference = read_fid_stats(fid_stats)  # before sampling, not after
        if reference[0].shape[0] != FEATURE_DIM:
            raise UsageError(f"{fid_stats}: statistics of {reference[0].shape[0]}-dimensional "
                             f"features; Inception's pool features have {FEATURE_DIM}.")
    sharded = workers is not None or cluster is not None
    if sharded and samples is not None:
        raise UsageError("--workers / --cluster spread the sampling; --samples scores given "
                         "images and samples nothing.")
    set_threads(threads)
    t0 = time.perf_counter()
    with atomic_dir(out, force=force) as tmp:
        if samples is not None:
            from ..evaluation.evaluate import read_samples

            images = read_samples(samples)
            source: dict[str, Any] = {"samples": str(samples)}
            dataset = dataset or "digits"
        else:
            opts = ModelOptions(as_path(checkpoint), weights, snn_steps, img_size, threshold,
                                dataset, data_dir, seed, None, notify, calibration_images,
                                progress=not quiet,
                                threshold_map=threshold_map_option(threshold_map))
            if integer is not None:
                mode = mode or "ideal"
                denoiser, ckpt, graph, model = _integer_denoiser(opts, sampler, steps, integer,
                                                                 mode, device)
                dataset = dataset or ckpt.meta.get("dataset")
            else:
                model, ckpt = load(opts)
                apply_thresholds(opts, model)
                denoiser = float_denoiser(model, device)
                dataset = dataset or ckpt.meta.get("dataset")
            cfg = ckpt.config
            check_steps(sampler, steps, cfg.diffusion_steps)
            if dataset is None:
                raise UsageError(f"{ckpt.path}: the checkpoint does not say which dataset it was "
                                 "trained on; pass --dataset.")
            shape = (cfg.img_ch, cfg.img_size, cfg.img_size)
            moments = sampler_moments(sampler, steps, model, cfg, dataset, as_path(data_dir),
                                      progress=not quiet)
            scale_out = None
            if not sharded:
                images = generate(denoiser, LinearSchedule(num_steps=cfg.diffusion_steps), num,
                                  shape, batch_size=batch, sampler=sampler, steps=steps,
                                  seed=seed, progress=not quiet, moments=moments)
            else:
                from ..fileio import sha256_file
                from ..scaleout.sharded import sample_in_shards
                from ..scaleout.tasks import SamplingSpec, float_shard, simulate_shard

                spec = SamplingSpec(cfg.diffusion_steps, shape, batch, sampler, steps, seed,
                                    device, threads or 1, moments)
                provenance = {"job": "evaluate", "model_sha256": sha256_file(ckpt.path),
                              "weights": ckpt.weights, "threshold": or_one(threshold),
                              "thresholds": model.thresholds(),
                              "integer": integer, "mode": mode,
                              "calibration_images": opts.calibration_count if integer else None}
                fn, shared, key = ((simulate_shard, (graph, None, mode, 10), "integer")
                                   if integer is not None else (float_shard, (model,), "samples"))
                tensors, _, scale_out = sample_in_shards(
                    fn, shared, spec, num, directory=out.with_name(out.name + ".shards"),
                    provenance=provenance, chains=1, workers=workers, cluster=cluster,
                    shard_size=shard_size, progress=not quiet)
                images = tensors[key]
            source = {"checkpoint": str(ckpt.path), "weights": ckpt.weights,
                      "config": cfg.to_dict(), "sampler": sampler, "steps": steps,
                      "num": num, "seed": seed, "threshold": or_one(threshold),
                      "notes": list(ckpt.notes),
                      **({} if integer is None else {"integer": {
                          "mapping": integer, "mode": mode, "device": str(denoiser.sim.device),
                          "calibration_images": opts.calibration_count}}),
                      **({} if scale_out is None else {"scale_out": scale_out})}
            arr = images.numpy().astype(np.float32)
            write_npy(tmp / "samples.npy", arr)
        t_sample = time.perf_counter() - t0
        inc_stats: dict = {}
        clf, clf_name = get_classifier(dataset, img_size=images.shape[-1], data_dir=data_dir,
                                       path=as_path(classifier), save_to=tmp / "classifier.pt",
                                       progress=not quiet)
        report = evaluate_images(images, dataset=dataset, classifier=clf,
                                 classifier_name=clf_name, data_dir=data_dir,
                                 inception_weights=as_path(inception_weights),
                                 kid_subsets=kid_subsets, kid_subset_size=kid_subset_size,
                                 seed=seed, inception_reference=reference,
                                 inception_stats=inc_stats, progress=not quiet)
        if fid_stats is not None:
            from ..evaluation.evaluate import SAMPLES
            from ..evaluation.fid_stats import write_fid_stats

            written = SAMPLES in inc_stats  # (not for a single image: no covariance)
            if written:
                write_fid_stats(tmp / "fid_stats.npz", *inc_stats[SAMPLES])
            source["fid_stats"] = {"reference": str(fid_stats), "samples": (
                "fid_stats.npz (mu, sigma; pytorch-fid's format)" if written
                else "not written: FID needs at least 2 samples")}
        save_grid(images[:100], tmp / "samples.png")
        class_histogram_png(tmp / "classes.png", report, clf.class_names)
        write_json(tmp / "report.json", report_dict(
            report, tool=f"sdm-neuro {__version__}", **source,
            classifier_meta=clf.meta, seconds_sampling=round(t_sample, 1),
            seconds_total=round(time.perf_counter() - t0, 1)))
    return EvaluateResult(out, report, dataset)


def _integer_denoiser(opts: ModelOptions, sampler: str, steps: int, mapping: str, mode: str,
                      device: str):
    """(the integer denoiser of ``opts``'s model, quantized as ``simulate`` does; its
    checkpoint; the quantized graph before any scheduling, which shards build theirs from; the
    float model)."""
    from ..compiler.pipeline import IntegerDenoiser
    from ..training import resolve_device
    from .checkpoints import deploy

    model, ckpt, _, _, graph = deploy(opts, (sampler, steps), mapping=mapping)
    return IntegerDenoiser(graph, mode=mode, device=resolve_device(device)), ckpt, graph, model
