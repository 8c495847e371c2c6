"""The sample job: images from the float model, written as a PNG grid, a ``.npy`` array and
``sample.json``."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from .checkpoints import ModelOptions, Notify, as_path, check_steps, float_denoiser, load
from .checkpoints import apply_thresholds, or_one, sampler_moments, set_threads
from .checkpoints import threshold_map_option
from .outputs import check_outputs


@dataclass(frozen=True, eq=False)
class SampleResult:
    """``report`` is what ``out/sample.json`` holds; ``seconds`` the sampling time."""

    out: Path
    samples: Any        # [N, C, H, W] in [-1, 1]
    report: dict[str, Any]
    seconds: float

    def summary_lines(self) -> list[str]:
        return [f"wrote {self.report['num']} samples to {self.out}/samples.png and "
                f"{self.out}/samples.npy ({self.seconds:.1f} s)"]


def sample(checkpoint: str | Path | None = None, *, weights: str = "auto",
           snn_steps: int | None = None, img_size: int | None = None, sampler: str = "ddpm",
           steps: int = 1000, num: int = 16, batch: int = 16, seed: int = 0,
           device: str = "cpu", threshold: float | None = None,
           threshold_map: str | Path | None = None, threads: int | None = None,
           workers: int | None = None, cluster: str | None = None,
           shard_size: int | None = None, dataset: str | None = None,
           data_dir: str | Path | None = None, out: str | Path = "out/sample",
           quiet: bool = False, notify: Notify | None = None) -> SampleResult:
    """Generate ``num`` images with the float model (default: the shipped one); write
    ``samples.png``, ``samples.npy`` and ``sample.json`` into the directory ``out``.

    With ``workers`` or ``cluster`` the samples are cut into shards of ``shard_size`` (whole
    batches; default one batch) run as Ray tasks, on a local instance with ``workers`` slots or
    on the cluster at ``cluster``; each finished shard is kept in ``out/shards`` and a rerun
    skips it. The samples are the single-process ones, bit for bit. ``dataset`` (default: the
    checkpoint's) gives the analytic sampler the training images of its variance."""
    import numpy as np

    from ..diffusion import LinearSchedule, generate
    from ..fileio import write_json, write_npy
    from ..images import save_grid

    out = Path(out)
    check_outputs("sample", out=out)
    opts = ModelOptions(as_path(checkpoint), weights, snn_steps, img_size, threshold,
                        notify=notify, threshold_map=threshold_map_option(threshold_map))
    model, ckpt = load(opts)
    apply_thresholds(opts, model)
    set_threads(threads)
    cfg = ckpt.config
    check_steps(sampler, steps, cfg.diffusion_steps)
    t0 = time.perf_counter()
    moments = sampler_moments(sampler, steps, model, cfg, dataset or ckpt.meta.get("dataset"),
                              as_path(data_dir), progress=not quiet)
    scale_out = None
    if workers is None and cluster is None:
        x = generate(float_denoiser(model, device), LinearSchedule(num_steps=cfg.diffusion_steps),
                     num, (cfg.img_ch, cfg.img_size, cfg.img_size), batch_size=batch,
                     sampler=sampler, steps=steps, seed=seed, progress=not quiet,
                     moments=moments)
    else:
        x, scale_out = _sharded(model, ckpt, out, num=num, batch=batch, sampler=sampler,
                                steps=steps, seed=seed, device=device, threshold=threshold,
                                workers=workers, cluster=cluster, shard_size=shard_size,
                                threads=threads, progress=not quiet, moments=moments)
    elapsed = time.perf_counter() - t0
    arr = x.numpy().astype(np.float32)
    write_npy(out / "samples.npy", arr)
    save_grid(x, out / "samples.png")
    report = {
        "tool": f"sdm-neuro {__version__}", "checkpoint": str(ckpt.path), "weights": ckpt.weights,
        "config": cfg.to_dict(), "sampler": sampler, "steps": steps, "num": num,
        "batch": batch, "seed": seed, "threshold": or_one(threshold),
        **({} if opts.threshold_map is None else
           {"threshold_map": opts.threshold_map.to_dict(),
            "thresholds": model.thresholds()}),
        "seconds": round(elapsed, 3), "notes": list(ckpt.notes),
        **({} if moments is None else {"eps_moments": {str(t): m for t, m in moments.items()}}),
        "files": {"grid": "samples.png", "samples": "samples.npy ([N,C,H,W] float32 in [-1,1])"},
        **({} if scale_out is None else {"scale_out": scale_out}),
    }
    write_json(out / "sample.json", report)
    return SampleResult(out, x, report, elapsed)



def _sharded(model, ckpt, out: Path, *, num: int, batch: int, sampler: str, steps: int,
             seed: int, device: str, threshold: float | None, workers: int | None,
             cluster: str | None, shard_size: int | None, threads: int | None,
             progress: bool, moments: dict[int, float] | None):
    """(samples, the scale-out report) of a sharded float sampling run."""
    from ..fileio import sha256_file
    from ..scaleout.sharded import sample_in_shards
    from ..scaleout.tasks import SamplingSpec, float_shard

    cfg = ckpt.config
    spec = SamplingSpec(cfg.diffusion_steps, (cfg.img_ch, cfg.img_size, cfg.img_size), batch,
                        sampler, steps, seed, device, threads or 1,
                        moments)
    provenance = {"job": "sample", "model_sha256": sha256_file(ckpt.path),
                  "weights": ckpt.weights, "config": cfg.to_dict(),
                  "threshold": or_one(threshold),
                  "thresholds": model.thresholds()}
    tensors, _, report = sample_in_shards(
        float_shard, (model,), spec, num, directory=out / "shards", provenance=provenance,
        chains=1, workers=workers, cluster=cluster, shard_size=shard_size, progress=progress)
    return tensors["samples"], report
